//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// workload is one kind of run.
type workload struct {
	Key   string
	Title string
	Unit  string   // "TPS" or "MB/s"
	Args  []string // pgbench arguments; nil for a COPY
	Copy  string   // "out" or "in" for a COPY
}

func pgbenchWorkload(key, title string, clients int, extra ...string) workload {
	args := append([]string{"-n"}, extra...)
	args = append(args, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(2, clients)))
	return workload{Key: key, Title: title, Unit: "TPS", Args: args}
}

var allWorkloads = []workload{
	pgbenchWorkload("S1", "select-only, 1 client", 1, "-S"),
	pgbenchWorkload("S8", "select-only, 8 clients", 8, "-S"),
	pgbenchWorkload("C4", "connect per transaction, 4 clients", 4, "-C", "-S"),
	{Key: "copy-out", Title: "COPY out", Unit: "MB/s", Copy: "out"},
	{Key: "copy-in", Title: "COPY in", Unit: "MB/s", Copy: "in"},
}

// selectedWorkloads applies -workloads.
func selectedWorkloads(filter string) ([]workload, error) {
	if filter == "" {
		return allWorkloads, nil
	}
	var out []workload
	for _, k := range strings.Split(filter, ",") {
		i := workloadIndex(strings.TrimSpace(k))
		if i < 0 {
			return nil, fmt.Errorf("-workloads: unknown workload %q", k)
		}
		out = append(out, allWorkloads[i])
	}
	return out, nil
}

func workloadIndex(key string) int {
	return slices.IndexFunc(allWorkloads, func(w workload) bool { return w.Key == key })
}

// workloadByKey is the workload named key, one of the bench's own keys:
// looked up by name so that reordering allWorkloads changes no run.
func workloadByKey(key string) workload {
	i := workloadIndex(key)
	if i < 0 {
		panic("pgbench-compare: no workload " + key)
	}
	return allWorkloads[i]
}

// warmupWorkload is what a target's untimed warm-up runs: select-only
// with 8 clients, or connect per transaction for a target measured only
// on logins.
func warmupWorkload(tg *target) workload {
	if tg.runs("S8") {
		return workloadByKey("S8")
	}
	return workloadByKey("C4")
}

// runResult is one measured run.
type runResult struct {
	Target   string
	Workload string
	Round    int
	Value    float64 // TPS or MB/s
	// pgbench only.
	LatencyMs    float64 `json:",omitempty"`
	Transactions int64   `json:",omitempty"`
	// COPY only.
	Bytes   int64   `json:",omitempty"`
	Seconds float64 `json:",omitempty"`
	// RSS of the target's process (not direct PostgreSQL) during S8.
	RSSBefore int64 `json:",omitempty"`
	RSSPeak   int64 `json:",omitempty"`
	RSSMean   int64 `json:",omitempty"`
	// CPU per transaction by process (pgbench runs).
	CPU *cpuPerTx `json:",omitempty"`
}

// commandLine renders a workload's command for the report, with the
// target's port as PORT.
func (e *env) commandLine(w workload) string {
	envs := "PGSSLMODE=verify-ca PGSSLROOTCERT=root.crt PGSSLCERT=client.crt PGSSLKEY=client.key"
	tail := fmt.Sprintf("-h 127.0.0.1 -p PORT -U %s %s", benchUser, benchDB)
	switch w.Copy {
	case "out":
		return fmt.Sprintf("%s psql -X -q -v ON_ERROR_STOP=1 -c 'COPY bulk TO STDOUT' %s > /dev/null", envs, tail)
	case "in":
		return fmt.Sprintf("%s psql -X -q -v ON_ERROR_STOP=1 -c \"\\copy bulk_in FROM 'bulk.copy'\" %s   # after TRUNCATE bulk_in", envs, tail)
	}
	return fmt.Sprintf("%s pgbench %s -T %d %s", envs, strings.Join(w.Args, " "), e.o.duration, tail)
}

// runRounds runs every workload against every target, alternating targets
// run by run, for the configured number of rounds.
func runRounds(ctx context.Context, e *env, rep *report) error {
	ws, err := selectedWorkloads(e.o.workloads)
	if err != nil {
		return err
	}
	rep.workloads = ws
	// Warm-up, untimed: fill shared_buffers and the OS cache, fault in
	// each proxy's code and pools (and fill the OCSP cache).
	for _, tg := range e.targets {
		w := warmupWorkload(tg)
		if err := tg.prepare(ctx); err != nil {
			return fmt.Errorf("warm-up %s: %w", tg.Name, err)
		}
		if _, err := e.runPgbench(ctx, tg, w, 3, false); err != nil {
			return fmt.Errorf("warm-up %s: %w", tg.Name, err)
		}
	}
	total := e.o.rounds * plannedRuns(ws, e.targets)
	n := 0
	for round := 1; round <= e.o.rounds; round++ {
		for _, w := range ws {
			for _, tg := range e.targets {
				if !tg.runs(w.Key) {
					continue
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				n++
				if err := tg.prepare(ctx); err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", round, w.Key, tg.Name, err)
				}
				var r *runResult
				var err error
				if w.Copy != "" {
					r, err = e.runCopy(ctx, tg, w)
				} else {
					r, err = e.runPgbench(ctx, tg, w, e.o.duration, w.Key == "S8")
				}
				if err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", round, w.Key, tg.Name, err)
				}
				r.Round = round
				rep.runs = append(rep.runs, *r)
				logf("run %d/%d round %d %-8s %-26s %10.1f %s (1-min load %.2f)", n, total, round, w.Key, tg.Name, r.Value, w.Unit, readLoad())
			}
		}
	}
	return nil
}

