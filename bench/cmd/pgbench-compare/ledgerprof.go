//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// prepareLedgerProfile loads pg_stat_statements for the ledger's profile
// run, when that run will happen: it needs pgcertgate+ledger, so a binary
// that refuses the ledger settings is found out first rather than after
// a PostgreSQL restart for nothing.
func (e *env) prepareLedgerProfile(ctx context.Context) error {
	if !e.want(targetGateLedger) || e.o.skipProf {
		return nil
	}
	if ok, _ := e.ledgerAccepted(ctx); !ok {
		return nil // setupLedger says why the ledger is not measured
	}
	return e.enableStatStatements(ctx)
}

// enableStatStatements loads pg_stat_statements (a restart: it needs
// shared_preload_libraries) with tracking off, so that the timed runs pay
// nothing for it; the ledger's profile run turns tracking on to say how
// much of a login the ledger's statements take inside PostgreSQL. Without
// the extension (postgresql-contrib) the breakdown goes without it.
func (e *env) enableStatStatements(ctx context.Context) error {
	rows, err := e.cluster.Query(ctx, "SELECT count(*) FROM pg_catalog.pg_available_extensions WHERE name = 'pg_stat_statements'")
	if err != nil {
		return err
	}
	if len(rows) != 1 || rows[0][0] == "0" {
		logf("pg_stat_statements is not installed (postgresql-contrib): the ledger breakdown goes without it")
		return nil
	}
	if err := e.cluster.Exec(ctx, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"); err != nil {
		return err
	}
	if err := e.cluster.Halt(ctx, "fast"); err != nil {
		return err
	}
	if err := e.cluster.Resume(ctx); err != nil {
		return err
	}
	for _, q := range []string{
		"ALTER SYSTEM SET pg_stat_statements.track = 'none'",
		"SELECT pg_catalog.pg_reload_conf()",
	} {
		if err := e.cluster.Exec(ctx, q); err != nil {
			return err
		}
	}
	if _, err := e.superExec(ctx, "CREATE EXTENSION pg_stat_statements"); err != nil {
		return err
	}
	e.statStatements = true
	return nil
}

