package integration

import (
	"context"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// unixHBA is the pg_hba.conf PostgreSQL and pgcertgate share. The test
// process (root in CI) is the peer of its own connections; psql run as the
// postgres OS user and as a uid with no passwd entry stands for the other
// peers. The host line is the proxy's way to the backend (and the test's
// way to set the cluster up); it never matches a socket connection.
const unixHBA = `local   all        postgres    peer map=admin
local   all        root        peer
local   all        mapped      peer map=m
local   all        roo         peer map=m
local   all        wrong       peer
local   all        mapfail     peer map=m
local   all        rejected    reject
local   all        trusted     trust
local   db1,db2    listed      trust
local   all        unk         peer
host    all        all         127.0.0.1/32  trust
`

// unixIdent: root and postgres may be the superuser; root may be mapped,
// and, through the regex, "roo" (\1 of ^(r.*)t$).
const unixIdent = `admin   root         postgres
admin   postgres     postgres
m       root         mapped
m       /^(r.*)t$    \1
`

// unixWorld is PostgreSQL and pgcertgate, both listening on Unix-domain
// sockets only, with the same pg_hba.conf and pg_ident.conf. The proxy
// reaches the backend over loopback TCP, so that the backend's own local
// lines are the ones under test.
type unixWorld struct {
	t       *testing.T
	cluster *pgcluster.Cluster
	// dir holds the proxy's configuration and its socket; mode 0755, so
	// that other OS users reach the socket.
	dir     string
	port    int
	cfgPath string
	proxy   *pgwire.Server
	logBuf  *syncBuffer
}

func newUnixWorld(t *testing.T, extraTOML string) *unixWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &unixWorld{t: t, port: 6432, logBuf: &syncBuffer{}}
	var err error
	w.cluster, err = pgcluster.Start(ctx, pgcluster.Options{ListenAddresses: "127.0.0.1", HBA: unixHBA, Ident: unixIdent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cluster.Stop() })
	// Other OS users connect to PostgreSQL's socket too.
	if err := os.Chmod(w.cluster.SocketDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"create role root login", "create role mapped login", "create role roo login", "create role wrong login",
		"create role mapfail login", "create role rejected login", "create role trusted login", "create role listed login",
		"create role unk login", "create database db1",
	} {
		if err := w.cluster.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	w.dir = unixTempDir(t, "pgcgu")
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "unix test root"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := root.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"server.crt": server.CertPEM, "server.key": server.KeyPEM, "pg_hba.conf": []byte(unixHBA), "pg_ident.conf": []byte(unixIdent)} {
		if err := os.WriteFile(filepath.Join(w.dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w.cfgPath = filepath.Join(w.dir, "pgcertgate.toml")
	w.writeConfig(w.dir, extraTOML)
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w.proxy = pgwire.New(pgwire.Options{Runtime: rt, Logger: slog.New(slog.NewTextHandler(w.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	lns, err := w.proxy.ListenUnix()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { served <- w.proxy.Serve(ln) }()
	}
	t.Cleanup(func() {
		if err := w.proxy.Close(); err != nil {
			t.Errorf("closing proxy: %v", err)
		}
		for range lns {
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", w.logBuf.String())
		}
	})
	return w
}

// writeConfig writes the proxy's configuration, listening in socketDirs
// only.
func (w *unixWorld) writeConfig(socketDirs, extraTOML string) {
	w.t.Helper()
	cfg := fmt.Sprintf(`listen_addresses = ""
unix_socket_directories = %q
port = %d
hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
authentication_timeout = "20s"
%s
[backend]
dsn = "host=127.0.0.1 port=%d sslmode=disable"
reuse = true
`, socketDirs, w.port, extraTOML, w.cluster.Port())
	if err := os.WriteFile(w.cfgPath, []byte(cfg), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// unixTempDir makes a directory other OS users can enter, removed at the
// end of the test. t.TempDir is 0700 under a 0700 parent.
func unixTempDir(t *testing.T, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// socketOf is where a test client connects: PostgreSQL's socket or the
// proxy's.
func (w *unixWorld) socketOf(tg target) (dir string, port int) {
	if tg == direct {
		return w.cluster.SocketDir(), w.cluster.Port()
	}
	return w.dir, w.port
}

// connect opens a session from the test process, over tg's socket.
func (w *unixWorld) connect(ctx context.Context, tg target, user, database string) (*pgconn.PgConn, error) {
	dir, port := w.socketOf(tg)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=20", dir, port, quote(user), quote(database)))
	if err != nil {
		w.t.Fatal(err)
	}
	return pgconn.ConnectConfig(ctx, cfg)
}

// attempt connects from the test process and asks who it is.
func (w *unixWorld) attempt(tg target, user, database string) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := w.connect(ctx, tg, user, database)
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

// psqlAs runs psql as another OS user against tg's socket: as a named
// user with runuser, or as a bare uid with setpriv. It returns what the
// user sees: the query's output, or the server's message after libpq's
// "connection to server on socket … failed: ", which names the socket.
// Empty user and database leave psql's defaults (the OS user's name).
func (w *unixWorld) psqlAs(osUser string, tg target, user, database string) string {
	w.t.Helper()
	dir, port := w.socketOf(tg)
	args := []string{"psql", "-X", "-A", "-t", "-h", dir, "-p", strconv.Itoa(port), "-c", "select current_user"}
	if user != "" {
		args = append(args, "-U", user)
	}
	if database != "" {
		args = append(args, "-d", database)
	}
	var cmd []string
	if uid, err := strconv.Atoi(osUser); err == nil {
		cmd = append([]string{"setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(uid), "--clear-groups"}, args...)
	} else {
		cmd = append([]string{"runuser", "-u", osUser, "--"}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	// A directory every user may enter: psql as another user cannot
	// stat the test's own working directory otherwise.
	c.Dir = "/"
	c.Env = append(cleanEnv(), "HOME=/")
	out, _ := c.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if _, after, ok := strings.Cut(s, " failed: "); ok {
		return after
	}
	return s
}

// TestUnixDifferential connects to PostgreSQL's socket and to pgcertgate's,
// with the same pg_hba.conf and pg_ident.conf, and requires the same
// outcome, SQLSTATE and message case by case: peer as the test's own OS
// user, directly and through maps (one a regex with \1), the wrong user,
// an OS user the system does not know, reject, trust and a database list.
func TestUnixDifferential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the cases name the root OS user and switch users; CI runs them as root")
	}
	w := newUnixWorld(t, "")
	for _, tc := range []struct {
		name, user, db, want string
	}{
		{"peer as the OS user", "root", "postgres", "ok as root"},
		{"peer through a map", "mapped", "postgres", "ok as mapped"},
		{"peer through a regex map with \\1", "roo", "postgres", "ok as roo"},
		{"peer as another role", "wrong", "postgres", `FATAL 28000 Peer authentication failed for user "wrong"`},
		{"peer, map without a line for it", "mapfail", "postgres", `FATAL 28000 Peer authentication failed for user "mapfail"`},
		{"reject", "rejected", "postgres", `FATAL 28000 pg_hba.conf rejects connection for host "[local]", user "rejected", database "postgres", no encryption`},
		{"trust", "trusted", "postgres", "ok as trusted"},
		{"trust, the backend refuses the database", "trusted", "nosuchdb", `FATAL 3D000 database "nosuchdb" does not exist`},
		{"database list", "listed", "db1", "ok as listed"},
		{"database list, another database", "listed", "postgres", `FATAL 28000 no pg_hba.conf entry for host "[local]", user "listed", database "postgres", no encryption`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := w.attempt(direct, tc.user, tc.db)
			gate := w.attempt(proxy, tc.user, tc.db)
			if pg.String() != tc.want {
				t.Errorf("PostgreSQL: got %q, want %q (raw: %s)", pg, tc.want, pg.raw)
			}
			if gate.String() != pg.String() {
				t.Errorf("pgcertgate differs from PostgreSQL:\n  postgres:   %s\n  pgcertgate: %s (raw: %s)", pg, gate, gate.raw)
			}
		})
	}
	for _, tc := range []struct {
		name, osUser, user, want string
	}{
		{"peer as another OS user", "postgres", "root", `FATAL:  Peer authentication failed for user "root"`},
		{"peer through a map as another OS user", "postgres", "postgres", "postgres"},
		{"peer from a uid with no passwd entry", "4242", "unk", `FATAL:  Peer authentication failed for user "unk"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := w.psqlAs(tc.osUser, direct, tc.user, "postgres")
			gate := w.psqlAs(tc.osUser, proxy, tc.user, "postgres")
			if pg != tc.want {
				t.Errorf("PostgreSQL: got %q, want %q", pg, tc.want)
			}
			if gate != pg {
				t.Errorf("pgcertgate differs from PostgreSQL:\n  postgres:   %s\n  pgcertgate: %s", pg, gate)
			}
		})
	}
	// What PostgreSQL only logs about the unknown uid, pgcertgate only
	// logs too.
	const lookupFailed = "could not look up local user ID 4242: user does not exist"
	pgLog, err := w.cluster.Log()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pgLog, lookupFailed) {
		t.Errorf("PostgreSQL's log lacks %q", lookupFailed)
	}
	if log := w.logBuf.String(); !strings.Contains(log, lookupFailed) || !strings.Contains(log, "reason=peer_unknown_uid") {
		t.Errorf("proxy log lacks %q with reason peer_unknown_uid", lookupFailed)
	}
}

// TestUnixNegotiation: on a socket an SSLRequest is answered 'N', as
// PostgreSQL answers it there, and the client goes on in plaintext; bytes
// sent with the request are refused; a GSSENCRequest after the refused
// SSLRequest is declined too. Both servers are asked the same bytes.
func TestUnixNegotiation(t *testing.T) {
	w := newUnixWorld(t, "")
	sslRequest := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)
	gssRequest := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877104)
	startup := func(user string) []byte {
		body := binary.BigEndian.AppendUint32(nil, 3<<16)
		body = append(body, "user\x00"+user+"\x00database\x00postgres\x00\x00"...)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
	}
	// exchange sends each write in turn and returns the first byte of the
	// answer to each but the last, then the type and the
	// SQLSTATE/message (or 'R' and the auth code) of the last answer.
	exchange := func(tg target, writes ...[]byte) string {
		dir, port := w.socketOf(tg)
		c, err := net.Dial("unix", config.SocketPath(dir, port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		var got []string
		for i, b := range writes {
			if len(b) == 0 {
				continue
			}
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			if i < len(writes)-1 {
				var one [1]byte
				if _, err := io.ReadFull(c, one[:]); err != nil {
					return strings.Join(append(got, "EOF"), " ")
				}
				got = append(got, string(one[:]))
			}
		}
		var hdr [5]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return strings.Join(append(got, "EOF"), " ")
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		if hdr[0] != 'E' {
			return strings.Join(append(got, string(hdr[0])), " ")
		}
		var code, msg string
		for _, f := range strings.Split(string(body), "\x00") {
			if strings.HasPrefix(f, "C") {
				code = f[1:]
			} else if strings.HasPrefix(f, "M") {
				msg = f[1:]
			}
		}
		return strings.Join(append(got, "E", code, msg), " ")
	}
	for _, tc := range []struct {
		name   string
		writes [][]byte
		want   string
	}{
		{"SSLRequest declined, then plaintext", [][]byte{sslRequest, startup("trusted")}, "N R"},
		// The second write is empty: the answer to the first is the 'N',
		// then the error.
		{"SSLRequest with the startup packet behind it", [][]byte{append(append([]byte{}, sslRequest...), startup("trusted")...), {}}, "N E 08P01 received unencrypted data after SSL request"},
		{"GSSENCRequest after a declined SSLRequest", [][]byte{sslRequest, gssRequest, startup("trusted")}, "N N R"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg, gate := exchange(direct, tc.writes...), exchange(proxy, tc.writes...)
			if pg != tc.want || gate != pg {
				t.Errorf("PostgreSQL %q, pgcertgate %q, want %q", pg, gate, tc.want)
			}
		})
	}
}

// TestUnixSessions: socket sessions through the proxy get what TCP ones
// get: psql's default connection with `local all all peer`, the audit
// log (the identity is the OS user name), metrics, backend reuse, cancel,
// reload and drain.
func TestUnixSessions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs psql as the postgres OS user; CI runs as root")
	}
	w := newUnixWorld(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("audit log", func(t *testing.T) {
		if got := w.attempt(proxy, "root", "postgres"); !got.ok {
			t.Fatalf("root: %s", got)
		}
		// The session-end event follows the client's Terminate.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(w.logBuf.String(), `msg="session ended" event=session_end conn_id=1 client=[local] user=root`) {
			if time.Now().After(deadline) {
				t.Fatal("no session-end event for the socket session")
			}
			time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
		}
		log := w.logBuf.String()
		for _, want := range []string{`msg="connection authorized" conn_id=1 client=[local] peer_uid=0 peer_gid=0 peer_pid=`, `hba_method=peer os_user=root`} {
			if !strings.Contains(log, want) {
				t.Errorf("proxy log lacks %q", want)
			}
		}
	})

	t.Run("backend reuse keyed by the peer", func(t *testing.T) {
		pid := func() (string, *pgconn.PgConn) {
			pc, err := w.connect(ctx, proxy, "root", "postgres")
			if err != nil {
				t.Fatal(err)
			}
			res := pc.ExecParams(ctx, "select pg_backend_pid()", nil, nil, nil, nil).Read()
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			return string(res.Rows[0][0]), pc
		}
		first, pc := pid()
		idle := w.proxy.IdleBackends()
		pc.Close(ctx)
		waitIdle(t, w.proxy, idle+1)
		second, pc := pid()
		defer pc.Close(ctx)
		if first != second {
			t.Errorf("the same OS user on the same peer line got a new backend (%s, then %s)", first, second)
		}
	})

	t.Run("cancel over the socket", func(t *testing.T) {
		pc, err := w.connect(ctx, proxy, "trusted", "postgres")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		done := make(chan error, 1)
		go func() {
			done <- pc.ExecParams(ctx, "select pg_sleep(60)", nil, nil, nil, nil).Read().Err
		}()
		// Cancel once the backend is in the sleep, as pg_stat_activity
		// shows it.
		deadline := time.Now().Add(20 * time.Second)
		for {
			rows, err := w.cluster.Query(ctx, "select count(*) from pg_stat_activity where usename = 'trusted' and query = 'select pg_sleep(60)' and state = 'active'")
			if err != nil {
				t.Fatal(err)
			}
			if rows[0][0] == "1" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the query never started")
			}
			time.Sleep(10 * time.Millisecond) // polling a condition, bounded by the deadline
		}
		cc, err := w.connect(ctx, proxy, "trusted", "postgres")
		if err != nil {
			t.Fatal(err)
		}
		// pgconn sends the CancelRequest to the socket pc came through.
		if err := pc.CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		cc.Close(ctx)
		err = <-done
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "57014" {
			t.Fatalf("query ended with %v, want 57014 canceling statement due to user request", err)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if got := w.attempt(proxy, "wrong", "postgres"); got.ok {
			t.Fatalf("wrong: %s", got)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(w.proxy.Metrics())
		// The server counts the refusal after writing it, so the client
		// can see the FATAL first: wait for the count, bounded.
		var counts map[string]float64
		for deadline := time.Now().Add(10 * time.Second); ; {
			counts = authAttempts(t, reg)
			if counts["peer_name_mismatch reject"] == 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
		}
		if counts["peer_name_mismatch reject"] != 1 || counts["authorized accept"] < 3 {
			t.Errorf("auth_attempts_total: %v, want 1 peer_name_mismatch and at least 3 accepted", counts)
		}
	})

	t.Run("psql's default connection with local all all peer, after a reload", func(t *testing.T) {
		// A session open across the reload keeps its configuration.
		held, err := w.connect(ctx, proxy, "trusted", "postgres")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close(ctx)
		if err := os.WriteFile(filepath.Join(w.dir, "pg_hba.conf"), []byte("local all all peer\nhost all all 127.0.0.1/32 trust\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		rt, err := config.Load(w.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		w.proxy.Reload(rt)
		if got := w.psqlAs("postgres", proxy, "", ""); got != "postgres" {
			t.Errorf("psql -h %s -p %d as the postgres OS user: %q, want postgres", w.dir, w.port, got)
		}
		if got := w.attempt(proxy, "trusted", "postgres"); got.String() != `FATAL 28000 Peer authentication failed for user "trusted"` {
			t.Errorf("trusted after the reload: %s", got)
		}
		if res := held.ExecParams(ctx, "select 1", nil, nil, nil, nil).Read(); res.Err != nil {
			t.Errorf("the session held across the reload: %v", res.Err)
		}
	})

	t.Run("drain", func(t *testing.T) {
		pc, err := w.connect(ctx, proxy, "root", "postgres")
		if err != nil {
			t.Fatal(err)
		}
		socket := config.SocketPath(w.dir, w.port)
		shut := make(chan error, 1)
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		defer scancel()
		go func() { shut <- w.proxy.Shutdown(sctx) }()
		// The listener goes first, with its socket and lock file.
		deadline := time.Now().Add(10 * time.Second)
		for w.proxy.Serving() {
			if time.Now().After(deadline) {
				t.Fatal("still serving")
			}
			time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
		}
		for _, f := range []string{socket, socket + ".lock"} {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s after the listener closed: %v", f, err)
			}
		}
		// The session carries on until it ends by itself.
		if res := pc.ExecParams(ctx, "select 1", nil, nil, nil, nil).Read(); res.Err != nil {
			t.Errorf("session during the drain: %v", res.Err)
		}
		pc.Close(ctx)
		if err := <-shut; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

// waitIdle waits until the proxy keeps n idle backends.
func waitIdle(t *testing.T, srv *pgwire.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.IdleBackends() != n {
		if time.Now().After(deadline) {
			t.Fatalf("idle backends = %d, want %d", srv.IdleBackends(), n)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

// TestUnixSocketServe runs `pgcertgate serve` with unix_socket_directories:
// a directory it cannot use is an error at start naming it, and a reload
// that changes the sockets, or that is broken, keeps the listener that
// runs.
func TestUnixSocketServe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starts pgcertgate as the postgres OS user; CI runs as root")
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "unix serve root"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := root.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// cfgDir holds the configuration, owned by whoever runs serve: root,
	// or the postgres OS user.
	cfgDir := unixTempDir(t, "pgcgs")
	owner := 0
	writeConfig := func(socketDirs string) string {
		cfgPath := filepath.Join(cfgDir, "pgcertgate.toml")
		files := map[string][]byte{
			"server.crt":  server.CertPEM,
			"server.key":  server.KeyPEM,
			"pg_hba.conf": []byte("local all all peer\n"),
			"pgcertgate.toml": []byte(fmt.Sprintf(`listen_addresses = ""
unix_socket_directories = %q
port = 5433
hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
[backend]
dsn = "host=127.0.0.1 port=1 sslmode=disable"
`, socketDirs)),
		}
		for name, content := range files {
			path := filepath.Join(cfgDir, name)
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, owner, ownerGID(owner, gid)); err != nil {
				t.Fatal(err)
			}
		}
		return cfgPath
	}
	// exitsWith runs serve to its end and returns its output.
	exitsWith := func(t *testing.T, bin string, cred *syscall.Credential, cfgPath string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfgPath)
		cmd.Env = cleanEnv()
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 1 {
			t.Fatalf("serve: %v, want exit status 1\n%s", err, out)
		}
		return string(out)
	}

	t.Run("a missing directory", func(t *testing.T) {
		missing := filepath.Join(cfgDir, "missing")
		out := exitsWith(t, pgcertgateBinary(t), nil, writeConfig(missing))
		if want := fmt.Sprintf(`could not create Unix-domain socket in directory \"%s\": no such directory`, missing); !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	})

	t.Run("a directory the OS user may not write", func(t *testing.T) {
		// The binary where the postgres user may run it.
		bin := filepath.Join(unixTempDir(t, "pgcgb"), "pgcertgate")
		data, err := os.ReadFile(pgcertgateBinary(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		rootsOnly := unixTempDir(t, "pgcgr")
		owner = uid
		defer func() { owner = 0 }()
		out := exitsWith(t, bin, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, writeConfig(rootsOnly))
		want := fmt.Sprintf(`could not create Unix-domain socket in directory \"%s\": could not create lock file \"%s/.s.PGSQL.5433.lock\": permission denied`, rootsOnly, rootsOnly)
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	})

	t.Run("a path too long for sun_path", func(t *testing.T) {
		long := filepath.Join(cfgDir, strings.Repeat("d", 100))
		out := exitsWith(t, pgcertgateBinary(t), nil, writeConfig(long))
		want := fmt.Sprintf(`unix_socket_directories: Unix-domain socket path "%s/.s.PGSQL.5433" is too long (maximum 107 bytes)`, long)
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	})

	t.Run("reload keeps the listener", func(t *testing.T) {
		sockDir := unixTempDir(t, "pgcgl")
		p := startServe(t, writeConfig(sockDir), nil)
		p.waitLog(t, "listening")
		socket := config.SocketPath(sockDir, 5433)
		answers := func() bool {
			c, err := net.Dial("unix", socket)
			if err != nil {
				return false
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)); err != nil {
				return false
			}
			var one [1]byte
			_, err = io.ReadFull(c, one[:])
			return err == nil && one[0] == 'N'
		}
		if !answers() {
			t.Fatal("the socket does not answer")
		}
		lock, err := os.ReadFile(socket + ".lock")
		if err != nil || !strings.HasPrefix(string(lock), strconv.Itoa(p.cmd.Process.Pid)+"\n") {
			t.Errorf("lock file %q (%v) does not start with the server's pid %d", lock, err, p.cmd.Process.Pid)
		}

		// A broken value: the reload fails whole.
		writeConfig(filepath.Join(cfgDir, strings.Repeat("d", 100)))
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(t, "configuration files were not reloaded")
		if !answers() {
			t.Error("the listener is gone after a failed reload")
		}
		// A valid change needs a restart, as in PostgreSQL.
		writeConfig(filepath.Join(cfgDir, "missing"))
		p.cmd.Process.Signal(syscall.SIGHUP)
		line := p.waitLog(t, "parameter cannot be changed without restarting")
		if !strings.Contains(line, "unix_socket_directories") {
			t.Errorf("restart warning does not name the key: %s", line)
		}
		p.waitLog(t, "configuration reloaded")
		if !answers() {
			t.Error("the listener is gone after a reload that changed the directories")
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.waitLog(t, "shutdown complete")
		for range p.lines {
		}
		if err := <-p.done; err != nil {
			t.Fatalf("exit: %v", err)
		}
		p.done <- nil
		for _, f := range []string{socket, socket + ".lock"} {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s after shutdown: %v", f, err)
			}
		}
	})
}

// ownerGID is the group for files owned by uid: root's, or gid.
func ownerGID(uid, gid int) int {
	if uid == 0 {
		return 0
	}
	return gid
}

// authAttempts reads pgcertgate_auth_attempts_total by its label values.
func authAttempts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "pgcertgate_auth_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key []string
			for _, l := range m.GetLabel() {
				key = append(key, l.GetValue())
			}
			counts[strings.Join(key, " ")] = m.GetCounter().GetValue()
		}
	}
	return counts
}
