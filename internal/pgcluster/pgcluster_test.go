package pgcluster

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// start starts a cluster that is stopped when the test ends; the server
// log is printed if the test failed.
func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(testContext(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster started in %v (port %d, dir %s)", c.StartDuration(), c.Port(), c.Dir())
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := c.Log(); err == nil {
				t.Logf("server log:\n%s", log)
			}
		}
		begin := time.Now()
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		t.Logf("cluster stopped in %v", time.Since(begin))
	})
	return c
}

func queryOne(t *testing.T, c *Cluster, sql string) string {
	t.Helper()
	rows, err := c.Query(testContext(t), sql)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%s: got %q, want one value", sql, rows)
	}
	return rows[0][0]
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %v", c.StartDuration())
	if err := c.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	if got := queryOne(t, c, "select current_user"); got != "postgres" {
		t.Errorf("current_user = %q", got)
	}
	if got := queryOne(t, c, "show listen_addresses"); got != "" {
		t.Errorf("listen_addresses = %q, want socket only", got)
	}
	if c.Host() != c.SocketDir() || c.Addr() != "" {
		t.Errorf("Host() = %q, Addr() = %q for a socket-only cluster", c.Host(), c.Addr())
	}
	if _, err := os.Stat(filepath.Join(c.SocketDir(), ".s.PGSQL."+strconv.Itoa(c.Port()))); err != nil {
		t.Error(err)
	}

	// The very next connection must see the reloaded pg_hba.conf.
	cfg, err := c.ConnConfig("someone", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteHBA("local all postgres trust\nlocal all all reject\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = pgconn.ConnectConfig(ctx, cfg)
	if want := `pg_hba.conf rejects connection for host "[local]", user "someone", database "postgres", no encryption`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("connect after reload: %v, want %q", err, want)
	}

	log, err := c.Log()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"database system is ready to accept connections",
		"connection authorized: user=postgres database=postgres application_name=pgcluster",
		"received SIGHUP, reloading configuration files",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	dir := c.Dir()
	begin := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(begin))
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after Stop: %v", dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestSSL proves testpki and pgcluster fit together: a TCP cluster with a
// testpki server certificate, reached with sslmode=verify-full and a client
// certificate through a hostssl ... cert line.
func TestSSL(t *testing.T) {
	t.Parallel()
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "root"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := root.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	client, err := root.NewClient(pkix.Name{CommonName: "ssltestuser"})
	if err != nil {
		t.Fatal(err)
	}
	c := start(t, Options{
		ListenAddresses: "127.0.0.1",
		HBA:             "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
		Files: map[string][]byte{
			"server.crt": server.CertPEM,
			"server.key": server.KeyPEM,
			"root.crt":   root.CertPEM,
		},
		Conf: map[string]string{
			"ssl":           "on",
			"ssl_cert_file": "server.crt",
			"ssl_key_file":  "server.key",
			"ssl_ca_file":   "root.crt",
		},
	})
	ctx := testContext(t)
	if err := c.Exec(ctx, "create role ssltestuser login"); err != nil {
		t.Fatal(err)
	}
	if c.Host() != "127.0.0.1" || c.Addr() != "127.0.0.1:"+strconv.Itoa(c.Port()) {
		t.Errorf("Host() = %q, Addr() = %q", c.Host(), c.Addr())
	}

	dir := t.TempDir()
	for name, data := range map[string][]byte{"root.crt": root.CertPEM} {
		if err := testpki.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.WriteFiles(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")); err != nil {
		t.Fatal(err)
	}
	dsn := func(user string, cert bool) string {
		s := "host=127.0.0.1 port=" + strconv.Itoa(c.Port()) + " dbname=postgres user=" + user +
			" sslmode=verify-full sslrootcert=" + filepath.Join(dir, "root.crt")
		if cert {
			s += " sslcert=" + filepath.Join(dir, "client.crt") + " sslkey=" + filepath.Join(dir, "client.key")
		}
		return s
	}

	conn, err := pgconn.Connect(ctx, dsn("ssltestuser", true))
	if err != nil {
		t.Fatal(err)
	}
	res, err := conn.Exec(ctx, "select current_user, ssl, client_dn from pg_stat_ssl where pid = pg_backend_pid()").ReadAll()
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	row := res[0].Rows[0]
	if got := string(row[0]) + " " + string(row[1]) + " " + string(row[2]); got != "ssltestuser t /CN=ssltestuser" {
		t.Errorf("session: %q", got)
	}

	// The same certificate for another user: the server's cert-method error.
	_, err = pgconn.Connect(ctx, dsn("postgres", true))
	if err == nil || !strings.Contains(err.Error(), `certificate authentication failed for user "postgres"`) {
		t.Errorf("connect as postgres with ssltestuser's certificate: %v", err)
	}
	// No certificate at all.
	_, err = pgconn.Connect(ctx, dsn("ssltestuser", false))
	if err == nil || !strings.Contains(err.Error(), "connection requires a valid client certificate") {
		t.Errorf("connect without a certificate: %v", err)
	}

	log, err := c.Log()
	if err != nil {
		t.Fatal(err)
	}
	if want := `connection authenticated: identity="CN=ssltestuser" method=cert (`; !strings.Contains(log, want) {
		t.Errorf("log lacks %q:\n%s", want, log)
	}
}

// TestEnvironmentDoesNotLeak checks that PG* variables meant for the code
// under test do not reach the cluster's own sessions.
func TestEnvironmentDoesNotLeak(t *testing.T) {
	c := start(t, Options{})
	t.Setenv("PGOPTIONS", "-c search_path=leaked")
	t.Setenv("PGAPPNAME", "leaked")
	t.Setenv("PGUSER", "leaked")
	t.Setenv("PGDATABASE", "leaked")
	t.Setenv("PGSSLMODE", "require") // would fail over a Unix socket
	t.Setenv("PGHOST", "/nonexistent")
	t.Setenv("PGTARGETSESSIONATTRS", "standby") // would reject a primary
	rows, err := c.Query(testContext(t), "select current_setting('search_path'), current_setting('application_name'), current_user, current_database()")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows[0], "|"); got != `"$user", public|pgcluster|postgres|postgres` {
		t.Errorf("session settings %q", got)
	}
	// The server commands ignore the environment too.
	if err := c.Reload(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

func TestReloadErrors(t *testing.T) {
	t.Parallel()
	c := start(t, Options{HBA: "local all all trust\nhost all all 127.0.0.1/32 reject\n"})
	ctx := testContext(t)
	if err := c.WriteHBA("local all all trust\nbogus all all trust\n"); err != nil {
		t.Fatal(err)
	}
	err := c.Reload(ctx)
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ce.Errors) != 1 || ce.Errors[0] != `pg_hba.conf:2: invalid connection type "bogus"` {
		t.Fatalf("Reload with a bad pg_hba.conf: %v", err)
	}
	log, _ := c.Log()
	if !strings.Contains(log, "pg_hba.conf was not reloaded") {
		t.Errorf("log lacks the not-reloaded line:\n%s", log)
	}

	conf, err := os.ReadFile(filepath.Join(c.DataDir(), "postgresql.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile("postgresql.conf", append(conf, "work_mem = = 1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	err = c.Reload(ctx)
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "postgresql.conf:") || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("Reload with an unparsable postgresql.conf: %v", err)
	}

	// A bad value is still a reload: Reload waits for it and reports it.
	if err := c.WriteFile("postgresql.conf", append(conf, "work_mem = 'bogus'\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	before := queryOne(t, c, "select pg_conf_load_time()")
	err = c.Reload(ctx)
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "setting could not be applied") {
		t.Fatalf("Reload with a bad value: %v", err)
	}
	if after := queryOne(t, c, "select pg_conf_load_time()"); after == before {
		t.Errorf("pg_conf_load_time unchanged (%s) after Reload returned", after)
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	_, err := Start(testContext(t), Options{HBA: "nonsense all all trust\n"})
	if err == nil {
		t.Fatal("started with a bad pg_hba.conf")
	}
	for _, want := range []string{"pg_ctl", `invalid connection type "nonsense"`, "could not load pg_hba.conf"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestPortInUse checks that an explicit port that is taken fails with the
// server's own reason rather than being silently replaced.
func TestPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = Start(testContext(t), Options{ListenAddresses: "127.0.0.1", Port: port})
	if err == nil || !strings.Contains(err.Error(), "could not bind IPv4 address") {
		t.Fatalf("Start on a taken port: %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	for _, opts := range []Options{
		{Files: map[string][]byte{"../escape": nil}},
		{Files: map[string][]byte{"/abs": nil}},
		{Conf: map[string]string{"bad name": "x"}},
		{Port: 70000},
		{BinDir: "/nonexistent"},
	} {
		if c, err := Start(ctx, opts); err == nil {
			c.Stop()
			t.Errorf("Start(%+v) succeeded", opts)
		}
	}
}

// TestLongDir checks that a Dir too long for a socket path still works: the
// socket goes to a separate short directory.
func TestLongDir(t *testing.T) {
	t.Parallel()
	// Not t.TempDir(): it is mode 0700, so when the test runs as root the
	// postgres user could not reach anything below it.
	parent, err := os.MkdirTemp(tempParent(), "pgclong")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, strings.Repeat("d", 100))
	c := start(t, Options{Dir: dir, Superuser: "admin", NoTemplate: true, Files: map[string][]byte{"sub/dir/f": []byte("x")}})
	if c.SocketDir() == dir || len(c.SocketDir()) > 80 {
		t.Errorf("socket dir %q", c.SocketDir())
	}
	if got := queryOne(t, c, "select current_user"); got != "admin" {
		t.Errorf("superuser %q", got)
	}
	if got := queryOne(t, c, "select pg_read_file('sub/dir/f')"); got != "x" {
		t.Errorf("file content %q", got)
	}
	socketDir := c.SocketDir()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(socketDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket dir left behind: %v", err)
	}
	// A caller's Dir is kept.
	if _, err := os.Stat(filepath.Join(dir, "postgres.log")); err != nil {
		t.Error(err)
	}
}

func TestConfQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":      "''",
		"on":    "'on'",
		"it's":  "'it''s'",
		`a\b`:   `'a\\b'`,
		"a,b c": "'a,b c'",
	} {
		if got := confQuote(in); got != want {
			t.Errorf("confQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestConfValues(t *testing.T) {
	t.Parallel()
	c := start(t, Options{Conf: map[string]string{
		"cluster_name":    `it's a\b`,
		"max_connections": "20",
	}})
	if got := queryOne(t, c, "show cluster_name"); got != `it's a\b` {
		t.Errorf("cluster_name = %q", got)
	}
	if got := queryOne(t, c, "show max_connections"); got != "20" {
		t.Errorf("max_connections = %q", got)
	}
}

// TestUnsearchableDir checks the early, clear error for a Dir the postgres
// user cannot reach, such as t.TempDir() when running as root.
func TestUnsearchableDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs the server as another user")
	}
	t.Parallel()
	_, err := Start(testContext(t), Options{Dir: filepath.Join(t.TempDir(), "c")})
	if err == nil || !strings.Contains(err.Error(), "is not searchable by the postgres user") {
		t.Fatalf("Start in t.TempDir(): %v", err)
	}
}

// BenchmarkStartStop measures a cluster's whole life, with and without the
// template:
//
//	go test -run '^$' -bench StartStop -benchtime 10x ./internal/pgcluster
func BenchmarkStartStop(b *testing.B) {
	for _, noTemplate := range []bool{false, true} {
		name := "template"
		if noTemplate {
			name = "initdb"
		}
		b.Run(name, func(b *testing.B) {
			var startTotal, stopTotal time.Duration
			for b.Loop() {
				c, err := Start(b.Context(), Options{NoTemplate: noTemplate})
				if err != nil {
					b.Fatal(err)
				}
				startTotal += c.StartDuration()
				begin := time.Now()
				if err := c.Stop(); err != nil {
					b.Fatal(err)
				}
				stopTotal += time.Since(begin)
			}
			b.ReportMetric(float64(startTotal.Milliseconds())/float64(b.N), "start-ms/op")
			b.ReportMetric(float64(stopTotal.Milliseconds())/float64(b.N), "stop-ms/op")
		})
	}
}
