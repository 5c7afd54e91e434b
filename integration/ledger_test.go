package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/config"
)

// The ledger tests: alice and bob both log in as the role app (the RLS
// example's pg_hba.conf and pg_ident.conf), and alice also as herself.
const ledgerHBA = `local replication all trust
hostssl all app 127.0.0.1/32 cert map=people
hostssl replication app 127.0.0.1/32 cert map=people
hostssl all all 127.0.0.1/32 cert map=m
`

const ledgerIdent = `people alice app
people bob app
m alice alice
`

// ledgerWorld is a proxy with identity_ledger on, and the ledger installed
// in database app (not in plain) with a writer role that is no superuser.
func ledgerWorld(t *testing.T, backendTOML string) *world {
	t.Helper()
	w := newWorld(t, newPKI(t), worldOptions{hba: ledgerHBA, ident: ledgerIdent,
		backendTOML: "identity_ledger = true\nledger_user = \"ledger_user\"\n" + backendTOML})
	w.setup(t, "CREATE ROLE ledger_user LOGIN", "CREATE ROLE app LOGIN REPLICATION", "CREATE ROLE alice LOGIN",
		"CREATE DATABASE app", "CREATE DATABASE plain", "GRANT ALL ON DATABASE app, plain TO app, alice")
	w.installLedger(t, "app")
	return w
}

// installLedger pipes `pgcertgate install-sql` into psql, as an operator
// would, as the superuser in database db.
func (w *world) installLedger(t *testing.T, db string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gen := exec.CommandContext(ctx, pgcertgateBinary(t), "install-sql", "--config", w.cfgPath)
	gen.Env = cleanEnv()
	sql, err := gen.Output()
	if err != nil {
		t.Fatalf("pgcertgate install-sql: %v", err)
	}
	run := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", w.cluster.SuperuserDSN()+" dbname="+db, "-f", "-")
	run.Env = cleanEnv()
	run.Stdin = bytes.NewReader(sql)
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("psql -f install-sql: %v\n%s", err, out)
	}
}

func fingerprint(c *x509.Certificate) string {
	fp := sha256.Sum256(c.Raw)
	return hex.EncodeToString(fp[:])
}

// exec1 runs sql on pc and returns its first row as text ("NULL" for
// NULL), or the error.
func exec1(ctx context.Context, pc *pgconn.PgConn, sql string) ([]string, error) {
	rs, err := pc.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	last := rs[len(rs)-1]
	if len(last.Rows) == 0 {
		return nil, nil
	}
	out := make([]string, len(last.Rows[0]))
	for i, v := range last.Rows[0] {
		out[i] = "NULL"
		if v != nil {
			out[i] = string(v)
		}
	}
	return out, nil
}

func mustExec1(t *testing.T, ctx context.Context, pc *pgconn.PgConn, sql string) []string {
	t.Helper()
	row, err := exec1(ctx, pc, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return row
}

// waitValue polls a one-value superuser query in db until it returns want.
func (w *world) waitValue(t *testing.T, db, sql, want string, limit time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit+10*time.Second)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := w.superuserRowsIn(ctx, db, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		got := string(rows[0][0])
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: still %s after %s, want %s", sql, got, limit, want)
		}
		<-tick.C
	}
}

const whoAmI = "select pgcertgate.identity(), pgcertgate.cert_fingerprint(), host(pgcertgate.client_addr()), pgcertgate.hba_line(), (pgcertgate.session()).subject"