// setStatTracking sets pg_stat_statements.track and waits until a new
// backend sees it (a reload reaches backends asynchronously).
func (e *env) setStatTracking(ctx context.Context, track string) error {
	if err := e.cluster.Exec(ctx, "ALTER SYSTEM SET pg_stat_statements.track = '"+track+"'"); err != nil {
		return err
	}
	if err := e.cluster.Exec(ctx, "SELECT pg_catalog.pg_reload_conf()"); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := e.cluster.Query(ctx, "SHOW pg_stat_statements.track")
		if err != nil {
			return err
		}
		if rows[0][0] == track {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pg_stat_statements.track is still %q", rows[0][0])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statementRow is one line of pg_stat_statements.
type statementRow struct {
	Role   string
	Calls  int64
	Total  float64 // ms
	Mean   float64 // ms
	Query  string
	Ledger bool // run by the ledger's writer role
}

// ledgerProfile is where a login's time goes with the identity ledger on:
// pgcertgate's CPU profile, the ledger's statements in PostgreSQL, and how
// long logins waited for the ledger row, all from one connect-per-
// transaction run of a fresh pgcertgate+ledger.
type ledgerProfile struct {
	Command      string
	TPS          float64
	Transactions int64
	Persistence  string
	// From the CPU profile: the share of pgcertgate's CPU under the
	// ledger's code, and the top functions there.
	CPUTotal    string
	LedgerShare string
	LedgerTop   string
	CPUTop      string
	// From the audit log: per login, the wait for the ledger row and the
	// whole login.
	Writes                 int
	WriteMedian, WriteP90  time.Duration
	LoginMedian, LoginP90  time.Duration
	Statements             []statementRow
	LedgerCalls            int64
	LedgerMs, AllMs        float64 // total execution time in PostgreSQL
	StatementsNotAvailable string
}

// runLedgerProfile runs connect-per-transaction through a fresh
// pgcertgate+ledger (profiled; tracking statements) and fills
// rep.ledger.
func runLedgerProfile(ctx context.Context, e *env, rep *report) error {
	var tg *target
	for _, t := range e.targets {
		if t.Name == targetGateLedger {
			tg = t
		}
	}
	if tg == nil {
		return nil
	}
	name := "pgcertgate-profile-ledger"
	cpu := e.path(name + ".cpu.pprof")
	g, err := e.startGate(ctx, gateOpts{name: name, backendExtra: ledgerBackend, env: []string{"PGCERTGATE_CPUPROFILE=" + cpu}})
	if err != nil {
		return err
	}
	pt := &target{Name: targetGateLedger, Port: g.port, proc: g.proc, before: tg.before}
	if err := pt.prepare(ctx); err != nil {
		return err
	}
	lp := &ledgerProfile{Persistence: e.ledgerInstalled}
	if e.statStatements {
		if err := e.setStatTracking(ctx, "top"); err != nil {
			return err
		}
		if _, err := e.superExec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
			return err
		}
	} else {
		lp.StatementsNotAvailable = "pg_stat_statements is not installed (postgresql-contrib)"
	}
	w := workloadByKey("C4")
	r, err := e.runPgbench(ctx, pt, w, e.o.duration, false)
	if err != nil {
		return err
	}
	if err := g.proc.stop(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, g.proc.logTail())
	}
	lp.Command, lp.TPS, lp.Transactions = e.commandLine(w), r.Value, r.Transactions
	if e.statStatements {
		res, err := e.superExec(ctx, `SELECT r.rolname, s.calls, s.total_exec_time, s.mean_exec_time,
       pg_catalog.left(pg_catalog.regexp_replace(s.query, '\s+', ' ', 'g'), 140)
  FROM pg_stat_statements s JOIN pg_catalog.pg_roles r ON r.oid = s.userid
 ORDER BY s.total_exec_time DESC`)
		if err != nil {
			return err
		}
		for _, row := range res[0].Rows {
			if string(row[0]) == "postgres" {
				continue // the bench's own housekeeping
			}
			s := statementRow{Role: string(row[0]), Query: string(row[4])}
			s.Calls, _ = strconv.ParseInt(string(row[1]), 10, 64)
			s.Total, _ = strconv.ParseFloat(string(row[2]), 64)
			s.Mean, _ = strconv.ParseFloat(string(row[3]), 64)
			s.Ledger = s.Role == ledgerUser
			lp.AllMs += s.Total
			if s.Ledger {
				lp.LedgerMs += s.Total
				lp.LedgerCalls += s.Calls
			}
			lp.Statements = append(lp.Statements, s)
		}
		if err := e.setStatTracking(ctx, "none"); err != nil {
			return err
		}
	}
	if lp.CPUTop, err = e.pprof(ctx, "-top", "-nodecount=20", cpu); err != nil {
		return err
	}
	focus, err := e.pprof(ctx, "-top", "-cum", "-nodecount=15", `-focus=ledger`, cpu)
	if err != nil {
		return err
	}
	lp.LedgerTop = focus
	lp.LedgerShare, lp.CPUTotal = pprofShare(focus)
	writes, logins, err := ledgerWrites(g.proc.logPath)
	if err != nil {
		return err
	}
	lp.Writes = len(writes)
	lp.WriteMedian, lp.WriteP90 = quantile(writes, 0.5), quantile(writes, 0.9)
	lp.LoginMedian, lp.LoginP90 = quantile(logins, 0.5), quantile(logins, 0.9)
	rep.ledger = lp
	logf("ledger profile: %.0f TPS; ledger code %s of pgcertgate's CPU; ledger write median %s (login %s); ledger statements %.1f of %.1f ms in PostgreSQL",
		lp.TPS, lp.LedgerShare, lp.WriteMedian, lp.LoginMedian, lp.LedgerMs, lp.AllMs)
	return nil
}

var reShare = regexp.MustCompile(`Showing nodes accounting for [^,]+, ([0-9.]+%) of ([^ ]+) total`)

// pprofShare reads "Showing nodes accounting for 0.52s, 12.3% of 4.2s
// total" from a focused pprof -top: the focused share and the total.
func pprofShare(out string) (share, total string) {
	m := reShare.FindStringSubmatch(out)
	if m == nil {
		return "0%", ""
	}
	return m[1], m[2]
}

var (
	reLedgerWrite = regexp.MustCompile(`(?:^| )ledger_write=([0-9.]+[a-zµ]+)`)
	reDuration    = regexp.MustCompile(`(?:^| )duration=([0-9.]+[a-zµ]+)`)
)

// parseLedgerLine reads a login event's ledger_write and duration (text
// log format); ok is false for lines without ledger_write.
func parseLedgerLine(line string) (write, login time.Duration, ok bool) {
	m := reLedgerWrite.FindStringSubmatch(line)
	if m == nil {
		return 0, 0, false
	}
	write, err := time.ParseDuration(m[1])
	if err != nil {
		return 0, 0, false
	}
	if d := reDuration.FindStringSubmatch(line); d != nil {
		login, _ = time.ParseDuration(d[1])
	}
	return write, login, true
}

