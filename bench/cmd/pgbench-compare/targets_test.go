//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
)

func TestParseTargets(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string // nil: every target
		wantErr string
	}{
		{in: "", want: nil},
		{in: "all", want: nil},
		{in: "pgcertgate, pgcertgate+ledger", want: []string{"pgcertgate", "pgcertgate+ledger"}},
		{in: "direct,pgbouncer,pgcertgate-eventloop+reuse", want: []string{"direct", "pgbouncer", "pgcertgate-eventloop+reuse"}},
		{in: "pgcertgate,nope", wantErr: `unknown target "nope"`},
		{in: " , ", wantErr: "no target named"},
	} {
		got, err := parseTargets(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseTargets(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseTargets(%q): %v", tc.in, err)
			continue
		}
		if tc.want == nil {
			if got != nil {
				t.Errorf("parseTargets(%q) = %v, want every target", tc.in, got)
			}
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("parseTargets(%q) = %v, want %v", tc.in, got, tc.want)
		}
		for _, n := range tc.want {
			if !got[n] {
				t.Errorf("parseTargets(%q) = %v, missing %s", tc.in, got, n)
			}
		}
	}
}

func TestPlannedRuns(t *testing.T) {
	targets := []*target{
		{Name: targetDirect},
		{Name: targetGate},
		{Name: targetGateLedger, Workloads: connectOnly},
		{Name: targetGateOCSP, Workloads: connectOnly},
	}
	if got := plannedRuns(allWorkloads, targets); got != 2*len(allWorkloads)+2 {
		t.Errorf("all workloads: %d runs per round, want %d", got, 2*len(allWorkloads)+2)
	}
	s1, err := selectedWorkloads("S1,copy-in")
	if err != nil {
		t.Fatal(err)
	}
	if got := plannedRuns(s1, targets); got != 4 {
		t.Errorf("S1,copy-in: %d runs per round, want 4 (the connect-only targets skip both)", got)
	}
}

// TestGateConfig decodes the generated configurations as TOML: the extra
// top-level lines must land before [backend] (after it they would be
// [backend] keys), the tables after it.
func TestGateConfig(t *testing.T) {
	e := &env{dir: "/w", rootCrt: "/w/root.crt"}
	conf := e.gateConfig(gateConf{
		port: 5555, backendDir: "/run/pg", backendPort: 5432, hbaPath: "/w/casets_hba.conf",
		topExtra:     "ssl_ocsp = \"require\"\nssl_ocsp_responder = \"http://127.0.0.1:1/\"\n" + `relay_engine = "eventloop"`,
		backendExtra: ledgerBackend + "\nreuse = true",
		tables:       caSetsTables("/w/ca-a.crt", "/w/ca-b.crt", "/w/ca-c.crt"),
		adminPort:    9, adminExtra: "pprof = true",
	})
	var got map[string]any
	if _, err := toml.Decode(conf, &got); err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	for _, k := range []string{"ssl_ocsp", "ssl_ocsp_responder", "relay_engine", "hba_file", "ssl_ca_file"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no top-level %s in\n%s", k, conf)
		}
	}
	backend, _ := got["backend"].(map[string]any)
	if backend["identity_ledger"] != true || backend["ledger_user"] != ledgerUser || backend["reuse"] != true {
		t.Errorf("[backend] = %v", backend)
	}
	if backend["dsn"] != "host=/run/pg port=5432 sslmode=disable" {
		t.Errorf("dsn = %v", backend["dsn"])
	}
	sets, _ := got["client_ca"].(map[string]any)
	for n, f := range map[string]string{"a": "/w/ca-a.crt", "b": "/w/ca-b.crt", "c": "/w/ca-c.crt"} {
		set, _ := sets[n].(map[string]any)
		if set["file"] != f {
			t.Errorf("[client_ca.%s] = %v, want file %s", n, set, f)
		}
	}
	admin, _ := got["admin"].(map[string]any)
	if admin["listen_address"] != "127.0.0.1:9" || admin["pprof"] != true {
		t.Errorf("[admin] = %v", admin)
	}
	// Every set the hba lines name is defined, and only the last line
	// matches the bench client's database.
	for _, n := range []string{"@a", "@b", "@c"} {
		if !strings.Contains(caSetsHBA, "clientca="+n+"\n") {
			t.Errorf("pg_hba.conf lacks clientca=%s", n)
		}
	}
	lines := strings.Split(strings.TrimSpace(caSetsHBA), "\n")
	for i, l := range lines {
		db := strings.Fields(l)[1]
		if matches := db == "all" || db == benchDB; matches != (i == len(lines)-1) {
			t.Errorf("line %d (%q): matches the bench database = %v", i+1, l, matches)
		}
	}
}

