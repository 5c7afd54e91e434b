//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// tools are the external programs the bench runs.
type tools struct {
	pgbench, psql, pgbouncer, gnuplot, goTool string
}

// findTools locates pgbench, psql, pgbouncer, gnuplot and go. A missing
// one is an error naming `make bench-deps`.
func findTools() (tools, error) {
	var t tools
	var missing []string
	look := func(dst *string, name string, extra ...string) {
		if p, err := exec.LookPath(name); err == nil {
			*dst = p
			return
		}
		for _, p := range extra {
			if _, err := os.Stat(p); err == nil {
				*dst = p
				return
			}
		}
		missing = append(missing, name)
	}
	pgBins, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var pgbenchPaths, psqlPaths []string
	for i := len(pgBins) - 1; i >= 0; i-- {
		pgbenchPaths = append(pgbenchPaths, filepath.Join(pgBins[i], "pgbench"))
		psqlPaths = append(psqlPaths, filepath.Join(pgBins[i], "psql"))
	}
	look(&t.pgbench, "pgbench", pgbenchPaths...)
	look(&t.psql, "psql", psqlPaths...)
	look(&t.pgbouncer, "pgbouncer", "/usr/sbin/pgbouncer")
	look(&t.gnuplot, "gnuplot")
	look(&t.goTool, "go", filepath.Join(runtime.GOROOT(), "bin", "go"))
	if len(missing) > 0 {
		return t, fmt.Errorf("missing %s: run make bench-deps (as root it installs Debian's pgbouncer and gnuplot-nox)", strings.Join(missing, ", "))
	}
	return t, nil
}

// raiseNoFile raises RLIMIT_NOFILE so that the parked-clients run can hold
// its sockets, and returns the limit in force. Children (pgcertgate,
// PgBouncer) inherit it: syscall.Setrlimit also stops Go from restoring the
// original soft limit in child processes. As root the hard limit is raised
// too (up to fs.nr_open); otherwise only the soft limit, up to the hard one.
func raiseNoFile(need int) (uint64, error) {
	want := uint64(max(need*2, 65536))
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if os.Geteuid() == 0 && lim.Max < want {
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
				want = min(want, n)
			}
		}
		raised := syscall.Rlimit{Cur: want, Max: want}
		// Without CAP_SYS_RESOURCE (a container) root cannot raise the
		// hard limit either: fall back to the soft limit.
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	lim.Cur = min(max(lim.Cur, want), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit(RLIMIT_NOFILE, %d): %w", lim.Cur, err)
	}
	if int(lim.Cur) < need {
		return lim.Cur, fmt.Errorf("RLIMIT_NOFILE is %d, the parked-clients run needs %d: raise the hard limit (ulimit -Hn) or run as root", lim.Cur, need)
	}
	return lim.Cur, nil
}

// machine describes the host for the report.
type machine struct {
	CPUModel string
	CPUs     int
	MemTotal string
	Free     string // `free -h` output
	Kernel   string
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if out, err := exec.Command("free", "-h").Output(); err == nil {
		m.Free = strings.TrimRight(string(out), "\n")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			m.MemTotal = fmt.Sprintf("%.1f GiB (MemTotal %s kB)", kb/(1<<20), f[1])
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// readLoad returns the 1-minute load average, or -1.
func readLoad() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// waitQuiet polls the 1-minute load average every 30 s until it is below
// limit or maxWait has passed, and returns the last load read and how long
// it waited. Other processes on the machine (test suites) would otherwise
// be measured along with the targets.
func waitQuiet(ctx context.Context, limit float64, maxWait time.Duration) (float64, time.Duration) {
	start := time.Now()
	deadline := start.Add(maxWait)
	for {
		load := readLoad()
		if load < limit || !time.Now().Before(deadline) {
			if load >= limit {
				logf("machine still busy after %s (1-minute load %.2f ≥ %.2f); measuring anyway", maxWait, load, limit)
			}
			return load, time.Since(start)
		}
		logf("waiting for a quiet machine: 1-minute load %.2f ≥ %.2f (waited %s of at most %s)", load, limit, time.Since(start).Round(time.Second), maxWait)
		select {
		case <-ctx.Done():
			return load, time.Since(start)
		case <-time.After(min(30*time.Second, time.Until(deadline))):
		}
	}
}

// readRSS returns VmRSS of pid in bytes, from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

// parseVmRSS extracts the VmRSS line ("VmRSS:   12345 kB") in bytes.
func parseVmRSS(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// rssSampler samples a process's RSS until stopped.
type rssSampler struct {
	stop    chan struct{}
	done    chan struct{}
	samples []int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v, err := readRSS(pid); err == nil {
				s.samples = append(s.samples, v)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops sampling and returns the samples.
func (s *rssSampler) finish() []int64 {
	close(s.stop)
	<-s.done
	return s.samples
}

// settledRSS samples pid's RSS every 250 ms until two samples a second
// apart differ by less than 0.5 % (the process has finished allocating for
// what it was just given), or until timeout.
func settledRSS(pid int, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	var hist []int64
	for {
		v, err := readRSS(pid)
		if err != nil {
			return 0, err
		}
		hist = append(hist, v)
		if n := len(hist); n >= 5 {
			prev := hist[n-5]
			if d := v - prev; d >= 0 && float64(d) < 0.005*float64(v) || d < 0 && float64(-d) < 0.005*float64(v) {
				return v, nil
			}
		}
		if time.Now().After(deadline) {
			return v, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
}
