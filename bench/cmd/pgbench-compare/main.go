//go:build linux

// Command pgbench-compare is `make bench`: it measures pgcertgate against
// PostgreSQL reached directly over TLS and against PgBouncer, with the same
// CA and client certificate for all three, and writes BENCHMARKS.md and a
// PNG plot, to show what the proxy costs and whether it meets its
// throughput and memory targets.
//
// It builds everything it measures: a PostgreSQL cluster (ssl=on,
// `hostssl … cert`), pgcertgate (the real binary, `pgcertgate serve`, backend
// over the Unix socket) and PgBouncer (session pooling, client TLS
// verify-full, `auth_type = hba` with a `hostssl … cert` line, server
// connections over the Unix socket). It then runs pgbench and psql against
// each target in turn, run by run (A B C A B C …) so that machine drift
// cancels, measures pgcertgate's memory, profiles it, and writes the report.
//
// It is a benchmark, never a test: nothing here runs in `make test` except
// the parsers' unit tests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	bin       string        // pgcertgate binary
	binB      string        // a second pgcertgate binary, measured as another target (A/B)
	labelB    string        // its target name
	envB      string        // extra environment of the B target, comma-separated
	duration  int           // pgbench -T seconds
	rounds    int           // alternating rounds
	copyMB    int           // bulk COPY size, in 10^6 bytes
	idle      int           // idle authenticated sessions for the memory run
	parked    int           // TLS clients parked in startup
	out       string        // BENCHMARKS.md
	plot      string        // PNG plot
	jsonOut   string        // raw results
	quietWait time.Duration // how long to wait for a quiet machine (0: do not wait)
	quietLoad float64       // 1-minute load average counted as quiet
	reuse     string        // auto, on, off
	reuseLine string        // the [backend] lines that turn reuse on
	workloads string        // comma-separated subset, for development
	targets   string        // comma-separated subset of targets ("" or "all": every one)
	eventloop string        // auto, on, off
	// eventloopLine is the top-level line that selects the event-loop relay.
	eventloopLine string
	// iouring and iouringLine are the same for the loop on io_uring.
	iouring, iouringLine string
	// goroutineLine is the top-level line that selects the goroutine
	// relay, written into every other pgcertgate target's configuration
	// when the binary accepts it, so that those targets keep measuring
	// the goroutine relay whatever the binary's default engine is.
	goroutineLine string
	// relayfloor is bench/cmd/relayfloor's binary, the plaintext floor
	// target.
	relayfloor string
	skipMemory bool
	skipProf   bool
	keep       bool // keep the work directory
	verbose    bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/pgcertgate", "pgcertgate binary (make build)")
	flag.StringVar(&o.binB, "bin-b", "", "a second pgcertgate binary to measure as another target in the same rounds (A/B of an optimisation)")
	flag.StringVar(&o.labelB, "label-b", "pgcertgate-b", "the -bin-b target's name")
	flag.StringVar(&o.envB, "env-b", "", "extra environment for the B target, comma-separated (e.g. GOMAXPROCS=1,GOGC=400); with no -bin-b, B runs -bin")
	flag.IntVar(&o.duration, "T", 20, "pgbench -T: seconds per pgbench run")
	flag.IntVar(&o.rounds, "rounds", 3, "alternating rounds (at least 3 for a report)")
	flag.IntVar(&o.copyMB, "copy-mb", 600, "bulk COPY size in MB (10^6 bytes)")
	flag.IntVar(&o.idle, "idle", 1000, "idle authenticated sessions held for the memory measurement")
	flag.IntVar(&o.parked, "parked", 10000, "TLS clients parked in startup for the memory measurement")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "report to write (only the part between the bench markers is replaced)")
	flag.StringVar(&o.plot, "plot", "bench/tps.png", "PNG plot to write")
	flag.StringVar(&o.jsonOut, "json", "bench/results.json", "raw results to write")
	flag.DurationVar(&o.quietWait, "quiet-wait", 45*time.Minute, "wait at most this long for a quiet machine before measuring (0: do not wait)")
	flag.Float64Var(&o.quietLoad, "quiet-load", 0.7, "1-minute load average below which the machine counts as quiet")
	flag.StringVar(&o.reuse, "reuse", "auto", "measure a pgcertgate+reuse target: auto (when the binary accepts the setting), on, off")
	flag.StringVar(&o.reuseLine, "reuse-setting", "reuse = true", "the [backend] line that turns on backend-connection reuse (the bench adds reuse_idle_timeout, the same as PgBouncer's server_idle_timeout)")
	flag.StringVar(&o.workloads, "workloads", "", "comma-separated subset of workloads (S1,S8,C4,copy-out,copy-in); empty: all")
	flag.StringVar(&o.targets, "targets", "", "comma-separated subset of targets ("+strings.Join(knownTargets, ",")+"); empty or all: every target, the optional ones when the binary accepts their settings. A target named here must be measured. Name only the one of pgcertgate+ledger-logged and pgcertgate+ledger-unlogged that install-sql does not create (the other is pgcertgate+ledger itself). The ledger, 3casets and ocsp targets run only C4")
	flag.StringVar(&o.eventloop, "eventloop", "auto", "measure pgcertgate-eventloop and pgcertgate-eventloop+reuse: auto (when the binary accepts the setting), on, off")
	flag.StringVar(&o.eventloopLine, "eventloop-setting", `relay_engine = "eventloop"`, "the top-level line that selects the event-loop relay")
	flag.StringVar(&o.iouring, "io_uring", "auto", "measure pgcertgate-io_uring and pgcertgate-io_uring+reuse: auto (when the binary accepts the setting), on, off")
	flag.StringVar(&o.iouringLine, "io_uring-setting", `relay_engine = "io_uring"`, "the top-level line that selects the event-loop relay on io_uring")
	flag.StringVar(&o.goroutineLine, "goroutine-setting", `relay_engine = "goroutine"`, "the top-level line that selects the goroutine relay, given to every pgcertgate target but the event-loop ones when the binary accepts it (empty: the binary's default)")
	flag.StringVar(&o.relayfloor, "relayfloor", "bin/relayfloor", "bench/cmd/relayfloor binary, measured as the relayfloor target (make bench builds it)")
	flag.BoolVar(&o.skipMemory, "skip-memory", false, "skip the memory measurements")
	flag.BoolVar(&o.skipProf, "skip-profile", false, "skip the profile runs")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs, profiles)")
	flag.BoolVar(&o.verbose, "v", false, "print every command")
	flag.Parse()
	measuredTree = gitDescribe()
	o.reuseLine = reuseSetting(o.reuseLine)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "pgbench-compare:", err)
		os.Exit(1)
	}
}

