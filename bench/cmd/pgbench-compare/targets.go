//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// The targets beyond direct PostgreSQL, PgBouncer, pgcertgate and
// pgcertgate+reuse: each is pgcertgate with one feature switched on, to
// show what that feature costs against plain pgcertgate in the same
// rounds.
const (
	// The identity ledger, with its table as install-sql creates it.
	targetGateLedger = "pgcertgate+ledger"
	// The same with the table's other persistence (LOGGED when
	// install-sql creates it UNLOGGED), to show what UNLOGGED buys.
	targetGateLedgerLogged   = "pgcertgate+ledger-logged"
	targetGateLedgerUnlogged = "pgcertgate+ledger-unlogged"
	// Three per-line CA sets, the client's the last line's.
	targetGateCASets = "pgcertgate+3casets"
	// OCSP required, answered by a real responder, cache warm.
	targetGateOCSP = "pgcertgate+ocsp"
	// The event-loop relay, without and with backend reuse, on epoll
	// and on io_uring.
	targetGateEventloop      = "pgcertgate-eventloop"
	targetGateEventloopReuse = "pgcertgate-eventloop+reuse"
	targetGateIOUring        = "pgcertgate-io_uring"
	targetGateIOUringReuse   = "pgcertgate-io_uring+reuse"
	// The floor under a relay's CPU, with no TLS: PgBouncer with client
	// TLS off, and bench/cmd/relayfloor's io_uring loop, which moves
	// bytes and nothing else. Clients reach both with sslmode=disable.
	targetBouncerPlain = "pgbouncer-plaintext"
	targetRelayFloor   = "relayfloor"
)

// floorWorkloads are the workloads of the plaintext floor targets: the
// select-only runs whose CPU per transaction the event loop's goals are
// about.
var floorWorkloads = []string{"S8", "S1"}

// loopTargets is one event-loop engine's pair of targets: its name
// without and with backend reuse, the flag that turns it off and the
// top-level line that selects it.
type loopTargets struct {
	plain, reuse string
	flag         string
	mode, line   func(o *options) string
}

// loopEngines are the event-loop engines the bench measures, each as a
// pair of targets in the same rounds.
var loopEngines = []loopTargets{
	{targetGateEventloop, targetGateEventloopReuse, "-eventloop",
		func(o *options) string { return o.eventloop }, func(o *options) string { return o.eventloopLine }},
	{targetGateIOUring, targetGateIOUringReuse, "-io_uring",
		func(o *options) string { return o.iouring }, func(o *options) string { return o.iouringLine }},
}

// knownTargets are the names -targets accepts, in the order each round
// visits them.
var knownTargets = []string{
	targetDirect, targetBouncer, targetGate, targetGateReuse,
	targetGateEventloop, targetGateEventloopReuse,
	targetGateIOUring, targetGateIOUringReuse,
	targetGateLedger, targetGateLedgerLogged, targetGateLedgerUnlogged,
	targetGateCASets, targetGateOCSP,
	targetBouncerPlain, targetRelayFloor,
}

// connectOnly are the workloads of the targets whose verdicts are about
// logins only: running them on every workload would double the bench for
// numbers nobody asked for.
var connectOnly = []string{"C4"}

// parseTargets reads -targets: "" or "all" selects every target (the
// optional ones when the binary accepts their settings); otherwise a
// comma-separated list of names, each of which must then be measured.
func parseTargets(s string) (map[string]bool, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return nil, nil
	}
	sel := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(knownTargets, n) {
			return nil, fmt.Errorf("-targets: unknown target %q (known: %s)", n, strings.Join(knownTargets, ", "))
		}
		sel[n] = true
	}
	if len(sel) == 0 {
		return nil, errors.New("-targets: no target named")
	}
	return sel, nil
}

// want reports whether the target is selected (every target is, with no
// -targets).
func (e *env) want(name string) bool { return e.selected == nil || e.selected[name] }

// required reports whether -targets names the target: then a binary that
// refuses its settings is an error rather than a note in the report.
func (e *env) required(name string) bool { return e.selected != nil && e.selected[name] }

// hasTarget reports whether the target was set up.
func (e *env) hasTarget(name string) bool {
	return slices.ContainsFunc(e.targets, func(t *target) bool { return t.Name == name })
}

