//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

const (
	benchUser    = "bench" // the client certificate's CN and the role it logs in as
	benchDB      = "bench"
	pgbenchScale = 10
	// bulkRowPayload is repeat(md5(i), 30): 960 characters, under the
	// ~2 kB TOAST threshold, so rows are stored inline and uncompressed and
	// COPY moves them without detoasting.
	bulkRowPayload = "repeat(md5(i::text), 30)"
)

// Names of the targets, in the order each round visits them.
const (
	targetDirect     = "direct"
	targetBouncer    = "pgbouncer"
	targetGate       = "pgcertgate"
	targetGateReuse  = "pgcertgate+reuse"
	backendMaxConns  = 1200 // ≥ the idle-session run's 1,000 plus headroom
	sharedBuffers    = "512MB"
	gateMaxConns     = 1100
	gateMaxStartups  = 12000 // ≥ the parked-clients run's 10,000
	gateAuthTimeout  = "300s"
	bouncerMaxClient = 2000
	bouncerPoolSize  = 1100 // session pooling: one server per client in the idle run
	// serverIdleTimeout is how long PgBouncer keeps an idle server
	// connection (server_idle_timeout, its default) and pgcertgate a kept
	// backend (reuse_idle_timeout). It is longer than a round: a run that
	// starts on new backends pays their page faults on shared_buffers,
	// which a pool kept from the last round has already paid.
	serverIdleTimeout = 600 // seconds
)

// reuseSetting is the [backend] lines of a reuse target: line, which turns
// reuse on, and the same idle timeout as PgBouncer's.
func reuseSetting(line string) string {
	return fmt.Sprintf("%s\nreuse_idle_timeout = \"%ds\"", strings.TrimRight(line, "\n"), serverIdleTimeout)
}

// target is one endpoint pgbench and psql connect to.
type target struct {
	Name string
	Port int
	TLS  string // as psql's \conninfo reports it: "(protocol: TLSv1.3, cipher: …)"
	proc *proc  // the process whose RSS is sampled; nil for direct PostgreSQL
	// Workloads are the keys of the workloads the target is measured on;
	// nil means all.
	Workloads []string
	// before runs (untimed) before each of the target's runs.
	before  func(context.Context) error
	cfgPath string // pgcertgate's configuration file
	// Plain targets take no TLS: clients connect with sslmode=disable.
	Plain bool
}

// env is everything setup made.
type env struct {
	o     options
	tools tools
	dir   string // work directory, removed by close unless -keep
	// baseTop is -goroutine-setting when the binary accepts it: the
	// top-level line of every pgcertgate configuration that does not
	// choose its relay engine itself.
	baseTop string

	rootCrt, clientCrt, clientKey string
	serverCrtPEM, serverKeyPEM    []byte
	rootPEM                       []byte

	cluster   *pgcluster.Cluster
	pgVersion string
	procs     []*proc
	targets   []*target

	bulkFile  string
	bulkBytes int64
	bulkRows  int64

	bouncerVersion string
	reuse          string // "" when measured, else why not
	// selected is -targets (nil: every target).
	selected map[string]bool
	// notes say why optional targets were not measured.
	notes []string
	// The ledger table's persistence as install-sql creates it, and the
	// other one, measured as a second ledger target.
	ledgerInstalled, ledgerOther string
	// ledgerCheck is `pgcertgate check` on the ledger settings, run once.
	ledgerCheck  *checkResult
	ocsp         *proc // the OCSP responder
	clientSerial string
	caKeyPEM     []byte
	// statStatements: pg_stat_statements is loaded (tracking off until
	// the ledger profile run).
	statStatements bool
	// files records each generated configuration for the report.
	files []namedFile
	// setupTimes records how long each setup step took.
	setupTimes []namedDuration
}

// checkResult is one `pgcertgate check` of a bench configuration.
type checkResult struct {
	ok  bool
	out string
}

type namedFile struct{ Name, Content string }
type namedDuration struct {
	Name string
	D    time.Duration
}

// proc is a child process (pgcertgate or PgBouncer).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM (pgcertgate: smart shutdown, which also writes its
// profiles; PgBouncer: shutdown once clients are gone) and waits, then
// kills.
func (p *proc) stop() error {
	if p.exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	return p.err
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (e *env) close() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		if err := e.procs[i].stop(); err != nil && e.o.verbose {
			logf("%s stopped: %v", e.procs[i].name, err)
		}
	}
	if e.cluster != nil {
		_ = e.cluster.Stop()
	}
	if e.dir != "" {
		if e.o.keep {
			logf("kept work directory %s", e.dir)
		} else {
			os.RemoveAll(e.dir)
		}
	}
}