func TestOCSPIndexLine(t *testing.T) {
	exp := time.Date(2026, 12, 3, 4, 5, 6, 0, time.UTC)
	for _, tc := range []struct{ serial, want string }{
		{"3", "V\t261203040506Z\t\t03\tunknown\t/CN=bench\n"},
		{"1a2b", "V\t261203040506Z\t\t1A2B\tunknown\t/CN=bench\n"},
		{"abc", "V\t261203040506Z\t\t0ABC\tunknown\t/CN=bench\n"},
	} {
		if got := ocspIndexLine(tc.serial, exp); got != tc.want {
			t.Errorf("ocspIndexLine(%q) = %q, want %q", tc.serial, got, tc.want)
		}
	}
}

func TestParseLedgerLine(t *testing.T) {
	const auth = `time=2026-12-02T15:43:22.861Z level=INFO msg="connection authorized" conn_id=2 client=127.0.0.1 user=bench database=bench backend_pid=10647 ledger_write=15.823917ms event=auth verdict=accept reason=authorized duration=57.925569ms`
	w, l, ok := parseLedgerLine(auth)
	if !ok || w != 15823917*time.Nanosecond || l != 57925569*time.Nanosecond {
		t.Errorf("auth line: %v %v %v", w, l, ok)
	}
	w, _, ok = parseLedgerLine(`msg="connection authorized" ledger_write=812µs duration=2ms`)
	if !ok || w != 812*time.Microsecond {
		t.Errorf("µs: %v %v", w, ok)
	}
	if _, _, ok := parseLedgerLine(`msg="session ended" duration=3s`); ok {
		t.Error("a line without ledger_write was read")
	}
	if _, _, ok := parseLedgerLine(`msg=x my_ledger_write=1ms`); ok {
		t.Error("a key merely ending in ledger_write was read")
	}
}

func TestPprofShare(t *testing.T) {
	out := "Active filters:\n   focus=ledger\nShowing nodes accounting for 0.52s, 12.30% of 4.23s total\n"
	if share, total := pprofShare(out); share != "12.30%" || total != "4.23s" {
		t.Errorf("pprofShare = %q, %q", share, total)
	}
	if share, _ := pprofShare("Focus expression matched no samples\n"); share != "0%" {
		t.Errorf("no samples: %q", share)
	}
}

func TestQuantile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	if q := quantile(ds, 0.5); q != 3 {
		t.Errorf("median = %v", q)
	}
	if q := quantile(ds, 0.9); q != 5 {
		t.Errorf("p90 = %v", q)
	}
	if q := quantile(nil, 0.5); q != 0 {
		t.Errorf("empty = %v", q)
	}
	if ds[0] != 5 {
		t.Error("quantile sorted its argument")
	}
}

// runsOf makes one run per value, in rounds 1, 2, …
func runsOf(target, workload string, values ...float64) []runResult {
	var out []runResult
	for i, v := range values {
		out = append(out, runResult{Target: target, Workload: workload, Round: i + 1, Value: v})
	}
	return out
}

func findVerdict(t *testing.T, vs []verdict, goal string) (verdict, bool) {
	t.Helper()
	for _, v := range vs {
		if strings.HasPrefix(v.Goal, goal) {
			return v, true
		}
	}
	return verdict{}, false
}

