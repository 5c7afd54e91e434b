// Package integration runs pgcertgate end to end against a real PostgreSQL
// and real clients (pgx and psql). Nothing stands in for PostgreSQL.
package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// pki is the certificate world every integration test shares: a root, an
// intermediate, a second (untrusted) root, and client certificates of every
// kind the tests need. ECDSA keys make it cheap to build.
type pki struct {
	root, inter, other *testpki.CA
	server             *testpki.Leaf
	clients            map[string]*testpki.Leaf
	revoked            []*x509.Certificate
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{clients: map[string]*testpki.Leaf{}}
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatal(e)
		}
	}
	p.root, err = testpki.NewRootCA(pkix.Name{CommonName: "pgcertgate test root", Organization: []string{"PGDG"}})
	must(err)
	p.inter, err = p.root.NewIntermediate(pkix.Name{CommonName: "pgcertgate test intermediate", Organization: []string{"PGDG"}})
	must(err)
	p.other, err = testpki.NewRootCA(pkix.Name{CommonName: "untrusted root"})
	must(err)
	p.server, err = p.root.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	must(err)
	client := func(name string, ca *testpki.CA, subject pkix.Name, opts ...testpki.Option) {
		l, err := ca.NewClient(subject, opts...)
		must(err)
		p.clients[name] = l
	}
	client("alice", p.root, pkix.Name{CommonName: "alice"})
	client("bob", p.root, pkix.Name{CommonName: "bob"})
	client("alice-dn", p.root, pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"Testing", "Engineering"}, Organization: []string{"PGDG"}})
	client("carol-example", p.root, pkix.Name{CommonName: "carol@example.com"})
	client("inter-alice", p.inter, pkix.Name{CommonName: "alice"})
	client("expired", p.root, pkix.Name{CommonName: "alice"}, testpki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	client("notyet", p.root, pkix.Name{CommonName: "alice"}, testpki.WithValidity(time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour)))
	client("revoked", p.root, pkix.Name{CommonName: "alice"})
	client("wrongca", p.other, pkix.Name{CommonName: "alice"})
	client("serverauth", p.root, pkix.Name{CommonName: "alice"}, testpki.WithEKU(x509.ExtKeyUsageServerAuth))
	client("dave", p.root, pkix.Name{CommonName: "dave"})
	p.revoked = []*x509.Certificate{p.clients["revoked"].Cert}
	return p
}

// world is one PostgreSQL cluster plus pgcertgate in front of it, sharing
// pg_hba.conf, pg_ident.conf, CA, CRL and server certificate. PostgreSQL
// listens on TCP with ssl=on (for direct, differential connections) and on
// its Unix socket, which the proxy uses and which trusts everyone.
type world struct {
	t       testing.TB
	dir     string
	pki     *pki
	cluster *pgcluster.Cluster
	proxy   *pgwire.Server
	addr    string // proxy host:port
	logBuf  *syncBuffer
	cfgPath string
	// filesMu serialises clientFiles: concurrent sessions of one test
	// (TestRelayStress) ask for the same files, and one that found the
	// certificate written must never go on to read a key not yet written.
	filesMu sync.Mutex
}

type worldOptions struct {
	hba, ident string
	// files are extra files placed beside pg_hba.conf, for @file and
	// include tests (and copied into PostgreSQL's data directory).
	files map[string]string
	// extraTOML is appended to the proxy configuration.
	extraTOML string
	// noCRL leaves ssl_crl_file unset on both sides.
	noCRL bool
	// conf is extra postgresql.conf settings for the cluster (e.g.
	// wal_level=logical), applied after the defaults.
	conf map[string]string
	// connectTimeout is the proxy's backend connect_timeout (default 10s).
	connectTimeout string
	// backendTOML is appended to the proxy configuration's [backend]
	// table (e.g. "reuse = true").
	backendTOML string
	// crlTOML replaces the proxy's ssl_crl_file line when set (e.g.
	// `ssl_crl_dir = "crl"`); pair it with conf for PostgreSQL.
	crlTOML string
}

// localTrust is prepended to PostgreSQL's pg_hba.conf only: the proxy
// reaches the backend over the Unix socket. pgcertgate never matches
// local lines, so both sides see the same rules for TCP clients.
const localTrust = "local all all trust\n"