func (e *env) step(name string, began time.Time) {
	d := time.Since(began)
	e.setupTimes = append(e.setupTimes, namedDuration{name, d})
	logf("%s: %s", name, d.Round(time.Millisecond))
}

// setup creates the PKI, the PostgreSQL cluster and its data, PgBouncer and
// pgcertgate. On error the returned env (if any) still needs close.
func setup(ctx context.Context, o options, t tools) (*env, error) {
	e := &env{o: o, tools: t}
	var err error
	if e.selected, err = parseTargets(o.targets); err != nil {
		return nil, err
	}
	// The work directory holds Unix sockets (short path), the COPY file
	// and configuration files that the postgres user must read; on
	// tmpfs when there is one, so the COPY file never waits on a disk.
	parent := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		parent = "/dev/shm"
	}
	dir, err := os.MkdirTemp(parent, "pgcgbench")
	if err != nil {
		return nil, err
	}
	e.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return e, err
	}

	began := time.Now()
	if err := e.writePKI(); err != nil {
		return e, fmt.Errorf("certificates: %w", err)
	}
	began = time.Now()
	if err := e.startCluster(ctx); err != nil {
		return e, fmt.Errorf("PostgreSQL: %w", err)
	}
	if err := e.prepareLedgerProfile(ctx); err != nil {
		return e, fmt.Errorf("pg_stat_statements: %w", err)
	}
	e.step("start PostgreSQL", began)

	began = time.Now()
	if err := e.initData(ctx); err != nil {
		return e, err
	}
	e.step(fmt.Sprintf("pgbench -i -s %d and the %d MB COPY table", pgbenchScale, o.copyMB), began)

	if e.want(targetDirect) {
		e.targets = append(e.targets, &target{Name: targetDirect, Port: e.cluster.Port()})
	}

	began = time.Now()
	if e.want(targetBouncer) {
		bp, bport, err := e.startBouncer(ctx, false)
		if err != nil {
			return e, fmt.Errorf("PgBouncer: %w", err)
		}
		e.targets = append(e.targets, &target{Name: targetBouncer, Port: bport, proc: bp})
	}

	if e.o.goroutineLine != "" {
		if ok, _ := e.acceptsConfig(ctx, gateOpts{name: "goroutine-check", topExtra: e.o.goroutineLine}); ok {
			e.baseTop = e.o.goroutineLine
		}
	}
	if e.want(targetGate) {
		if _, err := e.addGate(ctx, targetGate, gateOpts{}, nil); err != nil {
			return e, err
		}
	}
	if err := e.setupReuse(ctx); err != nil {
		return e, err
	}
	for _, f := range []func(context.Context) error{e.setupEventloop, e.setupLedger, e.setupCASets, e.setupOCSP, e.setupFloors} {
		if err := f(ctx); err != nil {
			return e, err
		}
	}
	if o.binB != "" {
		var envB []string
		if o.envB != "" {
			envB = strings.Split(o.envB, ",")
		}
		g, err := e.startGate(ctx, gateOpts{name: "pgcertgate-b", bin: o.binB, env: envB})
		if err != nil {
			return e, fmt.Errorf("%s: %w", o.labelB, err)
		}
		e.targets = append(e.targets, &target{Name: o.labelB, Port: g.port, proc: g.proc})
	}
	if len(e.targets) == 0 {
		return e, errors.New("no target to measure")
	}
	e.step("start PgBouncer and pgcertgate", began)

	// Every target must let the client certificate in before anything
	// is timed.
	for _, tg := range e.targets {
		// \conninfo is the client's view: through a proxy, the server's
		// pg_stat_ssl describes the proxy's own (Unix socket) connection.
		out, err := e.psql(ctx, tg, "-At", "-c", "select current_user", "-c", `\conninfo`)
		if err != nil {
			return e, fmt.Errorf("%s: psql check: %w", tg.Name, err)
		}
		user, info, _ := strings.Cut(strings.TrimSpace(out), "\n")
		_, tlsInfo, ok := strings.Cut(info, "SSL connection ")
		if tg.Plain {
			if user != benchUser || ok {
				return e, fmt.Errorf("%s: psql check: want user %s without SSL, got %q", tg.Name, benchUser, out)
			}
			tg.TLS = "(no TLS)"
			continue
		}
		if user != benchUser || !ok {
			return e, fmt.Errorf("%s: psql check: want user %s over SSL, got %q", tg.Name, benchUser, out)
		}
		tg.TLS, _, _ = strings.Cut(tlsInfo, "\n")

	}
	return e, nil
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// writePKI makes one CA, one server certificate (localhost, 127.0.0.1) and
// one client certificate (CN=bench), shared by all three targets.
func (e *env) writePKI() error {
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "pgcertgate bench CA"})
	if err != nil {
		return err
	}
	srv, err := ca.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	cli, err := ca.NewClient(pkix.Name{CommonName: benchUser})
	if err != nil {
		return err
	}
	e.rootPEM, e.serverCrtPEM, e.serverKeyPEM = ca.CertPEM, srv.ChainPEM(), srv.KeyPEM
	e.caKeyPEM, e.clientSerial = ca.KeyPEM, cli.Cert.SerialNumber.Text(16)
	e.rootCrt, e.clientCrt, e.clientKey = e.path("root.crt"), e.path("client.crt"), e.path("client.key")
	if err := testpki.WriteFile(e.rootCrt, ca.CertPEM, 0o644); err != nil {
		return err
	}
	if err := testpki.WriteFile(e.path("server.crt"), e.serverCrtPEM, 0o644); err != nil {
		return err
	}
	if err := testpki.WriteFile(e.path("server.key"), e.serverKeyPEM, 0o600); err != nil {
		return err
	}
	return cli.WriteFiles(e.clientCrt, e.clientKey)
}