// runs reports whether the target is measured on workload key.
func (t *target) runs(key string) bool {
	return t.Workloads == nil || slices.Contains(t.Workloads, key)
}

// fileName is a target's name as a file name.
func fileName(target string) string { return strings.ReplaceAll(target, "+", "-") }

// reportedConfigs are the pgcertgate configurations the report prints.
var reportedConfigs = map[string]bool{
	"pgcertgate": true, "pgcertgate-reuse": true, "pgcertgate-ledger": true,
	"pgcertgate-3casets": true, "pgcertgate-ocsp": true, "pgcertgate-eventloop": true,
	"pgcertgate-io_uring": true,
}

// notMeasured records why an optional target was left out; when -targets
// named it, that is an error.
func (e *env) notMeasured(name, why string) error {
	if e.required(name) {
		return fmt.Errorf("%s: %s", name, why)
	}
	e.notes = append(e.notes, fmt.Sprintf("%s: not measured: %s.", name, why))
	logf("%s: not measured: %s", name, why)
	return nil
}

// addGate starts pgcertgate as target name and appends it.
func (e *env) addGate(ctx context.Context, name string, o gateOpts, workloads []string) (*target, error) {
	o.name = fileName(name)
	g, err := e.startGate(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	t := &target{Name: name, Port: g.port, proc: g.proc, Workloads: workloads, cfgPath: g.cfgPath}
	e.targets = append(e.targets, t)
	return t, nil
}

// refusal shortens `pgcertgate check`'s output for the report.
func refusal(setting, out string) string {
	first, _, _ := strings.Cut(out, "\n")
	if first == "" {
		return fmt.Sprintf("this pgcertgate refuses %s (`pgcertgate check` fails)", inlineTOML(setting))
	}
	return fmt.Sprintf("this pgcertgate refuses %s (`pgcertgate check`: %s)", inlineTOML(setting), first)
}

// notMeasuredEach calls notMeasured for each of names that is selected:
// a skip must never drop a target -targets named without an error.
func (e *env) notMeasuredEach(why string, names ...string) error {
	var errs []error
	for _, n := range names {
		if e.want(n) {
			errs = append(errs, e.notMeasured(n, why))
		}
	}
	return errors.Join(errs...)
}

// setupEventloop adds each event-loop engine's pair of targets when the
// binary accepts the engine's setting.
func (e *env) setupEventloop(ctx context.Context) error {
	for _, lt := range loopEngines {
		if err := e.setupLoopEngine(ctx, lt); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) setupLoopEngine(ctx context.Context, lt loopTargets) error {
	wantPlain, wantReuse := e.want(lt.plain), e.want(lt.reuse)
	if !wantPlain && !wantReuse {
		return nil
	}
	mode, line := lt.mode(&e.o), lt.line(&e.o)
	if mode == "off" {
		return e.notMeasuredEach(lt.flag+" off", lt.plain, lt.reuse)
	}
	if wantReuse && e.o.reuse == "off" {
		if err := e.notMeasured(lt.reuse, "-reuse off"); err != nil {
			return err
		}
		wantReuse = false
		if !wantPlain {
			return nil
		}
	}
	ok, out := e.acceptsConfig(ctx, gateOpts{name: fileName(lt.plain) + "-check", topExtra: line})
	if !ok {
		why := refusal(line, out)
		if mode == "on" {
			return errors.New(why)
		}
		var skipped []string
		if wantPlain {
			skipped = append(skipped, lt.plain)
		}
		if wantReuse {
			skipped = append(skipped, lt.reuse)
		}
		return e.notMeasuredEach(why, skipped...)
	}
	if wantPlain {
		if _, err := e.addGate(ctx, lt.plain, gateOpts{topExtra: line}, nil); err != nil {
			return err
		}
	}
	if wantReuse {
		if ok, out := e.acceptsConfig(ctx, gateOpts{name: fileName(lt.reuse) + "-check", topExtra: line, backendExtra: e.o.reuseLine}); !ok {
			return e.notMeasured(lt.reuse, refusal(e.o.reuseLine, out))
		}
		if _, err := e.addGate(ctx, lt.reuse, gateOpts{topExtra: line, backendExtra: e.o.reuseLine}, nil); err != nil {
			return err
		}
	}
	return nil
}

// setupFloors adds the plaintext floor targets: PgBouncer without client
// TLS, and relayfloor when its binary is there.
func (e *env) setupFloors(ctx context.Context) error {
	if e.want(targetBouncerPlain) {
		p, port, err := e.startBouncer(ctx, true)
		if err != nil {
			return fmt.Errorf("%s: %w", targetBouncerPlain, err)
		}
		e.targets = append(e.targets, &target{Name: targetBouncerPlain, Port: port, proc: p, Workloads: floorWorkloads, Plain: true})
	}
	if !e.want(targetRelayFloor) {
		return nil
	}
	if e.o.relayfloor == "" {
		return e.notMeasured(targetRelayFloor, "-relayfloor is empty")
	}
	if _, err := os.Stat(e.o.relayfloor); err != nil {
		return e.notMeasured(targetRelayFloor, fmt.Sprintf("no relayfloor binary (%v; make bench builds it)", err))
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, e.o.relayfloor, "-mode", "uring",
		"-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"-backend", fmt.Sprintf("%s/.s.PGSQL.%d", e.cluster.SocketDir(), e.cluster.Port()))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p, err := e.startProc(targetRelayFloor, cmd)
	if err != nil {
		return err
	}
	if err := waitPort(p, port, 30*time.Second); err != nil {
		// A kernel that refuses io_uring (io_uring_disabled) stops
		// relayfloor at once; the rest of the bench still measures.
		if p.exited() {
			first, _, _ := strings.Cut(strings.TrimSpace(p.logTail()), "\n")
			return e.notMeasured(targetRelayFloor, fmt.Sprintf("relayfloor exited at start (%s)", first))
		}
		return fmt.Errorf("%s: %w", targetRelayFloor, err)
	}
	e.targets = append(e.targets, &target{Name: targetRelayFloor, Port: port, proc: p, Workloads: floorWorkloads, Plain: true})
	return nil
}

// ledgerUser is the role pgcertgate writes the identity ledger as.
const ledgerUser = "pgcertgate_ledger"

// ledgerBackend is the [backend] part that turns the ledger on.
const ledgerBackend = "identity_ledger = true\nledger_user = \"" + ledgerUser + "\""

// ledgerTargets are the identity ledger's targets.
var ledgerTargets = []string{targetGateLedger, targetGateLedgerLogged, targetGateLedgerUnlogged}

// ledgerAccepted reports whether `pgcertgate check` accepts the ledger
// settings, with its output when it does not. The check runs once: setup
// asks before restarting PostgreSQL for pg_stat_statements, and
// setupLedger again.
func (e *env) ledgerAccepted(ctx context.Context) (bool, string) {
	if e.ledgerCheck == nil {
		ok, out := e.acceptsConfig(ctx, gateOpts{name: "ledger-check", backendExtra: ledgerBackend})
		e.ledgerCheck = &checkResult{ok: ok, out: out}
	}
	return e.ledgerCheck.ok, e.ledgerCheck.out
}

// ledgerVariant is the second ledger target, given the persistence
// install-sql created the table with ("LOGGED" or "UNLOGGED"): the other
// persistence and its target's name. The target named after the installed
// persistence would measure exactly what pgcertgate+ledger does, so
// -targets naming it is an error rather than a target quietly dropped.
func (e *env) ledgerVariant(installed string) (other, otherName string, err error) {
	other, otherName, same := "UNLOGGED", targetGateLedgerUnlogged, targetGateLedgerLogged
	if installed == "UNLOGGED" {
		other, otherName, same = "LOGGED", targetGateLedgerLogged, targetGateLedgerUnlogged
	}
	if e.required(same) {
		return "", "", fmt.Errorf("%s: `pgcertgate install-sql` creates pgcertgate.sessions %s, so this target would be %s itself; name %s (and %s for the %s table)",
			same, installed, targetGateLedger, targetGateLedger, otherName, other)
	}
	return other, otherName, nil
}

// setupLedger installs the identity ledger in the bench database with
// `pgcertgate install-sql`, as the README says, and adds the ledger
// targets: the table as installed, and with its other persistence. Both
// share the one table (a database has one ledger), so each run first sets
// the persistence its target stands for (ALTER TABLE … SET LOGGED or SET
// UNLOGGED: untimed, and the table holds only live sessions' rows).
func (e *env) setupLedger(ctx context.Context) error {
	if !slices.ContainsFunc(ledgerTargets, e.want) {
		return nil
	}
	if ok, out := e.ledgerAccepted(ctx); !ok {
		return e.notMeasuredEach(refusal("[backend] identity_ledger = true", out), ledgerTargets...)
	}
	if err := e.cluster.Exec(ctx, "CREATE ROLE "+ledgerUser+" LOGIN"); err != nil {
		return fmt.Errorf("ledger role: %w", err)
	}
	sql, err := exec.CommandContext(ctx, e.o.bin, "install-sql", "--config", e.path("ledger-check.toml")).Output()
	if err != nil {
		return fmt.Errorf("pgcertgate install-sql: %w", err)
	}
	sqlPath := e.path("ledger-install.sql")
	if err := os.WriteFile(sqlPath, sql, 0o644); err != nil {
		return err
	}
	// install-sql's output is a psql script (\set ON_ERROR_STOP), run as
	// the superuser over the Unix socket.
	cmd := exec.CommandContext(ctx, e.tools.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", sqlPath,
		"-h", e.cluster.SocketDir(), "-p", fmt.Sprint(e.cluster.Port()), "-U", "postgres", benchDB)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir, "LC_ALL=C"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("installing the ledger: %w\n%s", err, out)
	}
	res, err := e.superExec(ctx, "SELECT relpersistence FROM pg_catalog.pg_class WHERE oid = 'pgcertgate.sessions'::regclass")
	if err != nil {
		return err
	}
	installed := "LOGGED"
	if string(res[0].Rows[0][0]) == "u" {
		installed = "UNLOGGED"
	}
	other, otherName, err := e.ledgerVariant(installed)
	if err != nil {
		return err
	}
	e.ledgerInstalled, e.ledgerOther = installed, other
	persist := func(p string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.superExec(ctx, "ALTER TABLE pgcertgate.sessions SET "+p)
			return err
		}
	}
	if e.want(targetGateLedger) {
		t, err := e.addGate(ctx, targetGateLedger, gateOpts{backendExtra: ledgerBackend}, connectOnly)
		if err != nil {
			return err
		}
		t.before = persist(installed)
	}
	if e.want(otherName) {
		t, err := e.addGate(ctx, otherName, gateOpts{backendExtra: ledgerBackend}, connectOnly)
		if err != nil {
			return err
		}
		t.before = persist(other)
	}
	// The psql check at the end of setup runs through the ledger targets
	// too: leave the table as installed afterwards.
	return nil
}

// caSetsHBA is the pg_hba.conf of pgcertgate+3casets: three lines, each
// with its own CA set, and the client (database bench) matches only the
// last, so the first two are evaluated and passed over on every login.
const caSetsHBA = `hostssl bench_a all 127.0.0.1/32 cert clientca=@a
hostssl bench_b all 127.0.0.1/32 cert clientca=@b
hostssl all     all 127.0.0.1/32 cert clientca=@c
`

// caSetsTables defines the three sets: a and b are CAs of their own, c
// holds the bench CA (also ssl_ca_file, as on every target). The handshake
// verifies the chain against ssl_ca_file first; the matched line then
// requires @c, a different set, so the chain is verified a second time:
// the most a per-line set costs a login.
func caSetsTables(a, b, c string) string {
	return fmt.Sprintf("[client_ca.a]\nfile = %q\n\n[client_ca.b]\nfile = %q\n\n[client_ca.c]\nfile = %q\n", a, b, c)
}

func (e *env) setupCASets(ctx context.Context) error {
	if !e.want(targetGateCASets) {
		return nil
	}
	files := map[string][]byte{}
	for _, n := range []string{"a", "b"} {
		ca, err := testpki.NewRootCA(pkix.Name{CommonName: "pgcertgate bench CA " + n})
		if err != nil {
			return err
		}
		files[n] = ca.CertPEM
	}
	files["c"] = e.rootPEM
	for n, pem := range files {
		if err := testpki.WriteFile(e.path("ca-"+n+".crt"), pem, 0o644); err != nil {
			return err
		}
	}
	o := gateOpts{name: "casets-check", hba: caSetsHBA, tables: caSetsTables(e.path("ca-a.crt"), e.path("ca-b.crt"), e.path("ca-c.crt"))}
	if ok, out := e.acceptsConfig(ctx, o); !ok {
		return e.notMeasured(targetGateCASets, refusal("clientca=@NAME", out))
	}
	_, err := e.addGate(ctx, targetGateCASets, o, connectOnly)
	return err
}

// ocspIndexLine is the bench client certificate's line in `openssl ocsp`'s
// index: valid, expiring in a day, serial in upper-case hex of an even
// length.
func ocspIndexLine(serialHex string, expires time.Time) string {
	hex := strings.ToUpper(serialHex)
	if len(hex)%2 == 1 {
		hex = "0" + hex
	}
	return fmt.Sprintf("V\t%s\t\t%s\tunknown\t/CN=%s\n", expires.UTC().Format("060102150405Z"), hex, benchUser)
}

var reOCSPAccept = regexp.MustCompile(`(?m)^ACCEPT .*:(\d+)\b`)

// setupOCSP starts `openssl ocsp` answering for the bench CA (the client
// certificate good, answers valid for an hour) and adds pgcertgate+ocsp:
// ssl_ocsp = "require" against that responder. Its first login (the
// setup's psql check) fills the cache; the timed runs measure logins
// with a warm cache.
func (e *env) setupOCSP(ctx context.Context) error {
	if !e.want(targetGateOCSP) {
		return nil
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		return e.notMeasured(targetGateOCSP, "no openssl for the OCSP responder (make bench-deps)")
	}
	if err := testpki.WriteFile(e.path("ocsp-index.txt"), []byte(ocspIndexLine(e.clientSerial, time.Now().Add(24*time.Hour))), 0o644); err != nil {
		return err
	}
	if err := testpki.WriteFile(e.path("ca.key"), e.caKeyPEM, 0o600); err != nil {
		return err
	}
	// -port 0: openssl binds a free port and prints it (ACCEPT line).
	// It binds every interface: OpenSSL 3's responder takes a bare port
	// number (`-port 127.0.0.1:0` is refused) and has no option for the
	// address (-host is the client's). Acceptable here: it answers only
	// for this run's throw-away CA, signs with that CA's key, and lives
	// only as long as the bench.
	cmd := exec.CommandContext(ctx, openssl, "ocsp", "-index", e.path("ocsp-index.txt"), "-port", "0",
		"-rsigner", e.rootCrt, "-rkey", e.path("ca.key"), "-CA", e.rootCrt, "-nmin", "60", "-ignore_err")
	p, err := e.startProc("ocsp-responder", cmd)
	if err != nil {
		return err
	}
	e.ocsp = p
	deadline := time.Now().Add(30 * time.Second)
	port := ""
	for port == "" {
		b, _ := os.ReadFile(p.logPath)
		if m := reOCSPAccept.FindSubmatch(b); m != nil {
			port = string(m[1])
			break
		}
		if p.exited() || time.Now().After(deadline) {
			return fmt.Errorf("openssl ocsp did not start:\n%s", p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	top := fmt.Sprintf("ssl_ocsp = \"require\"\nssl_ocsp_responder = \"http://127.0.0.1:%s/\"", port)
	if ok, out := e.acceptsConfig(ctx, gateOpts{name: "ocsp-check", topExtra: top}); !ok {
		return e.notMeasured(targetGateOCSP, refusal(`ssl_ocsp = "require"`, out))
	}
	_, err = e.addGate(ctx, targetGateOCSP, gateOpts{topExtra: top}, connectOnly)
	return err
}

// ocspRequests counts the requests the responder has answered (it logs
// each one).
func (e *env) ocspRequests() int {
	if e.ocsp == nil {
		return 0
	}
	f, err := os.Open(e.ocsp.logPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Received request") {
			n++
		}
	}
	return n
}

// describeTargets says what each target beyond the core ones is, and why
// an optional one was not measured.
func (r *report) describeTargets(p func(string, ...any)) {
	e := r.env
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	if e.baseTop != "" {
		add("- Every pgcertgate target except the event-loop ones runs with `%s`: they measure the goroutine relay, the A/B reference, whatever the binary's default engine is.", e.baseTop)
	}
	if e.hasTarget(targetGateReuse) {
		add("- **%s**: pgcertgate with `[backend]` %s (backend-connection reuse; PgBouncer runs with `server_idle_timeout = %d`, so both keep idle server connections between rounds).", targetGateReuse, inlineTOML(r.opts.reuseLine), serverIdleTimeout)
	}
	for _, lt := range loopEngines {
		if e.hasTarget(lt.plain) || e.hasTarget(lt.reuse) {
			add("- **%s**: pgcertgate with %s (an event-loop relay); **%s** adds `[backend]` %s.", lt.plain, inlineTOML(lt.line(&r.opts)), lt.reuse, inlineTOML(r.opts.reuseLine))
		}
	}
	for _, l := range []string{targetGateLedger, targetGateLedgerLogged, targetGateLedgerUnlogged} {
		if !e.hasTarget(l) {
			continue
		}
		persistence := e.ledgerInstalled + ", as `pgcertgate install-sql` creates it"
		if l != targetGateLedger {
			persistence = e.ledgerOther + " (`ALTER TABLE pgcertgate.sessions SET " + e.ledgerOther + "` before each of its runs)"
		}
		add("- **%s**: pgcertgate with `[backend] identity_ledger = true`, `ledger_user = \"%s\"`, the ledger installed in the bench database with `pgcertgate install-sql | psql`; table %s. Connect per transaction only.", l, ledgerUser, persistence)
	}
	if e.hasTarget(targetGateLedgerLogged) || e.hasTarget(targetGateLedgerUnlogged) {
		add("  The bench's PostgreSQL runs with fsync = off and synchronous_commit = off on tmpfs, so a LOGGED table costs its WAL records here, never a wait for a WAL flush: on a disk with synchronous_commit = on, each LOGGED ledger write would also wait for one.")
	}
	if e.hasTarget(targetGateCASets) {
		add("- **%s**: pgcertgate whose pg_hba.conf has three `hostssl` lines, each with its own CA set (`clientca=@a`, `@b`, `@c`); the bench client matches only the last (the first two name other databases), whose set `@c` holds the bench CA (as `ssl_ca_file` does, on every target). Every login walks all three lines and, since the handshake recorded `ssl_ca_file` and the line requires `@c`, verifies the chain twice. Connect per transaction only.", targetGateCASets)
	}
	if e.hasTarget(targetGateOCSP) {
		add("- **%s**: pgcertgate with `ssl_ocsp = \"require\"` and `ssl_ocsp_responder` pointing at `openssl ocsp` (started by the bench, answering `good` for the client certificate, `-nmin 60`). The setup's first login fills the cache; over the whole bench the responder answered %d request(s), so the timed logins measure a warm cache. Connect per transaction only.", targetGateOCSP, r.ocspRequests)
	}
	if e.hasTarget(targetBouncerPlain) || e.hasTarget(targetRelayFloor) {
		add("- **%s** and **%s**: the floor under a relay's CPU, without TLS; clients reach them with `sslmode=disable` and no certificate (instead of the environment below). %s is the same PgBouncer with no `client_tls_*` settings and `auth_type = hba` trusting 127.0.0.1; %s is `bench/cmd/relayfloor -mode uring`, a loop that keeps one receive in flight per socket, sends what it received to the peer and does nothing else (no TLS, no parsing), in front of PostgreSQL's Unix socket. Select-only runs only.", targetBouncerPlain, targetRelayFloor, targetBouncerPlain, targetRelayFloor)
	}
	for _, n := range e.notes {
		add("- %s", n)
	}
	if len(lines) == 0 {
		return
	}
	for _, l := range lines {
		p("%s\n", l)
	}
	p("\n")
}

// inlineTOML renders configuration lines as Markdown code spans, one per
// line, separated by commas.
func inlineTOML(lines string) string {
	var spans []string
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			spans = append(spans, "`"+l+"`")
		}
	}
	return strings.Join(spans, ", ")
}
