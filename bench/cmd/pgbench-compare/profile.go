//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// memProfileRate is the allocation sampling rate the profile runs ask for:
// one sample per 4 KiB allocated rather than Go's 512 KiB, so that a small
// allocation per relayed read cannot hide.
const memProfileRate = 4096

// profileResult is one profiled run of pgcertgate.
type profileResult struct {
	Workload     string
	Command      string
	Transactions int64
	TPS          float64
	CPUTop       string // go tool pprof -top of the CPU profile
	AllocTop     string // … of alloc_space
	RelayTop     string // alloc_space under the relay's copier
	// Totals from the allocation profile, over the whole process life.
	AllocBytes, AllocObjects int64
	// Allocations under (*copier).run, the relay loop.
	RelayBytes, RelayObjects int64
}

// runProfiles profiles pgcertgate (a fresh process each time, started with
// PGCERTGATE_CPUPROFILE and PGCERTGATE_MEMPROFILE) during a select-only
// 8-client run and during a connect-per-transaction run. Profiling slows the
// process down, so these runs are not among the timed ones.
func runProfiles(ctx context.Context, e *env, rep *report) error {
	if !e.want(targetGate) {
		return nil
	}
	for _, w := range []workload{workloadByKey("S8"), workloadByKey("C4")} {
		name := "pgcertgate-profile-" + w.Key
		cpu, mem := e.path(name+".cpu.pprof"), e.path(name+".mem.pprof")
		g, err := e.startGate(ctx, gateOpts{name: name, env: []string{
			"PGCERTGATE_CPUPROFILE=" + cpu,
			"PGCERTGATE_MEMPROFILE=" + mem,
			fmt.Sprintf("PGCERTGATE_MEMPROFILERATE=%d", memProfileRate),
		}})
		if err != nil {
			return err
		}
		p := g.proc
		tg := &target{Name: targetGate, Port: g.port, proc: p}
		r, err := e.runPgbench(ctx, tg, w, e.o.duration, false)
		if err != nil {
			return err
		}
		if err := p.stop(); err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, p.logTail())
		}
		pr := profileResult{Workload: w.Key, Command: e.commandLine(w), Transactions: r.Transactions, TPS: r.Value}
		pprof := func(args ...string) (string, error) { return e.pprof(ctx, args...) }
		if pr.CPUTop, err = pprof("-top", "-nodecount=25", cpu); err != nil {
			return err
		}
		if pr.AllocTop, err = pprof("-sample_index=alloc_space", "-top", "-nodecount=20", mem); err != nil {
			return err
		}
		if pr.RelayTop, err = pprof("-sample_index=alloc_space", "-top", "-nodecount=15", `-focus=\(\*copier\)\.run`, mem); err != nil {
			return err
		}
		// Totals, for per-transaction figures.
		for _, q := range []struct {
			index, focus string
			dst          *int64
		}{
			{"alloc_space", "", &pr.AllocBytes},
			{"alloc_objects", "", &pr.AllocObjects},
			{"alloc_space", `\(\*copier\)\.run`, &pr.RelayBytes},
			{"alloc_objects", `\(\*copier\)\.run`, &pr.RelayObjects},
		} {
			args := []string{"-sample_index=" + q.index, "-top", "-nodecount=100000"}
			if q.focus != "" {
				args = append(args, "-focus="+q.focus)
			}
			out, err := pprof(append(args, mem)...)
			if err != nil {
				return err
			}
			*q.dst = pprofShown(out)
		}
		rep.profiles = append(rep.profiles, pr)
		logf("profile %s: %.0f TPS; relay allocated %d B in %d objects over %d transactions", w.Key, pr.TPS, pr.RelayBytes, pr.RelayObjects, pr.Transactions)
	}
	return nil
}

var reShown = regexp.MustCompile(`Showing nodes accounting for ([0-9.]+)([kMGT]?B?)`)

// pprofShown reads the amount in pprof -top's "Showing nodes accounting for
// X, …" header: bytes for alloc_space ("1.50MB"), a count for
// alloc_objects ("12345" or "1.2k" is not printed; pprof prints plain
// integers). With no samples pprof prints no such line: 0.
func pprofShown(out string) int64 {
	m := reShown.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0
	}
	mult := map[string]float64{"": 1, "B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[2]]
	if mult == 0 {
		mult = 1
	}
	return int64(v * mult)
}

// pprof runs `go tool pprof` on -bin; the last argument is the profile.
func (e *env) pprof(ctx context.Context, args ...string) (string, error) {
	last := len(args) - 1
	args = append(append(append([]string{"tool", "pprof"}, args[:last]...), e.o.bin), args[last])
	out, err := runCommand(ctx, e.tools.goTool, args...)
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// heapTop fetches the live heap from pgcertgate's /debug/pprof/heap (after
// a GC) and returns its top entries by in-use space; "" when the endpoint
// is off or anything fails (the report then has no breakdown).
func (e *env) heapTop(ctx context.Context, name string, adminPort int) string {
	if adminPort == 0 {
		return ""
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", adminPort), nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	path := e.path(name + ".heap.pprof")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return ""
	}
	out, err := e.pprof(ctx, "-sample_index=inuse_space", "-top", "-nodecount=20", path)
	if err != nil {
		logf("heap profile of %s: %v", name, err)
		return ""
	}
	return trimPprof(out)
}