// plannedRuns is how many runs one round makes.
func plannedRuns(ws []workload, targets []*target) int {
	n := 0
	for _, w := range ws {
		for _, t := range targets {
			if t.runs(w.Key) {
				n++
			}
		}
	}
	return n
}

// prepare runs the target's untimed step before a run, if it has one.
func (t *target) prepare(ctx context.Context) error {
	if t.before == nil {
		return nil
	}
	return t.before(ctx)
}

var (
	reTPS     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	reLatency = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	reTxns    = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	reFailed  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// pgbenchOutput is what the bench reads from pgbench's summary.
type pgbenchOutput struct {
	TPS          float64
	LatencyMs    float64
	Transactions int64
	Failed       int64
}

// parsePgbench reads pgbench's summary (PostgreSQL 15 wording).
func parsePgbench(out string) (pgbenchOutput, error) {
	var p pgbenchOutput
	m := reTPS.FindStringSubmatch(out)
	if m == nil {
		return p, fmt.Errorf("no tps line in pgbench output")
	}
	p.TPS, _ = strconv.ParseFloat(m[1], 64)
	if m := reLatency.FindStringSubmatch(out); m != nil {
		p.LatencyMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reTxns.FindStringSubmatch(out); m != nil {
		p.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	} else {
		return p, fmt.Errorf("no transaction count in pgbench output")
	}
	if m := reFailed.FindStringSubmatch(out); m != nil {
		p.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return p, nil
}

// runPgbench runs one pgbench and, when sample is set and the target is a
// process, samples its RSS every 500 ms.
func (e *env) runPgbench(ctx context.Context, tg *target, w workload, seconds int, sample bool) (*runResult, error) {
	args := append(append([]string{}, w.Args...), "-T", strconv.Itoa(seconds))
	cmd := e.clientCmd(ctx, tg, e.tools.pgbench, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	r := &runResult{Target: tg.Name, Workload: w.Key}
	var s *rssSampler
	if sample && tg.proc != nil {
		r.RSSBefore, _ = readRSS(tg.proc.pid())
		s = sampleRSS(tg.proc.pid(), 500*time.Millisecond)
	}
	if e.o.verbose {
		logf("%s", strings.Join(cmd.Args, " "))
	}
	cpuBefore := e.sampleCPU(tg)
	err := cmd.Run()
	cpuAfter := e.sampleCPU(tg)
	if s != nil {
		samples := s.finish()
		var sum int64
		for _, v := range samples {
			r.RSSPeak = max(r.RSSPeak, v)
			sum += v
		}
		if len(samples) > 0 {
			r.RSSMean = sum / int64(len(samples))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	p, err := parsePgbench(out.String())
	if err != nil {
		return nil, fmt.Errorf("%w:\n%s", err, out.String())
	}
	if p.Failed > 0 {
		return nil, fmt.Errorf("pgbench reported %d failed transactions:\n%s", p.Failed, out.String())
	}
	r.Value, r.LatencyMs, r.Transactions = p.TPS, p.LatencyMs, p.Transactions
	r.setCPU(cpuBefore, cpuAfter, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime(), runtime.NumCPU())
	return r, nil
}

// runCopy times one bulk COPY through psql. COPY out goes to /dev/null;
// COPY in reads the file written at setup into an emptied unlogged table,
// and the row count is checked afterwards (untimed).
func (e *env) runCopy(ctx context.Context, tg *target, w workload) (*runResult, error) {
	var sql string
	switch w.Copy {
	case "out":
		sql = "COPY bulk TO STDOUT"
	case "in":
		if _, err := e.superExec(ctx, "TRUNCATE bulk_in; CHECKPOINT"); err != nil {
			return nil, err
		}
		sql = fmt.Sprintf(`\copy bulk_in FROM '%s'`, e.bulkFile)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	cmd := e.clientCmd(ctx, tg, e.tools.psql, "-c", sql)
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = devnull, &errOut
	start := time.Now()
	err = cmd.Run()
	secs := time.Since(start).Seconds()
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, errOut.String())
	}
	if w.Copy == "in" {
		if err := e.checkBulkIn(ctx); err != nil {
			return nil, err
		}
	}
	return &runResult{Target: tg.Name, Workload: w.Key, Value: float64(e.bulkBytes) / 1e6 / secs, Bytes: e.bulkBytes, Seconds: secs}, nil
}

func (e *env) checkBulkIn(ctx context.Context) error {
	res, err := e.superExec(ctx, "SELECT count(*) FROM bulk_in")
	if err != nil {
		return err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return fmt.Errorf("count(*): unexpected result")
	}
	got, _ := strconv.ParseInt(string(res[0].Rows[0][0]), 10, 64)
	if got != e.bulkRows {
		return fmt.Errorf("COPY in loaded %d rows, want %d", got, e.bulkRows)
	}
	return nil
}

// runCommand runs a short command and returns its combined output.
func runCommand(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