func TestVerdicts(t *testing.T) {
	names := []string{targetDirect, targetBouncer, targetGate, targetGateEventloop, targetGateLedger, targetGateLedgerLogged, targetGateCASets, targetGateOCSP, targetRelayFloor}
	e := &env{}
	for _, n := range names {
		e.targets = append(e.targets, &target{Name: n})
	}
	r := &report{env: e, opts: options{idle: 1000, parked: 10000}}
	add := func(rs []runResult) { r.runs = append(r.runs, rs...) }
	add(runsOf(targetGate, "C4", 100, 110, 90))
	add(runsOf(targetGateLedger, "C4", 86, 90, 80))       // median 86: 0.86 ×
	add(runsOf(targetGateLedgerLogged, "C4", 84, 90, 80)) // 0.84 ×
	add(runsOf(targetGateCASets, "C4", 95, 100, 90))      // 0.95 ×: within 5 %
	add(runsOf(targetGateOCSP, "C4", 94.9, 100, 90))      // just outside
	// S8 runs with the proxies' own CPU per transaction.
	s8 := func(target string, tps, proxy []float64) {
		for i, rr := range runsOf(target, "S8", tps...) {
			rr.CPU = &cpuPerTx{Proxy: proxy[i]}
			r.runs = append(r.runs, rr)
		}
	}
	s8(targetBouncer, []float64{1000, 1000, 1000}, []float64{15.7, 15.0, 16.0})
	// 1.10 × PgBouncer; CPU median 11.0 / 15.7 = 0.7006.
	s8(targetGateEventloop, []float64{1100, 1150, 900}, []float64{11.0, 10.9, 12.0})
	s8(targetRelayFloor, []float64{1200, 1200, 1200}, []float64{10.0, 12.0, 11.0})
	r.memory = []memResult{
		{Name: "idle authenticated sessions", Target: targetGateEventloop, Clients: 1000, Held: 1000, PerClient: 33 * 1024},
		{Name: "TLS clients parked in startup", Target: targetGateEventloop, Clients: 10000, Held: 10000},
	}
	vs := r.verdicts()
	for _, v := range vs {
		// The report names each goal by what it is.
		if strings.Contains(strings.ToLower(v.Group), "issue") {
			t.Errorf("group %q", v.Group)
		}
	}
	for _, tc := range []struct {
		goal        string
		known, met  bool
		measuredHas string
	}{
		{"connect per transaction, 4 clients: pgcertgate+ledger ≥ 0.85", true, true, "0.860 ×"},
		{"connect per transaction, 4 clients: pgcertgate+ledger-logged ≥ 0.85", true, false, "0.840 ×"},
		{"connect per transaction, 4 clients: pgcertgate+3casets within 5%", true, true, "0.950 ×"},
		{"connect per transaction, 4 clients: pgcertgate+ocsp within 5%", true, false, "0.949 ×"},
		{"select-only, 8 clients: pgcertgate-eventloop ≥ 1.10 × PgBouncer", true, true, "1.100 ×"},
		{"select-only, 8 clients: pgcertgate-eventloop's own CPU", true, false, "0.70 × (11.0 µs"},
		{"pgcertgate-eventloop: ≤ 32 KiB RSS", true, false, "33.0 KiB"},
		{"pgcertgate-eventloop: 10000 concurrent", true, true, "10000 of 10000"},
		{"select-only, 1 client: pgcertgate-eventloop ≥ 1.0 × PgBouncer", false, false, ""},
	} {
		v, ok := findVerdict(t, vs, tc.goal)
		if !ok {
			t.Errorf("no verdict %q", tc.goal)
			continue
		}
		if v.Known != tc.known || v.Met != tc.met || !strings.Contains(v.Measured, tc.measuredHas) {
			t.Errorf("%s: known %v met %v (%s), want known %v met %v with %q", v.Goal, v.Known, v.Met, v.Measured, tc.known, tc.met, tc.measuredHas)
		}
	}
	// The plaintext floor is information beside the goal, never a goal.
	for _, tc := range []struct{ goal, measured string }{
		{"the floor without TLS: relayfloor's own CPU", "0.70 × (11.0 µs relayfloor vs 15.7 µs pgbouncer"},
		{"pgcertgate-eventloop with TLS against the floor without", "1.00 × (11.0 µs pgcertgate-eventloop vs 11.0 µs relayfloor"},
	} {
		if v, ok := findVerdict(t, vs, tc.goal); !ok || !v.Known || !v.Info || !strings.Contains(v.Measured, tc.measured) {
			t.Errorf("%s: %+v, %v", tc.goal, v, ok)
		}
	}
	// PgBouncer without TLS has no runs: its comparison says so.
	if v, ok := findVerdict(t, vs, "what TLS costs PgBouncer"); !ok || v.Known || v.status() != "not measured" {
		t.Errorf("unmeasured plaintext PgBouncer: %+v, %v", v, ok)
	}
	if v, ok := findVerdict(t, vs, "what the installed table's persistence buys"); !ok || !v.Info || v.status() != "(for information)" {
		t.Errorf("persistence comparison: %+v", v)
	}
	// The CPU ratio rounds to 0.70 but is above it: 11.0/15.7 = 0.7006.
	if v, _ := findVerdict(t, vs, "select-only, 8 clients: pgcertgate-eventloop's own CPU"); v.Met {
		t.Error("0.7006 × counted as ≤ 0.7 ×")
	}

	// With -targets leaving PgBouncer and the eventloop out, verdicts that
	// need them are not reported, while the measured ones stay.
	e.selected = map[string]bool{targetGate: true, targetGateLedger: true, targetDirect: true}
	r.memory = nil
	vs = r.verdicts()
	if _, ok := findVerdict(t, vs, "select-only, 8 clients: pgcertgate-eventloop"); ok {
		t.Error("an eventloop verdict is reported although -targets left it out")
	}
	if _, ok := findVerdict(t, vs, "select-only, 8 clients: pgcertgate ≥ 1.00 × PgBouncer"); ok {
		t.Error("a PgBouncer verdict is reported although -targets left PgBouncer out")
	}
	if v, ok := findVerdict(t, vs, "connect per transaction, 4 clients: pgcertgate+ledger ≥ 0.85"); !ok || !v.Met {
		t.Errorf("ledger verdict: %+v, %v", v, ok)
	}
	if v, ok := findVerdict(t, vs, "select-only, 8 clients: pgcertgate ≥ 0.95 × direct"); !ok || v.Known {
		t.Errorf("unmeasured verdict of selected targets: %+v, %v (want reported as not measured)", v, ok)
	}
}