// logf prints progress to stderr with the elapsed time.
var began = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) error {
	if o.rounds < 1 || o.duration < 1 {
		return fmt.Errorf("-rounds and -T must be positive")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("pgcertgate binary: %w (run make build)", err)
	}
	o.bin = bin
	if o.binB == "" && o.envB != "" {
		o.binB = o.bin
	}
	if o.binB != "" {
		if o.binB, err = filepath.Abs(o.binB); err != nil {
			return err
		}
		if _, err := os.Stat(o.binB); err != nil {
			return fmt.Errorf("-bin-b: %w", err)
		}
	}
	tools, err := findTools()
	if err != nil {
		return err
	}
	// pgconn merges PG* variables into every connection this process
	// makes; the bench sets what it needs explicitly.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "PG") {
			os.Unsetenv(name)
		}
	}
	nofile, err := raiseNoFile(o.parked + 1000)
	if err != nil {
		return err
	}

	rep := &report{opts: o, tools: tools, machine: describeMachine(), nofile: nofile}
	rep.loadBefore = readLoad()
	if o.quietWait > 0 {
		rep.loadAtStart, rep.quietWaited = waitQuiet(ctx, o.quietLoad, o.quietWait)
	} else {
		rep.loadAtStart = readLoad()
	}

	env, err := setup(ctx, o, tools)
	if env != nil {
		defer env.close()
	}
	if err != nil {
		return err
	}
	rep.env = env
	if o.quietWait > 0 {
		// Setup (initdb, pgbench -i, the COPY table) loads the machine
		// itself; let that settle before the first timed run.
		rep.loadAfterSetup, _ = waitQuiet(ctx, o.quietLoad, 5*time.Minute)
	} else {
		rep.loadAfterSetup = readLoad()
	}

	if err := runRounds(ctx, env, rep); err != nil {
		return err
	}
	if !o.skipProf {
		if err := runProfiles(ctx, env, rep); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		if err := runLedgerProfile(ctx, env, rep); err != nil {
			return fmt.Errorf("ledger profile: %w", err)
		}
	}
	if !o.skipMemory {
		if err := runMemory(ctx, env, rep); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	rep.ocspRequests = env.ocspRequests()
	rep.loadAtEnd = readLoad()
	rep.finished = time.Now()
	return rep.write()
}