func newWorld(t testing.TB, p *pki, o worldOptions) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &world{t: t, dir: t.TempDir(), pki: p, logBuf: &syncBuffer{}}
	crlPEM, err := p.root.CRL(p.revoked, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	interCRL, err := p.inter.CRL(nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"server.crt": p.server.CertPEM,
		"server.key": p.server.KeyPEM,
		// The root alone; the intermediate is held here too so that a
		// client sending only its leaf still chains (as in PostgreSQL's
		// own tests with root+intermediate in ssl_ca_file).
		"root.crt": append(append([]byte{}, p.root.CertPEM...), p.inter.CertPEM...),
		"root.crl": append(crlPEM, interCRL...),
	}
	for name, content := range o.files {
		files[name] = []byte(content)
	}
	conf := map[string]string{
		"ssl":             "on",
		"ssl_cert_file":   "server.crt",
		"ssl_key_file":    "server.key",
		"ssl_ca_file":     "root.crt",
		"max_connections": "60",
	}
	if !o.noCRL {
		conf["ssl_crl_file"] = "root.crl"
	}
	for k, v := range o.conf {
		conf[k] = v
	}
	w.cluster, err = pgcluster.Start(ctx, pgcluster.Options{
		ListenAddresses: "127.0.0.1",
		HBA:             localTrust + o.hba,
		Ident:           o.ident,
		Conf:            conf,
		Files:           files,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cluster.Stop() })

	// The proxy reads the same files from its own directory.
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		path := filepath.Join(w.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, content, mode); err != nil {
			t.Fatal(err)
		}
	}
	w.writeFile("pg_hba.conf", o.hba)
	w.writeFile("pg_ident.conf", o.ident)
	crl := `ssl_crl_file = "root.crl"`
	if o.noCRL {
		crl = ""
	}
	if o.crlTOML != "" {
		crl = o.crlTOML
	}
	connectTimeout := o.connectTimeout
	if connectTimeout == "" {
		connectTimeout = "10s"
	}
	w.cfgPath = filepath.Join(w.dir, "pgcertgate.toml")
	w.writeFile("pgcertgate.toml", fmt.Sprintf(`
listen_addresses = "127.0.0.1"
port = 6432
hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
%s
%s
%s
[backend]
dsn = "host=%s port=%d sslmode=disable"
connect_timeout = %q
catalog_user = "postgres"
%s
`, crl, defaultTOML(o.extraTOML), o.extraTOML, w.cluster.SocketDir(), w.cluster.Port(), connectTimeout, o.backendTOML))
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatalf("loading proxy configuration: %v", err)
	}
	w.proxy = pgwire.New(pgwire.Options{Runtime: rt, Logger: slog.New(slog.NewTextHandler(w.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- w.proxy.Serve(ln) }()
	t.Cleanup(func() {
		if err := w.proxy.Close(); err != nil {
			t.Errorf("closing proxy: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", w.logBuf.String())
		}
	})
	return w
}

// defaultTOML is the proxy settings a world uses unless extraTOML sets
// them itself (TOML refuses a key defined twice).
func defaultTOML(extra string) string {
	var out []string
	for _, kv := range [][2]string{{"authentication_timeout", `"20s"`}, {"max_connections", "50"}} {
		if !strings.Contains(extra, kv[0]+" ") && !strings.Contains(extra, kv[0]+"=") {
			out = append(out, kv[0]+" = "+kv[1])
		}
	}
	return strings.Join(out, "\n")
}

func (w *world) writeFile(name, content string) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, name), []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// clientFiles writes a client's certificate chain and key for libpq.
func (w *world) clientFiles(name string) (cert, key string) {
	w.t.Helper()
	l := w.pki.clients[name]
	cert = filepath.Join(w.dir, "client-"+name+".crt")
	key = filepath.Join(w.dir, "client-"+name+".key")
	w.filesMu.Lock()
	defer w.filesMu.Unlock()
	if _, err := os.Stat(cert); err == nil {
		return cert, key
	}
	// The leaf plus any intermediate, as libpq sends the whole file.
	if err := os.WriteFile(cert, l.ChainPEM(), 0o644); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(key, l.KeyPEM, 0o600); err != nil {
		w.t.Fatal(err)
	}
	return cert, key
}

// target is where a test client connects: PostgreSQL directly or the proxy.
type target string

const (
	direct target = "postgres"
	proxy  target = "pgcertgate"
)

func (w *world) hostPort(tg target) (string, string) {
	if tg == direct {
		return "127.0.0.1", fmt.Sprint(w.cluster.Port())
	}
	h, p, _ := net.SplitHostPort(w.addr)
	return h, p
}

// conn describes one client connection attempt.
type conn struct {
	user, database string
	cert           string // client name in pki.clients; "" for none
	sslmode        string // default verify-full
	extra          string // more conninfo
}

func (w *world) conninfo(tg target, c conn) string {
	host, port := w.hostPort(tg)
	mode := c.sslmode
	if mode == "" {
		mode = "verify-full"
	}
	db := c.database
	if db == "" {
		db = "postgres"
	}
	s := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=%s sslrootcert=%s connect_timeout=20",
		host, port, quote(c.user), quote(db), mode, filepath.Join(w.dir, "root.crt"))
	if c.cert != "" {
		cert, key := w.clientFiles(c.cert)
		s += fmt.Sprintf(" sslcert=%s sslkey=%s", cert, key)
	}
	if c.extra != "" {
		s += " " + c.extra
	}
	return s
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// connect opens a pgconn connection; the caller closes it.
func (w *world) connect(ctx context.Context, tg target, c conn) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(w.conninfo(tg, c))
	if err != nil {
		w.t.Fatal(err)
	}
	return pgconn.ConnectConfig(ctx, cfg)
}