// TestGnuplotScript checks that each panel plots only the targets measured
// on its workload, at consecutive positions, and renders the plot when
// gnuplot is installed.
func TestGnuplotScript(t *testing.T) {
	e := &env{dir: t.TempDir()}
	for _, n := range []string{targetDirect, targetGate, targetGateOCSP} {
		e.targets = append(e.targets, &target{Name: n})
	}
	ws, err := selectedWorkloads("S1,C4")
	if err != nil {
		t.Fatal(err)
	}
	r := &report{env: e, workloads: ws, opts: options{rounds: 1}}
	r.runs = append(r.runs, runsOf(targetDirect, "S1", 100)...)
	r.runs = append(r.runs, runsOf(targetGate, "S1", 90)...)
	r.runs = append(r.runs, runsOf(targetDirect, "C4", 10)...)
	r.runs = append(r.runs, runsOf(targetGate, "C4", 12)...)
	r.runs = append(r.runs, runsOf(targetGateOCSP, "C4", 11.5)...)
	png := e.path("tps.png")
	script, data := r.gnuplotScript(e.path("plot.dat"), png)
	want := "# S1\n0 100 1 100 100 \"100\"\n1 90 2 90 90 \"90.0\"\n\n\n# C4\n0 10 1 10 10 \"10.0\"\n1 12 2 12 12 \"12.0\"\n2 11.5 3 11.5 11.5 \"11.5\"\n\n\n"
	if data != want {
		t.Errorf("plot data:\n%s\nwant:\n%s", data, want)
	}
	if !strings.Contains(script, `set xtics ("direct" 0, "pgcertgate" 1)`) || !strings.Contains(script, `"pgcertgate+ocsp" 2)`) {
		t.Errorf("xtics per panel missing:\n%s", script)
	}
	// Target names are printed as they are: in gnuplot's enhanced text
	// the _ of io_uring would start a subscript.
	if !strings.Contains(script, "pngcairo noenhanced") {
		t.Errorf("the terminal renders enhanced text:\n%s", script)
	}
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		t.Skip("no gnuplot")
	}
	if err := os.WriteFile(e.path("plot.dat"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gp)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gnuplot: %v\n%s", err, out)
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Fatalf("no plot: %v", err)
	}
}