// hbaCert is the one pg_hba.conf line all three targets apply to TCP
// clients.
const hbaCert = "hostssl all all 127.0.0.1/32 cert\n"

// hbaTrust is the plaintext PgBouncer's auth_hba_file.
const hbaTrust = "host all all 127.0.0.1/32 trust\n"

func (e *env) startCluster(ctx context.Context) error {
	conf := map[string]string{
		"ssl":             "on",
		"ssl_cert_file":   "server.crt",
		"ssl_key_file":    "server.key",
		"ssl_ca_file":     "root.crt",
		"max_connections": strconv.Itoa(backendMaxConns),
		"shared_buffers":  sharedBuffers,
		"max_wal_size":    "4GB",
		// PostgreSQL's default; pgcluster turns it on for tests.
		"log_connections": "off",
	}
	// The Unix socket is for the bench's own setup and for pgcertgate's
	// and PgBouncer's server connections; TCP clients need a
	// certificate.
	hbaConf := "local all all trust\n" + hbaCert
	c, err := pgcluster.Start(ctx, pgcluster.Options{
		ListenAddresses: "127.0.0.1",
		HBA:             hbaConf,
		Conf:            conf,
		Files: map[string][]byte{
			"server.crt": e.serverCrtPEM,
			"server.key": e.serverKeyPEM,
			"root.crt":   e.rootPEM,
		},
		Timeout: 15 * time.Minute,
	})
	if err != nil {
		return err
	}
	e.cluster = c
	var confText strings.Builder
	for _, k := range sortedKeys(conf) {
		fmt.Fprintf(&confText, "%s = '%s'\n", k, conf[k])
	}
	confText.WriteString("# plus pgcluster's: fsync = off, synchronous_commit = off, full_page_writes = off, autovacuum = off\n")
	e.files = append(e.files,
		namedFile{"PostgreSQL postgresql.conf (additions)", confText.String()},
		namedFile{"PostgreSQL pg_hba.conf", hbaConf})
	rows, err := c.Query(ctx, "select version()")
	if err != nil {
		return err
	}
	e.pgVersion = rows[0][0]
	for _, q := range []string{
		"CREATE ROLE " + benchUser + " LOGIN",
		"CREATE DATABASE " + benchDB + " OWNER " + benchUser,
	} {
		if err := c.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// initData runs pgbench -i over a direct TLS connection and builds the
// bulk COPY table and file.
func (e *env) initData(ctx context.Context) error {
	direct := &target{Name: targetDirect, Port: e.cluster.Port()}
	cmd := e.clientCmd(ctx, direct, e.tools.pgbench, "-i", "-q", "-s", strconv.Itoa(pgbenchScale))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}

	cfg, err := e.cluster.ConnConfig(benchUser, benchDB)
	if err != nil {
		return err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// 969 bytes per COPY line: id, tab, 960 characters, newline.
	rows := (int64(e.o.copyMB)*1_000_000 + 968) / 969
	e.bulkRows = rows
	sql := fmt.Sprintf(`CREATE TABLE bulk (id int, payload text);
INSERT INTO bulk SELECT i, %s FROM generate_series(1, %d) i;
CREATE UNLOGGED TABLE bulk_in (LIKE bulk);`, bulkRowPayload, rows)
	for _, q := range []string{sql, "VACUUM ANALYZE bulk"} {
		if _, err := conn.Exec(ctx, q).ReadAll(); err != nil {
			return fmt.Errorf("bulk table: %w", err)
		}
	}
	e.bulkFile = e.path("bulk.copy")
	f, err := os.Create(e.bulkFile)
	if err != nil {
		return err
	}
	cw := &countingWriter{w: f}
	if _, err := conn.CopyTo(ctx, cw, "COPY bulk TO STDOUT"); err != nil {
		f.Close()
		return fmt.Errorf("writing the COPY file: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	e.bulkBytes = cw.n
	if e.bulkBytes < 500_000_000 {
		return fmt.Errorf("the COPY file is %d bytes: at least 500 MB is needed so that the COPY runs measure throughput, not setup (-copy-mb)", e.bulkBytes)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPort waits until 127.0.0.1:port accepts connections or p exits.
func waitPort(p *proc, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on port %d within %s\n%s", p.name, port, timeout, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startProc starts cmd with stdout and stderr in a log file.
func (e *env) startProc(name string, cmd *exec.Cmd) (*proc, error) {
	logPath := e.path(name + ".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// A killed bench must not leave its servers behind.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if e.o.verbose {
		logf("start %s: %s", name, strings.Join(cmd.Args, " "))
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	e.procs = append(e.procs, p)
	return p, nil
}

// gateOpts describes one pgcertgate process.
type gateOpts struct {
	name         string   // names its configuration and log files
	bin          string   // the binary; empty means -bin
	topExtra     string   // extra top-level lines (before [backend])
	backendExtra string   // extra lines in [backend]
	tables       string   // extra TOML tables after [backend] ([client_ca.NAME] …)
	hba          string   // pg_hba.conf content; empty means hbaCert
	env          []string // extra environment
	admin        bool     // serve the admin endpoint (/metrics) on a free port
	adminExtra   string   // extra lines in [admin]
}

// gateConf is what varies between the bench's pgcertgate configurations.
type gateConf struct {
	port         int
	backendDir   string // PostgreSQL's Unix socket directory
	backendPort  int
	hbaPath      string
	topExtra     string
	backendExtra string
	tables       string
	adminPort    int // 0: no [admin]
	adminExtra   string
}

// gateConfig is pgcertgate's configuration for the bench. Keys and values
// are the documented ones (README.md).
func (e *env) gateConfig(c gateConf) string {
	var b strings.Builder
	fmt.Fprintf(&b, `listen_addresses = "127.0.0.1"
port = %d
hba_file = %q
ssl_cert_file = %q
ssl_key_file = %q
ssl_ca_file = %q
max_connections = %d
max_startup_connections = %d
authentication_timeout = %q
`, c.port, c.hbaPath, e.path("server.crt"), e.path("server.key"), e.rootCrt, gateMaxConns, gateMaxStartups, gateAuthTimeout)
	if c.topExtra != "" {
		b.WriteString(strings.TrimRight(c.topExtra, "\n") + "\n")
	}
	fmt.Fprintf(&b, `
[backend]
dsn = "host=%s port=%d sslmode=disable"
`, c.backendDir, c.backendPort)
	if c.backendExtra != "" {
		b.WriteString(strings.TrimRight(c.backendExtra, "\n") + "\n")
	}
	if c.tables != "" {
		b.WriteString("\n" + strings.TrimRight(c.tables, "\n") + "\n")
	}
	if c.adminPort != 0 {
		fmt.Fprintf(&b, "\n[admin]\nlisten_address = \"127.0.0.1:%d\"\n", c.adminPort)
		if c.adminExtra != "" {
			b.WriteString(c.adminExtra + "\n")
		}
	}
	return b.String()
}

// gate is a running pgcertgate.
type gate struct {
	*proc
	port      int
	adminPort int // 0: no admin endpoint
	cfgPath   string
}

// writeGateConfig writes o.name.toml (and o.name_hba.conf when o has its
// own pg_hba.conf) for a pgcertgate listening on port.
func (e *env) writeGateConfig(o gateOpts, port, adminPort int) (string, string, error) {
	hbaPath := e.path("gate_hba.conf")
	hba := hbaCert
	if o.hba != "" {
		hbaPath, hba = e.path(o.name+"_hba.conf"), o.hba
	}
	if err := os.WriteFile(hbaPath, []byte(hba), 0o644); err != nil {
		return "", "", err
	}
	top := o.topExtra
	if e.baseTop != "" && (o.bin == "" || o.bin == e.o.bin) && !strings.Contains(top, "relay_engine") {
		top = strings.TrimRight(e.baseTop+"\n"+top, "\n")
	}
	conf := e.gateConfig(gateConf{port: port, backendDir: e.cluster.SocketDir(), backendPort: e.cluster.Port(), hbaPath: hbaPath, topExtra: top, backendExtra: o.backendExtra,
		tables: o.tables, adminPort: adminPort, adminExtra: o.adminExtra})
	cfgPath := e.path(o.name + ".toml")
	return cfgPath, conf, os.WriteFile(cfgPath, []byte(conf), 0o644)
}

// startGate writes a configuration named o.name.toml and starts
// `pgcertgate serve` with it.
func (e *env) startGate(ctx context.Context, o gateOpts) (*gate, error) {
	if o.bin == "" {
		o.bin = e.o.bin
	}
	g := &gate{}
	var err error
	if g.port, err = freePort(); err != nil {
		return nil, err
	}
	if o.admin {
		if g.adminPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	cfgPath, conf, err := e.writeGateConfig(o, g.port, g.adminPort)
	if err != nil {
		return nil, err
	}
	g.cfgPath = cfgPath
	if reportedConfigs[o.name] {
		e.files = append(e.files, namedFile{o.name + ".toml", conf})
		if o.hba != "" {
			e.files = append(e.files, namedFile{o.name + "_hba.conf", o.hba})
		}
	}
	cmd := exec.CommandContext(ctx, o.bin, "serve", "--config", cfgPath)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir}, o.env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	if g.proc, err = e.startProc(o.name, cmd); err != nil {
		return nil, err
	}
	if err := waitPort(g.proc, g.port, 30*time.Second); err != nil {
		return nil, err
	}
	return g, nil
}

// acceptsConfig reports whether `pgcertgate check` accepts the bench
// configuration o (on a placeholder port; o.admin adds an [admin]
// endpoint): settings newer than the binary are refused. The output of a
// refusal is returned for the report.
func (e *env) acceptsConfig(ctx context.Context, o gateOpts) (bool, string) {
	adminPort := 0
	if o.admin {
		adminPort = 1
	}
	probe, _, err := e.writeGateConfig(o, 6432, adminPort)
	if err != nil {
		return false, err.Error()
	}
	out, err := exec.CommandContext(ctx, e.o.bin, "check", "--config", probe).CombinedOutput()
	if err != nil && e.o.verbose {
		logf("pgcertgate check %s: %v\n%s", o.name, err, out)
	}
	return err == nil, strings.TrimSpace(string(out))
}

// setupReuse adds the pgcertgate+reuse target when the binary accepts the
// reuse setting (-reuse auto) or when asked to (-reuse on, or -targets
// naming it).
func (e *env) setupReuse(ctx context.Context) error {
	if !e.want(targetGateReuse) {
		return nil
	}
	if e.o.reuse == "off" {
		e.reuse = "not measured (-reuse off)"
		if e.required(targetGateReuse) {
			return fmt.Errorf("%s: -reuse off", targetGateReuse)
		}
		return nil
	}
	if ok, _ := e.acceptsConfig(ctx, gateOpts{name: "reuse-check", backendExtra: e.o.reuseLine}); !ok {
		e.reuse = fmt.Sprintf("not measured: this pgcertgate refuses `[backend]` %s (`pgcertgate check` fails)", inlineTOML(e.o.reuseLine))
		if e.o.reuse == "on" || e.required(targetGateReuse) {
			return errors.New(e.reuse)
		}
		logf("%s", e.reuse)
		return nil
	}
	_, err := e.addGate(ctx, targetGateReuse, gateOpts{backendExtra: e.o.reuseLine}, nil)
	return err
}

// startBouncer configures and starts PgBouncer as the postgres user
// (PgBouncer refuses to run as root), with files that user can read.
// plain leaves client TLS off and trusts 127.0.0.1 instead.
func (e *env) startBouncer(ctx context.Context, plain bool) (*proc, int, error) {
	name, hba := "pgbouncer", hbaCert
	if plain {
		name, hba = "pgbouncer-plaintext", hbaTrust
	}
	dir := e.path(name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, 0, err
	}
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
pool_mode = session
server_idle_timeout = %d
max_client_conn = %d
default_pool_size = %d
auth_type = hba
auth_hba_file = %s/pg_hba.conf
auth_file = %s/userlist.txt
`, e.cluster.SocketDir(), e.cluster.Port(), port, dir, dir, serverIdleTimeout, bouncerMaxClient, bouncerPoolSize, dir, dir)
	if !plain {
		ini += fmt.Sprintf(`client_tls_sslmode = verify-full
client_tls_ca_file = %s/root.crt
client_tls_cert_file = %s/server.crt
client_tls_key_file = %s/server.key
`, dir, dir, dir)
	}
	// auth_type = hba still looks the user up in auth_file; a cert line
	// needs no password.
	userlist := fmt.Sprintf("%q \"\"\n", benchUser)
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"pgbouncer.ini", []byte(ini), 0o600},
		{"pg_hba.conf", []byte(hba), 0o600},
		{"userlist.txt", []byte(userlist), 0o600},
		{"root.crt", e.rootPEM, 0o600},
		{"server.crt", e.serverCrtPEM, 0o600},
		{"server.key", e.serverKeyPEM, 0o600},
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, 0, fmt.Errorf("PgBouncer refuses to run as root and there is no postgres user: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, 0, err
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := testpki.WriteFile(p, f.data, f.mode); err != nil {
			return nil, 0, err
		}
		if uid >= 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, 0, err
			}
		}
	}
	e.files = append(e.files, namedFile{name + ".ini", ini}, namedFile{name + " auth_hba_file", hba})
	if !plain {
		e.files = append(e.files, namedFile{"PgBouncer auth_file", userlist})
	}
	if out, err := exec.CommandContext(ctx, e.tools.pgbouncer, "--version").Output(); err == nil {
		e.bouncerVersion, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	cmd := exec.CommandContext(ctx, e.tools.pgbouncer, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	p, err := e.startProc(name, cmd)
	if err != nil {
		return nil, 0, err
	}
	if err := waitPort(p, port, 30*time.Second); err != nil {
		return nil, 0, err
	}
	return p, port, nil
}

// clientEnv is the environment of every pgbench and psql: verify-ca with
// the client certificate (sslmode=disable for a plain target), and nothing
// from the bench's own environment.
func (e *env) clientEnv(tg *target) []string {
	base := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + e.dir,
		"LC_ALL=C",
	}
	if tg.Plain {
		return append(base, "PGSSLMODE=disable")
	}
	return append(base,
		"PGSSLMODE=verify-ca",
		"PGSSLROOTCERT="+e.rootCrt,
		"PGSSLCERT="+e.clientCrt,
		"PGSSLKEY="+e.clientKey,
	)
}

// clientCmd builds a pgbench or psql command against tg: -h/-p/-U and the
// database come last, the TLS settings from clientEnv.
func (e *env) clientCmd(ctx context.Context, tg *target, tool string, args ...string) *exec.Cmd {
	full := append(append([]string{}, args...), "-h", "127.0.0.1", "-p", strconv.Itoa(tg.Port), "-U", benchUser, benchDB)
	if filepath.Base(tool) == "psql" {
		full = append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1"}, full...)
	}
	cmd := exec.CommandContext(ctx, tool, full...)
	cmd.Env = e.clientEnv(tg)
	cmd.Dir = e.dir
	return cmd
}

// psql runs psql against tg and returns its output.
func (e *env) psql(ctx context.Context, tg *target, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := e.clientCmd(ctx, tg, e.tools.psql, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out.String())
	}
	return out.String(), nil
}

// superExec runs sql as the superuser in the bench database over the Unix
// socket (untimed housekeeping).
func (e *env) superExec(ctx context.Context, sql string) ([]*pgconn.Result, error) {
	cfg, err := e.cluster.ConnConfig("postgres", benchDB)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	return conn.Exec(ctx, sql).ReadAll()
}