// outcome is what a client sees of a connection attempt, in a form that
// can be compared between PostgreSQL and pgcertgate.
type outcome struct {
	ok       bool
	user     string // current_user when ok
	severity string
	code     string
	message  string
	tlsError bool // the TLS handshake (or the first read after it) failed
	raw      string
}

func (o outcome) String() string {
	switch {
	case o.ok:
		return "ok as " + o.user
	case o.tlsError:
		return "TLS failure"
	case o.code != "":
		return fmt.Sprintf("%s %s %s", o.severity, o.code, o.message)
	}
	return "error: " + o.raw
}

// attempt connects, and on success asks who it is.
func (w *world) attempt(tg target, c conn) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := w.connect(ctx, tg, c)
	if err != nil {
		return classify(err)
	}
	defer pc.Close(ctx)
	res := pc.ExecParams(ctx, "select current_user", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return classify(res.Err)
	}
	return outcome{ok: true, user: string(res.Rows[0][0])}
}

// differ makes the same attempt against PostgreSQL and pgcertgate and
// requires PostgreSQL to give want and pgcertgate to give the same.
func (w *world) differ(t *testing.T, c conn, want string) {
	t.Helper()
	pg := w.attempt(direct, c)
	gate := w.attempt(proxy, c)
	if pg.String() != want {
		t.Errorf("PostgreSQL: got %q, want %q (raw: %s)", pg, want, pg.raw)
	}
	if gate.String() != pg.String() {
		t.Errorf("pgcertgate differs from PostgreSQL:\n  postgres:   %s\n  pgcertgate: %s (raw: %s)", pg, gate, gate.raw)
	}
}

func classify(err error) outcome {
	o := outcome{raw: err.Error()}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		o.severity, o.code, o.message = pgErr.Severity, pgErr.Code, pgErr.Message
		return o
	}
	var alert tls.AlertError
	if errors.As(err, &alert) || strings.Contains(o.raw, "tls:") || strings.Contains(o.raw, "remote error") ||
		strings.Contains(o.raw, "EOF") || strings.Contains(o.raw, "connection reset") {
		o.tlsError = true
	}
	return o
}

// psql runs psql with a conninfo string and returns its combined output.
func psql(t testing.TB, conninfo string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", append([]string{"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo}, args...)...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cleanEnv is the environment without PG* variables, so a developer's
// PGUSER or PGSSLMODE cannot change what a test means.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// reset drops what the buffer holds (the leak test measures the heap
// without the test's own copy of the log).
func (s *syncBuffer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// setup runs each statement on PostgreSQL directly, as the superuser.
func (w *world) setup(t testing.TB, queries ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range queries {
		if err := w.cluster.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// superuserRows runs a query on PostgreSQL directly, as the superuser over
// the Unix socket, and returns its rows.
func (w *world) superuserRows(ctx context.Context, query string) ([][][]byte, error) {
	return w.superuserRowsIn(ctx, "", query)
}

// superuserRowsIn is superuserRows in database db ("" for the default).
func (w *world) superuserRowsIn(ctx context.Context, db, query string) ([][][]byte, error) {
	dsn := w.cluster.SuperuserDSN()
	if db != "" {
		dsn += " dbname=" + db
	}
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pc.Close(ctx)
	res := pc.ExecParams(ctx, query, nil, nil, nil, nil).Read()
	return res.Rows, res.Err
}

// sendCancel sends a raw CancelRequest to addr.
func sendCancel(ctx context.Context, addr string, pid uint32, key []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := binary.BigEndian.AppendUint32(nil, uint32(12+len(key)))
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, key...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	// The server closes without a reply.
	_, err = c.Read(make([]byte, 1))
	if err == io.EOF {
		return nil
	}
	return err
}

// childConfig writes the world's configuration with a port of its own,
// for a pgcertgate process the test starts (the in-process proxy keeps
// w.addr), and returns its path and port.
func (w *world) childConfig(t *testing.T) (path string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(w.dir, "child.toml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(cfg), "port = 6432", fmt.Sprintf("port = %d", port), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, port
}