// fakeCheck writes a stand-in for the pgcertgate binary, for the setup
// steps that only run `pgcertgate check --config FILE`: it records the
// name of each configuration checked and refuses those whose text
// contains refuse (nothing when refuse is empty).
func fakeCheck(t *testing.T, refuse string) (bin, checked string) {
	t.Helper()
	dir := t.TempDir()
	bin, checked = filepath.Join(dir, "pgcertgate"), filepath.Join(dir, "checked")
	script := fmt.Sprintf("#!/bin/sh\nbasename \"$3\" .toml >> '%s'\nif [ -n '%s' ] && grep -qF -- '%s' \"$3\"; then echo \"$3:1: unknown key\"; exit 1; fi\nexit 0\n", checked, refuse, refuse)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, checked
}

// checksRun lists the configurations fakeCheck was asked about, in order.
func checksRun(t *testing.T, checked string) []string {
	t.Helper()
	b, err := os.ReadFile(checked)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// checkEnv is an env for the setup steps that stop at `pgcertgate check`:
// no PostgreSQL (a zero Cluster fails any query at once).
func checkEnv(t *testing.T, bin, targets string, o options) *env {
	t.Helper()
	sel, err := parseTargets(targets)
	if err != nil {
		t.Fatal(err)
	}
	o.bin = bin
	if o.eventloop == "" {
		o.eventloop = "auto"
	}
	if o.iouring == "" {
		// The cases below are about one engine's pair unless they
		// say otherwise.
		o.iouring = "off"
	}
	if o.reuse == "" {
		o.reuse = "auto"
	}
	o.eventloopLine, o.iouringLine, o.reuseLine = `relay_engine = "eventloop"`, `relay_engine = "io_uring"`, "reuse = true"
	dir := t.TempDir()
	return &env{o: o, dir: dir, rootCrt: filepath.Join(dir, "root.crt"), cluster: &pgcluster.Cluster{}, selected: sel}
}

// TestSkippedTargets: every path that leaves an optional target out
// either notes why (no -targets) or fails when -targets named it, for
// each such target.
func TestSkippedTargets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		step    func(*env, context.Context) error
		targets string
		o       options
		refuse  string
		wantErr []string // each must be in the error; nil: no error
		notes   []string // each must start a note
	}{
		{
			name: "eventloop+reuse named, -reuse off", step: (*env).setupEventloop,
			targets: targetGateEventloopReuse, o: options{reuse: "off"},
			wantErr: []string{targetGateEventloopReuse + ": -reuse off"},
		},
		{
			name: "both eventloop targets named, -eventloop off", step: (*env).setupEventloop,
			targets: targetGateEventloop + "," + targetGateEventloopReuse, o: options{eventloop: "off"},
			wantErr: []string{targetGateEventloop + ": -eventloop off", targetGateEventloopReuse + ": -eventloop off"},
		},
		{
			name: "every target, -eventloop off", step: (*env).setupEventloop,
			o: options{eventloop: "off"},
			notes: []string{targetGateEventloop + ": not measured: -eventloop off", targetGateEventloopReuse + ": not measured: -eventloop off",
				targetGateIOUring + ": not measured: -io_uring off", targetGateIOUringReuse + ": not measured: -io_uring off"},
		},
		{
			name: "every target, -reuse off, engine refused", step: (*env).setupEventloop,
			o: options{reuse: "off"}, refuse: "relay_engine",
			notes: []string{targetGateEventloopReuse + ": not measured: -reuse off", targetGateEventloop + ": not measured: this pgcertgate refuses",
				targetGateIOUring + ": not measured: -io_uring off", targetGateIOUringReuse + ": not measured: -io_uring off"},
		},
		{
			name: "both io_uring targets named, -io_uring off", step: (*env).setupEventloop,
			targets: targetGateIOUring + "," + targetGateIOUringReuse, o: options{iouring: "off"},
			wantErr: []string{targetGateIOUring + ": -io_uring off", targetGateIOUringReuse + ": -io_uring off"},
		},
		{
			name: "every target, -reuse off, both engines refused", step: (*env).setupEventloop,
			o: options{reuse: "off", iouring: "auto"}, refuse: "relay_engine",
			notes: []string{targetGateEventloopReuse + ": not measured: -reuse off", targetGateEventloop + ": not measured: this pgcertgate refuses",
				targetGateIOUringReuse + ": not measured: -reuse off", targetGateIOUring + ": not measured: this pgcertgate refuses"},
		},
		{
			name: "eventloop+reuse named, engine refused", step: (*env).setupEventloop,
			targets: targetGateEventloopReuse, refuse: "relay_engine",
			wantErr: []string{targetGateEventloopReuse + ": this pgcertgate refuses"},
		},
		{
			name: "ledger-unlogged named, ledger refused", step: (*env).setupLedger,
			targets: targetGateLedgerUnlogged, refuse: "identity_ledger",
			wantErr: []string{targetGateLedgerUnlogged + ": this pgcertgate refuses"},
		},
		{
			name: "ledger and ledger-logged named, ledger refused", step: (*env).setupLedger,
			targets: targetGateLedger + "," + targetGateLedgerLogged, refuse: "identity_ledger",
			wantErr: []string{targetGateLedger + ": this pgcertgate refuses", targetGateLedgerLogged + ": this pgcertgate refuses"},
		},
		{
			name: "every target, ledger refused", step: (*env).setupLedger,
			refuse: "identity_ledger",
			notes:  []string{targetGateLedger + ": not measured", targetGateLedgerLogged + ": not measured", targetGateLedgerUnlogged + ": not measured"},
		},
		{
			name: "reuse named, -reuse off", step: (*env).setupReuse,
			targets: targetGateReuse, o: options{reuse: "off"},
			wantErr: []string{targetGateReuse + ": -reuse off"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, _ := fakeCheck(t, tc.refuse)
			e := checkEnv(t, bin, tc.targets, tc.o)
			err := tc.step(e, context.Background())
			if tc.wantErr == nil && err != nil {
				t.Fatalf("error: %v", err)
			}
			if tc.wantErr != nil && err == nil {
				t.Fatalf("no error; notes %q", e.notes)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if len(e.targets) != 0 {
				t.Errorf("targets set up: %v", e.targets)
			}
			if len(e.notes) != len(tc.notes) {
				t.Errorf("notes %q, want %d", e.notes, len(tc.notes))
			}
			for _, n := range tc.notes {
				if !slices.ContainsFunc(e.notes, func(s string) bool { return strings.HasPrefix(s, n) }) {
					t.Errorf("no note %q in %q", n, e.notes)
				}
			}
		})
	}
}