func TestLedgerBeforeFirstStatement(t *testing.T) {
	w := ledgerWorld(t, "")
	alice := w.pki.clients["alice"].Cert
	want := fmt.Sprintf("alice|%s|127.0.0.1|%s:2|CN=alice", fingerprint(alice), filepath.Join(w.dir, "pg_hba.conf"))

	t.Run("psql's first statement", func(t *testing.T) {
		out, err := psql(t, w.conninfo(proxy, conn{user: "app", database: "app", cert: "alice"}), "-c", whoAmI)
		if err != nil || strings.TrimSpace(out) != want {
			t.Fatalf("psql: %v\n%s\nwant %s", err, out, want)
		}
	})

	t.Run("a query sent with the startup packet", func(t *testing.T) {
		// The strictest client: the query goes out in the same write as
		// the startup packet, before any answer. It reaches the backend
		// only after the ledger row is written.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
		raw.Write(ssl)
		var s [1]byte
		if _, err := raw.Read(s[:]); err != nil || s[0] != 'S' {
			t.Fatalf("SSLRequest: %q %v", s, err)
		}
		leaf := w.pki.clients["alice"]
		pair, err := tls.X509KeyPair(leaf.ChainPEM(), leaf.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(w.pki.root.Cert)
		tc := tls.Client(raw, &tls.Config{ServerName: "localhost", RootCAs: roots, Certificates: []tls.Certificate{pair}})
		buf, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "app", "database": "app"}}).Encode(nil)
		buf, _ = (&pgproto3.Query{String: "select pgcertgate.identity()"}).Encode(buf)
		buf, _ = (&pgproto3.Terminate{}).Encode(buf)
		if _, err := tc.Write(buf); err != nil {
			t.Fatal(err)
		}
		fe := pgproto3.NewFrontend(tc, tc)
		var got []string
		for {
			msg, err := fe.Receive()
			if err != nil {
				break
			}
			switch m := msg.(type) {
			case *pgproto3.DataRow:
				got = append(got, string(m.Values[0]))
			case *pgproto3.ErrorResponse:
				t.Fatalf("error: %s %s", m.Code, m.Message)
			}
		}
		if len(got) != 1 || got[0] != "alice" {
			t.Fatalf("pipelined first query saw %q, want [alice]", got)
		}
	})
}

// TestLedgerRLSExample runs testdata/examples/ledger-rls with two
// certificates that log in as the same role.
func TestLedgerRLSExample(t *testing.T) {
	w := ledgerWorld(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	schema, err := os.ReadFile("../testdata/examples/ledger-rls/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	run := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", w.cluster.SuperuserDSN()+" dbname=app", "-f", "-")
	run.Env = cleanEnv()
	run.Stdin = bytes.NewReader(schema)
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("schema.sql: %v\n%s", err, out)
	}
	// The example's configuration file parses, with the ledger on.
	if c, err := config.ReadFile("../testdata/examples/ledger-rls/pgcertgate.toml"); err != nil || !c.Backend.IdentityLedger || c.Backend.LedgerUser == "" {
		t.Errorf("the example's pgcertgate.toml: %v", err)
	}
	// The example's own pg_hba.conf and pg_ident.conf lines are the
	// ones this world uses.
	for _, f := range []string{"pg_hba.conf", "pg_ident.conf"} {
		ex, err := os.ReadFile(filepath.Join("../testdata/examples/ledger-rls", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(ex), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") && !strings.Contains(ledgerHBA+ledgerIdent, strings.Join(strings.Fields(line), " ")) {
				t.Errorf("%s line %q is not what the test runs", f, line)
			}
		}
	}
	open := func(cert string) *pgconn.PgConn {
		pc, err := w.connect(ctx, proxy, conn{user: "app", database: "app", cert: cert})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close(context.Background()) })
		return pc
	}
	alice, bob := open("alice"), open("bob")
	mustExec1(t, ctx, alice, "insert into notes(body) values ('alice 1'), ('alice 2')")
	mustExec1(t, ctx, bob, "insert into notes(body) values ('bob 1')")
	for _, tc := range []struct {
		pc   *pgconn.PgConn
		want string
	}{{alice, "2|alice 1,alice 2|app"}, {bob, "1|bob 1|app"}} {
		got := strings.Join(mustExec1(t, ctx, tc.pc, "select count(*), string_agg(body, ',' order by id), current_user from notes"), "|")
		if got != tc.want {
			t.Errorf("sees %s, want %s", got, tc.want)
		}
	}
	// bob can neither write a row as alice nor change hers.
	_, err = exec1(ctx, bob, "insert into notes(owner, body) values ('alice', 'forged')")
	if pg, ok := errors.AsType[*pgconn.PgError](err); !ok || pg.Code != "42501" {
		t.Errorf("bob inserting as alice: %v, want 42501", err)
	}
	if got := mustExec1(t, ctx, bob, "with u as (update notes set body = 'x' where owner = 'alice' returning 1) select count(*) from u"); got[0] != "0" {
		t.Errorf("bob updated %s of alice's rows", got[0])
	}
	// And SET cannot make bob alice.
	mustExec1(t, ctx, bob, "set pgcertgate.identity = 'alice'")
	if got := mustExec1(t, ctx, bob, "select count(*) from notes"); got[0] != "1" {
		t.Errorf("after SET, bob sees %s rows", got[0])
	}
}

