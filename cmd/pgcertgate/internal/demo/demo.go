// Package demo runs pgcertgate end to end on one machine: a throwaway CA
// with server and client certificates, a temporary PostgreSQL that trusts
// only its Unix socket, and the proxy in front of it.
package demo

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// User is the database role the demo's client certificate logs in as.
const User = "alice"

// Options configure a demo run.
type Options struct {
	// Dir holds everything the demo writes. Empty means a new temporary
	// directory, removed when the demo ends.
	Dir string
	// Port is the proxy's port; 0 picks a free one.
	Port int
	// Out receives the instructions (the psql line); Log the proxy's log.
	Out, Log io.Writer
	// Ready, if set, is called with the psql connection string once the
	// proxy accepts connections (tests use it).
	Ready func(conninfo string)
}

// Run starts everything, prints how to connect, and serves until ctx ends,
// then stops the proxy and PostgreSQL and removes what it created.
func Run(ctx context.Context, o Options) (err error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	dir := o.Dir
	if dir == "" {
		// Short: PostgreSQL's socket path lives below it (107 bytes max).
		if dir, err = os.MkdirTemp("", "pgcg"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)

	files, err := writePKI(dir)
	if err != nil {
		return fmt.Errorf("making certificates: %w", err)
	}

	fmt.Fprintln(o.Out, "starting a temporary PostgreSQL (trusts only its Unix socket)…")
	// pgcluster picks its own directory (on tmpfs where it can, and
	// reachable by the postgres user when we run as root) and removes it
	// on Stop.
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{HBA: "local all all trust\n"})
	if err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	defer cluster.Stop()
	for _, q := range []string{"CREATE ROLE " + User + " LOGIN", "CREATE DATABASE demo OWNER " + User} {
		if err := cluster.Exec(ctx, q); err != nil {
			return err
		}
	}

	port := o.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(dir, "pgcertgate.toml")
	if err := writeConfig(dir, cfgPath, port, cluster); err != nil {
		return err
	}
	rt, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(o.Log, nil))
	srv := pgwire.New(pgwire.Options{Runtime: rt, Logger: log})
	lns, err := srv.Listen(ctx)
	if err != nil {
		return err
	}
	for _, ln := range lns {
		go srv.Serve(ln)
	}
	defer srv.Close()

	conninfo := fmt.Sprintf("host=localhost port=%d dbname=demo user=%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s",
		port, User, files.rootCert, files.clientCert, files.clientKey)
	fmt.Fprintf(o.Out, `
pgcertgate is listening on 127.0.0.1:%d in front of PostgreSQL at %s.
Files (config, pg_hba.conf, pg_ident.conf, certificates) are in %s.

Connect with the client certificate (CN=%s):

  psql "%s"

then try:  select current_user;

Press Ctrl-C to stop; everything is cleaned up.
`, port, cluster.SocketDir(), dir, User, conninfo)
	if o.Ready != nil {
		o.Ready(conninfo)
	}
	<-ctx.Done()
	fmt.Fprintln(o.Out, "\nstopping…")
	return nil
}

type pkiFiles struct{ rootCert, clientCert, clientKey string }

func writePKI(dir string) (pkiFiles, error) {
	f := pkiFiles{
		rootCert:   filepath.Join(dir, "root.crt"),
		clientCert: filepath.Join(dir, User+".crt"),
		clientKey:  filepath.Join(dir, User+".key"),
	}
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "pgcertgate demo CA"})
	if err != nil {
		return f, err
	}
	srv, err := ca.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	if err != nil {
		return f, err
	}
	client, err := ca.NewClient(pkix.Name{CommonName: User, Organization: []string{"pgcertgate demo"}})
	if err != nil {
		return f, err
	}
	if err := testpki.WriteFile(f.rootCert, ca.CertPEM, 0o644); err != nil {
		return f, err
	}
	if err := srv.WriteFiles(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")); err != nil {
		return f, err
	}
	return f, client.WriteFiles(f.clientCert, f.clientKey)
}

func writeConfig(dir, path string, port int, cluster *pgcluster.Cluster) error {
	hbaConf := `# pgcertgate demo: certificate logins only, over TLS, from this machine.
# TYPE   DATABASE  USER  ADDRESS       METHOD
hostssl  all       all   127.0.0.1/32  cert map=demo
hostssl  all       all   ::1/128       cert map=demo
`
	identConf := `# MAPNAME  SYSTEM-USERNAME  PG-USERNAME
demo       alice            alice
# Any certificate CN ending in @example.com logs in as the name before the @.
demo       /^(.*)@example\.com$  \1
`
	cfg := fmt.Sprintf(`# pgcertgate demo configuration (generated).
listen_addresses = "127.0.0.1"
port = %d
hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
authentication_timeout = "60s"
max_connections = 100

[backend]
dsn = "host=%s port=%d sslmode=disable"
connect_timeout = "10s"
`, port, cluster.SocketDir(), cluster.Port())
	for name, content := range map[string]string{"pg_hba.conf": hbaConf, "pg_ident.conf": identConf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(path, []byte(strings.TrimLeft(cfg, "\n")), 0o644)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