// TestClientEnv checks that a plain target's clients ask for no TLS and
// carry no certificate, and every other target's verify the server.
func TestClientEnv(t *testing.T) {
	e := &env{dir: "/w", rootCrt: "/w/root.crt", clientCrt: "/w/client.crt", clientKey: "/w/client.key"}
	plain := e.clientEnv(&target{Name: targetRelayFloor, Plain: true})
	if !slices.Contains(plain, "PGSSLMODE=disable") || slices.ContainsFunc(plain, func(s string) bool { return strings.HasPrefix(s, "PGSSLCERT=") }) {
		t.Errorf("plain target's environment: %q", plain)
	}
	tls := e.clientEnv(&target{Name: targetBouncer})
	for _, want := range []string{"PGSSLMODE=verify-ca", "PGSSLROOTCERT=/w/root.crt", "PGSSLCERT=/w/client.crt", "PGSSLKEY=/w/client.key"} {
		if !slices.Contains(tls, want) {
			t.Errorf("TLS target's environment %q lacks %s", tls, want)
		}
	}
}

func TestLedgerVariant(t *testing.T) {
	for _, tc := range []struct {
		installed, targets string
		other, otherName   string
		wantErr            string
	}{
		{"UNLOGGED", "", "LOGGED", targetGateLedgerLogged, ""},
		{"LOGGED", "", "UNLOGGED", targetGateLedgerUnlogged, ""},
		{"UNLOGGED", targetGateLedgerLogged, "LOGGED", targetGateLedgerLogged, ""},
		{"LOGGED", targetGateLedger + "," + targetGateLedgerUnlogged, "UNLOGGED", targetGateLedgerUnlogged, ""},
		// The installed persistence under its own name is pgcertgate+ledger.
		{"LOGGED", targetGateLedger + "," + targetGateLedgerLogged, "", "", targetGateLedgerLogged + ": `pgcertgate install-sql` creates pgcertgate.sessions LOGGED"},
		{"UNLOGGED", targetGateLedgerUnlogged, "", "", targetGateLedgerUnlogged + ": `pgcertgate install-sql` creates pgcertgate.sessions UNLOGGED"},
	} {
		sel, err := parseTargets(tc.targets)
		if err != nil {
			t.Fatal(err)
		}
		e := &env{selected: sel}
		other, otherName, err := e.ledgerVariant(tc.installed)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s, -targets %q: %q, %q, %v; want error %q", tc.installed, tc.targets, other, otherName, err, tc.wantErr)
			}
			continue
		}
		if err != nil || other != tc.other || otherName != tc.otherName {
			t.Errorf("%s, -targets %q: %q, %q, %v; want %q, %q", tc.installed, tc.targets, other, otherName, err, tc.other, tc.otherName)
		}
	}
}