// TestLedgerForgeryThroughProxy repeats, through the proxy, the ledger
// package's forgery tests that involve the proxy; ledger_test.go has the
// full list against PostgreSQL.
func TestLedgerForgeryThroughProxy(t *testing.T) {
	w := ledgerWorld(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.setup(t, "ALTER DATABASE app OWNER TO alice")
	pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	check := func(t *testing.T) {
		t.Helper()
		if got := mustExec1(t, ctx, pc, "select pgcertgate.identity()"); got[0] != "alice" {
			t.Fatalf("identity is now %q", got[0])
		}
	}
	t.Run("SET and set_config", func(t *testing.T) {
		for _, q := range []string{"set pgcertgate.identity = 'bob'", "select set_config('pgcertgate.identity', 'bob', false)"} {
			mustExec1(t, ctx, pc, q)
			check(t)
		}
	})
	t.Run("DML by the database owner", func(t *testing.T) {
		mustExec1(t, ctx, pc, "create table mine(i int)")
		for _, q := range []string{
			"insert into pgcertgate.sessions (pid, backend_start, identity, auth_time) values (pg_backend_pid(), now(), 'bob', now())",
			"update pgcertgate.sessions set identity = 'bob'",
			"delete from pgcertgate.sessions",
			"truncate pgcertgate.sessions",
		} {
			_, err := exec1(ctx, pc, q)
			if pg, ok := errors.AsType[*pgconn.PgError](err); !ok || pg.Code != "42501" {
				t.Errorf("%s: %v, want 42501", q, err)
			}
			check(t)
		}
	})
	t.Run("identity() earlier in search_path", func(t *testing.T) {
		mustExec1(t, ctx, pc, "create schema evil; create function evil.identity() returns text language sql as $$select 'bob'$$; set search_path = evil, public")
		if got := mustExec1(t, ctx, pc, "select identity()"); got[0] != "bob" {
			t.Fatalf("unqualified identity() = %q: the shadow did not take", got[0])
		}
		check(t)
	})
	t.Run("options=-c for pgcertgate settings", func(t *testing.T) {
		for _, extra := range []string{
			"options='-c pgcertgate.identity=bob'",
			"options='--pgcertgate.identity=bob'",
			"options='-c PgCertGate.session=x'",
			"pgcertgate.identity=bob",
		} {
			got := w.attempt(proxy, conn{user: "alice", database: "app", cert: "alice", extra: extra})
			if got.ok || got.code != "42501" {
				t.Errorf("%s: %s, want FATAL 42501", extra, got)
			}
		}
	})
	t.Run("a direct connection on a pid a proxied session used", func(t *testing.T) {
		pid := pc.PID()
		pc.Close(ctx)
		// The row goes within 2 s of the session's end.
		took := w.waitValue(t, "app", fmt.Sprintf("select count(*) from pgcertgate.sessions where pid = %d", pid), "0", 2*time.Second)
		t.Logf("row deleted %s after the session ended", took)
		// A direct session given a pid with a stale row (what a
		// killed proxy leaves) reads NULL: the row names an earlier
		// backend start.
		cfg, _ := w.cluster.ConnConfig("alice", "app")
		direct, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer direct.Close(ctx)
		w.setupIn(t, "app", fmt.Sprintf(`insert into pgcertgate.sessions
			select pid, backend_start - interval '1 minute', 'alice', 'ff', 'CN=alice', 'CN=root', '127.0.0.1', 'x:1', now()
			from pg_stat_activity where pid = %d`, direct.PID()))
		if got := mustExec1(t, ctx, direct, "select pgcertgate.identity() is null"); got[0] != "t" {
			t.Errorf("direct connection on a reused pid: identity() is null = %s", got[0])
		}
	})
}

// waitLogged waits until the proxy's log holds want: the refusal's event
// is written after the client has its error.
func (w *world) waitLogged(t *testing.T, want string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(w.logBuf.String(), want); <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy never logged %s", want)
		}
	}
}