// ledgerWrites reads every login's ledger_write and duration from a
// pgcertgate log.
func ledgerWrites(path string) (writes, logins []time.Duration, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if w, l, ok := parseLedgerLine(sc.Text()); ok {
			writes = append(writes, w)
			if l > 0 {
				logins = append(logins, l)
			}
		}
	}
	return writes, logins, sc.Err()
}

// quantile is the q-quantile of ds (nearest rank); 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

// ledgerMarkdown is the report's breakdown of a login's time with the
// ledger on.
func (r *report) ledgerMarkdown(p func(string, ...any)) {
	lp := r.ledger
	if lp == nil {
		return
	}
	p("\n### Where a login's time goes with the identity ledger\n\n")
	with, ok1 := r.medianCPU(targetGateLedger, "C4")
	without, ok2 := r.medianCPU(targetGate, "C4")
	if ok1 && ok2 {
		p("From the timed C4 runs (medians of CPU µs per login): pgcertgate+ledger %.0f µs in the proxy and %.0f µs in PostgreSQL, pgcertgate %.0f and %.0f: the ledger adds **%+.0f µs of proxy CPU and %+.0f µs of PostgreSQL CPU per login** (all CPUs: %.0f vs %.0f µs).\n\n",
			with.Proxy, with.Postgres, without.Proxy, without.Postgres, with.Proxy-without.Proxy, with.Postgres-without.Postgres, with.Machine, without.Machine)
	}
	p("A separate, untimed connect-per-transaction run through a fresh pgcertgate+ledger (table %s, `PGCERTGATE_CPUPROFILE`, pg_stat_statements tracking on): %.0f TPS, %d logins.\n\n", lp.Persistence, lp.TPS, lp.Transactions)
	if lp.Writes > 0 {
		p("- Wait for the ledger row (the audit event's `ledger_write`, %d logins): median %s, 90th percentile %s; the whole login (`duration`): median %s, 90th percentile %s, so the row is **%.1f %% of a median login**. The login waits for the row; the session's end does not (the DELETE is batched).\n",
			lp.Writes, lp.WriteMedian.Round(time.Microsecond), lp.WriteP90.Round(time.Microsecond), lp.LoginMedian.Round(time.Microsecond), lp.LoginP90.Round(time.Microsecond),
			100*float64(lp.WriteMedian)/max(float64(lp.LoginMedian), 1))
	}
	p("- pgcertgate's CPU under the ledger's code (`go tool pprof -focus=ledger`): %s of %s sampled.\n", lp.LedgerShare, lp.CPUTotal)
	if lp.StatementsNotAvailable != "" {
		p("- PostgreSQL: %s.\n", lp.StatementsNotAvailable)
	} else if lp.Transactions > 0 {
		p("- PostgreSQL (pg_stat_statements, `track = top`): the writer's statements ran %d times, %.1f ms of execution in all, **%.0f µs per login**; every statement of the run: %.1f ms (%.0f µs per login). Execution time only: parse, plan, the round trip and the backend fork are not in it.\n",
			lp.LedgerCalls, lp.LedgerMs, lp.LedgerMs*1000/float64(lp.Transactions), lp.AllMs, lp.AllMs*1000/float64(lp.Transactions))
		p("\n| role | calls | total ms | mean ms | statement |\n|---|---:|---:|---:|---|\n")
		for i, s := range lp.Statements {
			if i == 8 {
				break
			}
			p("| %s | %d | %.1f | %.3f | `%s` |\n", s.Role, s.Calls, s.Total, s.Mean, strings.ReplaceAll(s.Query, "|", `\|`))
		}
	}
	p("\nCPU under the ledger (`go tool pprof -top -cum -focus=ledger`):\n\n```\n%s\n```\n", trimPprof(lp.LedgerTop))
	p("\nThe whole profile (`go tool pprof -top`):\n\n```\n%s\n```\n", trimPprof(lp.CPUTop))
}

// medianCPU is the per-field median of cs.
func medianCPU(cs []*cpuPerTx) *cpuPerTx {
	med := func(f func(*cpuPerTx) float64) float64 {
		v := make([]float64, len(cs))
		for i, c := range cs {
			v[i] = f(c)
		}
		return summarize(v).Median
	}
	return &cpuPerTx{
		Pgbench:  med(func(c *cpuPerTx) float64 { return c.Pgbench }),
		Proxy:    med(func(c *cpuPerTx) float64 { return c.Proxy }),
		Postgres: med(func(c *cpuPerTx) float64 { return c.Postgres }),
		Machine:  med(func(c *cpuPerTx) float64 { return c.Machine }),
	}
}