// TestPrepareLedgerProfile: PostgreSQL is restarted for
// pg_stat_statements only once the binary is known to accept the ledger,
// and setupLedger reuses that one check.
func TestPrepareLedgerProfile(t *testing.T) {
	bin, checked := fakeCheck(t, "identity_ledger")
	e := checkEnv(t, bin, "", options{})
	// A zero Cluster fails every query: reaching PostgreSQL is an error.
	if err := e.prepareLedgerProfile(context.Background()); err != nil {
		t.Fatalf("PostgreSQL touched for a binary that refuses the ledger: %v", err)
	}
	if err := e.setupLedger(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := checksRun(t, checked); !slices.Equal(got, []string{"ledger-check"}) {
		t.Errorf("checks run: %q, want the ledger's once", got)
	}
	// Without the profile run nothing is checked or restarted.
	bin, checked = fakeCheck(t, "")
	e = checkEnv(t, bin, "", options{skipProf: true})
	if err := e.prepareLedgerProfile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := checksRun(t, checked); got != nil {
		t.Errorf("-skip-profile: checks run: %q", got)
	}
}

// TestMemAdmin: pprof is asked about only when the admin endpoint itself
// is accepted.
func TestMemAdmin(t *testing.T) {
	for _, tc := range []struct {
		refuse     string
		admin      bool
		adminExtra string
		checks     []string
	}{
		{"[admin]", false, "", []string{"admin-check"}},
		{"pprof", true, "", []string{"admin-check", "pprof-check"}},
		{"", true, "pprof = true", []string{"admin-check", "pprof-check"}},
	} {
		bin, checked := fakeCheck(t, tc.refuse)
		e := checkEnv(t, bin, "", options{})
		admin, extra, env := e.memAdmin(context.Background())
		if admin != tc.admin || extra != tc.adminExtra || (env != nil) != (extra != "") {
			t.Errorf("refusing %q: %v %q %q, want %v %q", tc.refuse, admin, extra, env, tc.admin, tc.adminExtra)
		}
		if got := checksRun(t, checked); !slices.Equal(got, tc.checks) {
			t.Errorf("refusing %q: checks run %q, want %q", tc.refuse, got, tc.checks)
		}
	}
}

// TestWorkloadByKey: the runs that need one workload find it by key, so
// reordering allWorkloads changes none of them.
func TestWorkloadByKey(t *testing.T) {
	saved := allWorkloads
	t.Cleanup(func() { allWorkloads = saved })
	allWorkloads = slices.Clone(saved)
	slices.Reverse(allWorkloads)
	for _, k := range []string{"S1", "S8", "C4", "copy-out", "copy-in"} {
		if w := workloadByKey(k); w.Key != k {
			t.Errorf("workloadByKey(%q) = %q", k, w.Key)
		}
	}
	if w := warmupWorkload(&target{Name: targetGate}); w.Key != "S8" {
		t.Errorf("warm-up of a target on every workload: %s", w.Key)
	}
	if w := warmupWorkload(&target{Name: targetGateLedger, Workloads: connectOnly}); w.Key != "C4" {
		t.Errorf("warm-up of a connect-only target: %s", w.Key)
	}
	if ws, err := selectedWorkloads("C4, S8"); err != nil || len(ws) != 2 || ws[0].Key != "C4" || ws[1].Key != "S8" {
		t.Errorf("selectedWorkloads: %v, %v", ws, err)
	}
}

// TestMedianCPU: the verdicts and the ledger breakdown read the same
// per-field medians.
func TestMedianCPU(t *testing.T) {
	r := &report{}
	for i, p := range []float64{12, 10, 30} {
		rr := runResult{Target: targetGate, Workload: "C4", Round: i + 1, CPU: &cpuPerTx{Proxy: p, Postgres: 2 * p}}
		r.runs = append(r.runs, rr)
	}
	r.runs = append(r.runs, runResult{Target: targetGate, Workload: "S8", CPU: &cpuPerTx{Proxy: 99}}, runResult{Target: targetGate, Workload: "C4"})
	m, ok := r.medianCPU(targetGate, "C4")
	if !ok || m.Proxy != 12 || m.Postgres != 24 {
		t.Errorf("medianCPU = %+v, %v", m, ok)
	}
	if _, ok := r.medianCPU(targetGateLedger, "C4"); ok {
		t.Error("medianCPU of a target without runs")
	}
}

func TestInlineTOML(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"reuse = true", "`reuse = true`"},
		{"reuse = true\nreuse_idle_timeout = \"600s\"\n", "`reuse = true`, `reuse_idle_timeout = \"600s\"`"},
		{"\n  a = 1\n\nb = 2", "`a = 1`, `b = 2`"},
		{reuseSetting("reuse = true\n"), "`reuse = true`, `reuse_idle_timeout = \"600s\"`"},
	} {
		if got := inlineTOML(tc.in); got != tc.want {
			t.Errorf("inlineTOML(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRelayFloorRefused: a relayfloor that cannot start (a kernel that
// refuses io_uring) is reported with its own words, and a missing binary
// as such; -targets naming it makes either an error.
func TestRelayFloorRefused(t *testing.T) {
	script := filepath.Join(t.TempDir(), "relayfloor")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'relayfloor: io_uring: operation not permitted' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ bin, want string }{
		{script, "relayfloor: relayfloor exited at start (relayfloor: io_uring: operation not permitted)"},
		{filepath.Join(t.TempDir(), "absent"), "relayfloor: no relayfloor binary"},
		{"", "relayfloor: -relayfloor is empty"},
	} {
		e := checkEnv(t, "", targetRelayFloor, options{relayfloor: tc.bin})
		err := e.setupFloors(context.Background())
		e.close()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("-relayfloor %q: error %v, want one starting %q", tc.bin, err, tc.want)
		}
		if len(e.targets) != 0 {
			t.Errorf("-relayfloor %q: targets set up: %v", tc.bin, e.targets)
		}
	}
}