// setupIn runs statements as the superuser in database db.
func (w *world) setupIn(t *testing.T, db string, queries ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range queries {
		if _, err := w.superuserRowsIn(ctx, db, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestLedgerRefusals(t *testing.T) {
	w := ledgerWorld(t, "")
	t.Run("a database without the ledger", func(t *testing.T) {
		got := w.attempt(proxy, conn{user: "app", database: "plain", cert: "alice"})
		want := `FATAL 55000 pgcertgate's identity ledger is not installed in database "plain"`
		if got.String() != want {
			t.Errorf("got %s, want %s", got, want)
		}
		w.waitLogged(t, "reason=ledger_not_installed")
	})
	t.Run("replication connections are exempt", func(t *testing.T) {
		for _, mode := range []string{"replication=database", "replication=true"} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			pc, err := w.connect(ctx, proxy, conn{user: "app", database: "plain", cert: "alice", extra: mode})
			if err != nil {
				t.Errorf("%s: %v", mode, err)
				cancel()
				continue
			}
			res, err := pc.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
			if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
				t.Errorf("%s: IDENTIFY_SYSTEM: %v", mode, err)
			}
			pc.Close(ctx)
			cancel()
		}
	})
	t.Run("a ledger that cannot be written", func(t *testing.T) {
		w.setupIn(t, "app", "REVOKE INSERT, UPDATE ON pgcertgate.sessions FROM ledger_user")
		got := w.attempt(proxy, conn{user: "app", database: "app", cert: "alice"})
		want := "FATAL 57P03 pgcertgate could not record this session in its identity ledger"
		if got.String() != want {
			t.Errorf("got %s, want %s", got, want)
		}
		w.waitLogged(t, `reason=ledger_write_failed detail="ERROR: permission denied for table sessions (SQLSTATE 42501)"`)
		w.setupIn(t, "app", "GRANT INSERT, UPDATE ON pgcertgate.sessions TO ledger_user")
		if got := w.attempt(proxy, conn{user: "app", database: "app", cert: "alice"}); !got.ok {
			t.Errorf("after the grant: %s", got)
		}
	})
}

func TestLedgerReuse(t *testing.T) {
	w := ledgerWorld(t, "reuse = true")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := &reuser{t: t, w: w, ctx: ctx}
	a1 := r.open(conn{user: "app", database: "app", cert: "alice"})
	pid := a1.PID()
	first := mustExec1(t, ctx, a1, "select (pgcertgate.session()).auth_time, pgcertgate.identity()")
	r.closeAndWait(a1, 0, true)
	a2 := r.open(conn{user: "app", database: "app", cert: "alice"})
	if a2.PID() != pid {
		t.Fatalf("backend not reused: pid %d, want %d", a2.PID(), pid)
	}
	second := mustExec1(t, ctx, a2, "select (pgcertgate.session()).auth_time, pgcertgate.identity()")
	if second[1] != "alice" || second[0] == first[0] {
		t.Errorf("kept backend's row: %q after %q; want a new auth_time for alice", second, first)
	}
	// The first session's delete, sent after it ended, did not take the
	// second's row.
	w.waitValue(t, "app", fmt.Sprintf("select count(*) from pgcertgate.sessions where pid = %d", pid), "1", time.Second)
	if got := mustExec1(t, ctx, a2, "select pgcertgate.identity()"); got[0] != "alice" {
		t.Errorf("identity on the kept backend: %q", got[0])
	}
	r.closeAndWait(a2, 0, true)
	took := w.waitValue(t, "app", fmt.Sprintf("select count(*) from pgcertgate.sessions where pid = %d", pid), "0", 2*time.Second)
	t.Logf("row of the kept backend's session deleted %s after it ended", took)
}

// TestLedgerSweepAfterKill kills a serving pgcertgate with SIGKILL while
// a session runs, and starts it again: the new process sweeps the row the
// dead one left within 10 s.
func TestLedgerSweepAfterKill(t *testing.T) {
	w := ledgerWorld(t, "")
	cfgPath, port := w.childConfig(t)
	w.addr = fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	p := startServe(t, cfgPath, nil)
	p.waitLog(t, "listening")
	pc, err := w.connect(ctx, proxy, conn{user: "app", database: "app", cert: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	pid := pc.PID()
	if got := mustExec1(t, ctx, pc, "select pgcertgate.identity()"); got[0] != "alice" {
		t.Fatalf("identity %q", got[0])
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range p.lines {
	}
	pc.Close(ctx)
	// The backend ends when its socket closes; its row stays.
	w.waitValue(t, "app", fmt.Sprintf("select count(*) from pg_stat_activity where pid = %d", pid), "0", 10*time.Second)
	w.waitValue(t, "app", fmt.Sprintf("select count(*) from pgcertgate.sessions where pid = %d", pid), "1", time.Second)

	restarted := time.Now()
	p2 := startServe(t, cfgPath, nil)
	p2.waitLog(t, "listening")
	w.waitValue(t, "app", fmt.Sprintf("select count(*) from pgcertgate.sessions where pid = %d", pid), "0", 10*time.Second)
	t.Logf("stale row swept %s after the restart", time.Since(restarted).Round(time.Millisecond))
	p2.cmd.Process.Signal(syscall.SIGTERM)
	p2.waitLog(t, "shutdown complete")
}
