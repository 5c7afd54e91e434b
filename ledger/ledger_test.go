package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
)

// testDB is a real PostgreSQL with the ledger installed in database app by
// psql, for a writer role that is not a superuser.
type testDB struct {
	t       *testing.T
	cluster *pgcluster.Cluster
	backend *pgconn.Config
}

func newTestDB(t *testing.T) *testDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	d := &testDB{t: t, cluster: c}
	for _, q := range []string{
		"CREATE ROLE ledger_user LOGIN",
		"CREATE ROLE alice LOGIN",
		"CREATE ROLE bob LOGIN",
		"CREATE DATABASE app OWNER alice",
		"CREATE DATABASE plain OWNER alice",
	} {
		if err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	d.install("app", "ledger_user")
	d.backend, err = c.ConnConfig("postgres", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// install runs install-sql's output with psql, as an operator would.
func (d *testDB) install(db, user string) (string, error) {
	d.t.Helper()
	path := filepath.Join(d.t.TempDir(), "install.sql")
	if err := os.WriteFile(path, []byte(InstallSQL(user)), 0o644); err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-d", fmt.Sprintf("host=%s port=%d user=postgres dbname=%s", d.cluster.SocketDir(), d.cluster.Port(), db), "-f", path)
	cmd.Env = append(os.Environ(), "PGOPTIONS=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// connect opens a session as user in db, directly.
func (d *testDB) connect(user, db string) *pgconn.PgConn {
	d.t.Helper()
	cfg, err := d.cluster.ConnConfig(user, db)
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { pc.Close(context.Background()) })
	return pc
}

func (d *testDB) ledger() *Ledger {
	l := New(Options{Backend: d.backend, User: "ledger_user", SweepInterval: time.Hour, Log: testLog(d.t)})
	d.t.Cleanup(l.Close)
	return l
}

// query runs one statement and returns its first row as text ("NULL" for
// NULL), or the error.
func query(pc *pgconn.PgConn, sql string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, err := pc.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	last := results[len(results)-1]
	if len(last.Rows) == 0 {
		return nil, nil
	}
	out := make([]string, len(last.Rows[0]))
	for i, v := range last.Rows[0] {
		if v == nil {
			out[i] = "NULL"
		} else {
			out[i] = string(v)
		}
	}
	return out, nil
}

func mustQuery(t *testing.T, pc *pgconn.PgConn, sql string) []string {
	t.Helper()
	row, err := query(pc, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return row
}

// testLog sends the ledger's log to the test's.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func aliceRow(pid uint32) Row {
	return Row{
		PID:        pid,
		Role:       "alice",
		Identity:   "alice",
		CertSHA256: strings.Repeat("ab", 32),
		Subject:    "CN=alice,O=PGDG",
		Issuer:     "CN=root,O=PGDG",
		ClientAddr: netip.MustParseAddr("192.0.2.7"),
		HBALine:    "/etc/pgcertgate/pg_hba.conf:3",
		AuthTime:   time.Now(),
		Opened:     time.Now().Add(-time.Minute),
	}
}

const whoami = "select pgcertgate.identity(), pgcertgate.cert_fingerprint(), pgcertgate.client_addr(), pgcertgate.hba_line(), (pgcertgate.session()).subject"

func TestLedgerRecordAndRead(t *testing.T) {
	d := newTestDB(t)
	su := d.connect("postgres", "app")
	if got := mustQuery(t, su, "select rolsuper::text from pg_roles where rolname = 'ledger_user'"); got[0] != "false" {
		t.Fatalf("ledger_user must not be a superuser for this test: rolsuper=%s", got[0])
	}
	if got := mustQuery(t, su, "select relpersistence from pg_class where oid = 'pgcertgate.sessions'::regclass"); got[0] != "u" {
		t.Errorf("pgcertgate.sessions persistence %q, want u (UNLOGGED)", got[0])
	}
	alice := d.connect("alice", "app")
	l := d.ledger()
	ctx := context.Background()
	if _, err := l.Record(ctx, "app", aliceRow(alice.PID())); err != nil {
		t.Fatal(err)
	}
	want := []string{"alice", strings.Repeat("ab", 32), "192.0.2.7", "/etc/pgcertgate/pg_hba.conf:3", "CN=alice,O=PGDG"}
	if got := mustQuery(t, alice, whoami); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("alice sees %q, want %q", got, want)
	}

	t.Run("another session sees only NULL", func(t *testing.T) {
		bob := d.connect("bob", "app")
		if got := mustQuery(t, bob, whoami); fmt.Sprint(got) != "[NULL NULL NULL NULL NULL]" {
			t.Errorf("bob sees %q", got)
		}
	})

	t.Run("the writer refuses a pid that is not the session's backend", func(t *testing.T) {
		bob := d.connect("bob", "app")
		r := aliceRow(bob.PID()) // bob's backend, but alice's role
		if _, err := l.Record(ctx, "app", r); !errors.Is(err, ErrBackendMismatch) {
			t.Errorf("role mismatch: %v, want ErrBackendMismatch", err)
		}
		r = aliceRow(alice.PID())
		// A backend that started before the proxy began to open it is
		// not the one it opened.
		r.Opened = time.Now().Add(5 * time.Second)
		if _, err := l.Record(ctx, "app", r); !errors.Is(err, ErrBackendMismatch) {
			t.Errorf("backend older than the connect: %v, want ErrBackendMismatch", err)
		}
		r = aliceRow(1) // no such backend
		if _, err := l.Record(ctx, "app", r); !errors.Is(err, ErrBackendMismatch) {
			t.Errorf("no such pid: %v, want ErrBackendMismatch", err)
		}
		other := d.connect("alice", "plain")
		if err := func() error { _, err := l.Record(ctx, "app", aliceRow(other.PID())); return err }(); !errors.Is(err, ErrBackendMismatch) {
			t.Errorf("backend in another database: %v, want ErrBackendMismatch", err)
		}
	})

	t.Run("a writer whose connection died reconnects", func(t *testing.T) {
		if got := mustQuery(t, su, "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'pgcertgate ledger'"); got[0] != "1" {
			t.Fatalf("terminated %s writer connections, want 1", got[0])
		}
		waitQuery(t, su, "select count(*) from pg_stat_activity where application_name = 'pgcertgate ledger'", "0", 10*time.Second)
		if _, err := l.Record(ctx, "app", aliceRow(alice.PID())); err != nil {
			t.Fatalf("record after the writer's backend was terminated: %v", err)
		}
	})

	t.Run("a stale row for a reused pid is not inherited", func(t *testing.T) {
		// A direct (non-proxy) connection that lands on a pid a proxied
		// session used before: its row names the earlier backend's
		// start. PIDs cannot be made to repeat on demand, so the stale
		// row is written for the new backend's pid with an earlier
		// start, exactly what a killed proxy leaves behind.
		bob := d.connect("bob", "app")
		mustQuery(t, su, fmt.Sprintf(`insert into pgcertgate.sessions
			select %d, backend_start - interval '1 hour', 'alice', 'ff', 'CN=alice', 'CN=root', '10.0.0.1', 'x:1', now()
			from pg_stat_activity where pid = %[1]d`, bob.PID()))
		if got := mustQuery(t, bob, whoami); fmt.Sprint(got) != "[NULL NULL NULL NULL NULL]" {
			t.Errorf("a direct connection on a reused pid sees %q, want NULLs", got)
		}
	})
}

// TestLedgerForgery is every way a session could try to change what the
// ledger says about it. Each must fail, and the identity must stay.
func TestLedgerForgery(t *testing.T) {
	d := newTestDB(t)
	alice := d.connect("alice", "app")
	l := d.ledger()
	if _, err := l.Record(context.Background(), "app", aliceRow(alice.PID())); err != nil {
		t.Fatal(err)
	}
	// alice owns the database and objects in it, and is no superuser.
	mustQuery(t, alice, "create table mine(id int); create schema evil")
	check := func(t *testing.T) {
		t.Helper()
		if got := mustQuery(t, alice, "select pgcertgate.identity(), pgcertgate.client_addr()"); fmt.Sprint(got) != "[alice 192.0.2.7]" {
			t.Fatalf("identity after the attempt: %q", got)
		}
	}
	denied := func(t *testing.T, sql string) {
		t.Helper()
		_, err := query(alice, sql)
		pg, ok := errors.AsType[*pgconn.PgError](err)
		if !ok || (pg.Code != "42501" && pg.Code != "42P01") {
			t.Errorf("%s: %v, want permission denied", sql, err)
		}
		query(alice, "rollback")
	}

	t.Run("SET and set_config", func(t *testing.T) {
		for _, q := range []string{
			"set pgcertgate.identity = 'mallory'",
			"select set_config('pgcertgate.identity', 'mallory', false)",
			"set pgcertgate.client_addr = '10.9.9.9'",
			"set search_path = evil, public",
			"set role alice",
			"set session authorization alice",
		} {
			mustQuery(t, alice, q)
			check(t)
		}
		mustQuery(t, alice, "reset all")
	})

	t.Run("DML and DDL on the ledger", func(t *testing.T) {
		for _, q := range []string{
			"insert into pgcertgate.sessions (pid, backend_start, identity, auth_time) values (1, now(), 'mallory', now())",
			"update pgcertgate.sessions set identity = 'mallory'",
			"delete from pgcertgate.sessions",
			"truncate pgcertgate.sessions",
			"select * from pgcertgate.sessions",
			"alter table pgcertgate.sessions add column x int",
			"drop table pgcertgate.sessions",
			"drop schema pgcertgate cascade",
			"alter schema pgcertgate rename to old",
			"create or replace function pgcertgate.identity() returns text language sql as $$select 'mallory'$$",
			"alter function pgcertgate.identity() security invoker",
			"create table pgcertgate.extra(id int)",
			"grant pgcertgate_owner to alice",
			"copy pgcertgate.sessions from stdin",
		} {
			denied(t, q)
			check(t)
		}
	})

	t.Run("a function earlier in search_path", func(t *testing.T) {
		mustQuery(t, alice, "create function evil.identity() returns text language sql as $$select 'mallory'$$")
		mustQuery(t, alice, "set search_path = evil, pgcertgate, public")
		// The unqualified name is the session's own function: that is
		// why the documented call is schema-qualified.
		if got := mustQuery(t, alice, "select identity()"); got[0] != "mallory" {
			t.Fatalf("unqualified identity() = %q; the test no longer shadows", got[0])
		}
		check(t)
		mustQuery(t, alice, "reset search_path")
	})

	t.Run("shadowing what the functions use", func(t *testing.T) {
		bob := d.connect("bob", "app")
		// bob has a row too: a function redirected to bob's pid would
		// hand alice bob's identity.
		bobRow := aliceRow(bob.PID())
		bobRow.Role, bobRow.Identity, bobRow.ClientAddr = "bob", "bob", netip.MustParseAddr("192.0.2.8")
		if _, err := l.Record(context.Background(), "app", bobRow); err != nil {
			t.Fatal(err)
		}
		// Objects in the session's own schemas named like those the
		// functions read: pg_backend_pid returning another pid, a
		// pg_stat_activity and a sessions table in pg_temp and public,
		// an always-true = for integers; then both schemas first.
		mustQuery(t, alice, fmt.Sprintf(`
			create function public.pg_backend_pid() returns int language sql as $$select %d$$;
			create function public.pg_stat_get_activity(int) returns table(pid int, backend_start timestamptz) language sql as $$select %[1]d, now()$$;
			create function public.alwaystrue(int, int) returns bool language sql as $$select true$$;
			create operator public.= (leftarg = int, rightarg = int, function = public.alwaystrue);
			create temp table sessions as select * from (values (%[1]d, now(), 'mallory')) v(pid, backend_start, identity);
			create temp view pg_stat_activity as select %[1]d as pid, now() as backend_start;
			create view public.sessions as select 1 as pid`, bob.PID()))
		for _, sp := range []string{"pg_temp, public, pg_catalog", "public, pg_temp, pg_catalog", "public"} {
			mustQuery(t, alice, "set search_path = "+sp)
			check(t)
		}
		mustQuery(t, alice, "reset search_path")
	})
}

func TestLedgerNotInstalled(t *testing.T) {
	d := newTestDB(t)
	l := d.ledger()
	ctx := context.Background()
	other := d.connect("alice", "plain")
	_, err := l.Record(ctx, "plain", aliceRow(other.PID()))
	if e, ok := errors.AsType[*ErrNotInstalled](err); !ok || e.Database != "plain" {
		t.Fatalf("database without the ledger: %v, want ErrNotInstalled", err)
	}

	t.Run("a schema someone else made is not trusted", func(t *testing.T) {
		// alice owns the database, so she may create a pgcertgate
		// schema of her own before the operator installs the ledger.
		mustQuery(t, other, `create schema pgcertgate;
			create table pgcertgate.sessions (pid int primary key, backend_start timestamptz, identity text, cert_sha256 text, subject text, issuer text, client_addr inet, hba_line text, auth_time timestamptz);
			grant all on schema pgcertgate to public; grant all on pgcertgate.sessions to public`)
		_, err := l.Record(ctx, "plain", aliceRow(other.PID()))
		if _, ok := errors.AsType[*ErrNotInstalled](err); !ok {
			t.Errorf("schema owned by alice: %v, want ErrNotInstalled", err)
		}
		out, err := d.install("plain", "ledger_user")
		if err == nil || !strings.Contains(out, "schema pgcertgate exists and is not owned by pgcertgate_owner") {
			t.Errorf("install-sql over alice's schema: %v\n%s", err, out)
		}
	})

	t.Run("install-sql needs the role", func(t *testing.T) {
		out, err := d.install("postgres", "nobody")
		if err == nil || !strings.Contains(out, `role nobody does not exist`) {
			t.Errorf("install-sql for a missing role: %v\n%s", err, out)
		}
	})

	t.Run("install-sql may run again", func(t *testing.T) {
		if out, err := d.install("app", "ledger_user"); err != nil {
			t.Errorf("second run: %v\n%s", err, out)
		}
	})
}

// waitQuery polls a one-value query until it returns want, up to limit.
func waitQuery(t *testing.T, pc *pgconn.PgConn, sql, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := mustQuery(t, pc, sql)[0]
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: still %s after %s, want %s", sql, got, limit, want)
		}
		<-tick.C
	}
}

func rowCount(t *testing.T, su *pgconn.PgConn, where string) string {
	t.Helper()
	return mustQuery(t, su, "select count(*) from pgcertgate.sessions where "+where)[0]
}

// waitRows waits until the ledger holds want rows where where holds.
func waitRows(t *testing.T, su *pgconn.PgConn, where, want string, limit time.Duration) time.Duration {
	t.Helper()
	return waitQuery(t, su, "select count(*) from pgcertgate.sessions where "+where, want, limit)
}

func TestLedgerReleaseReuseAndSweep(t *testing.T) {
	d := newTestDB(t)
	su := d.connect("postgres", "app")
	l := d.ledger()
	ctx := context.Background()

	t.Run("release deletes within 2s", func(t *testing.T) {
		alice := d.connect("alice", "app")
		e, err := l.Record(ctx, "app", aliceRow(alice.PID()))
		if err != nil {
			t.Fatal(err)
		}
		where := fmt.Sprintf("pid = %d", alice.PID())
		if got := rowCount(t, su, where); got != "1" {
			t.Fatalf("rows before release: %s", got)
		}
		e.Release()
		took := waitRows(t, su, where, "0", 2*time.Second)
		t.Logf("row deleted %s after release", took)
	})

	t.Run("a kept backend's row is rewritten for the next client", func(t *testing.T) {
		alice := d.connect("alice", "app")
		first, err := l.Record(ctx, "app", aliceRow(alice.PID()))
		if err != nil {
			t.Fatal(err)
		}
		next := aliceRow(alice.PID())
		next.ClientAddr = netip.MustParseAddr("198.51.100.9")
		next.AuthTime = time.Now().Add(time.Millisecond)
		second, err := l.Record(ctx, "app", next)
		if err != nil {
			t.Fatal(err)
		}
		// The first session's late delete must not remove the second's
		// row.
		first.Release()
		// A marker release after it, on the same writer: once its row
		// is gone, the first delete has been sent too.
		marker := d.connect("alice", "app")
		me, err := l.Record(ctx, "app", aliceRow(marker.PID()))
		if err != nil {
			t.Fatal(err)
		}
		me.Release()
		waitRows(t, su, fmt.Sprintf("pid = %d", marker.PID()), "0", 2*time.Second)
		if got := mustQuery(t, alice, "select pgcertgate.client_addr()"); got[0] != "198.51.100.9" {
			t.Errorf("after the first session's release, the kept backend reads %q", got[0])
		}
		second.Release()
		waitRows(t, su, fmt.Sprintf("pid = %d", alice.PID()), "0", 2*time.Second)
	})

	t.Run("rows of backends that are gone are swept", func(t *testing.T) {
		cfg, _ := d.cluster.ConnConfig("alice", "app")
		gone, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		pid := gone.PID()
		if _, err := l.Record(ctx, "app", aliceRow(pid)); err != nil {
			t.Fatal(err)
		}
		// The proxy dies without a delete: a new ledger (a restarted
		// proxy) sweeps at start.
		gone.Close(ctx)
		where := fmt.Sprintf("pid = %d", pid)
		// PostgreSQL reaps the backend shortly after the close.
		waitQuery(t, su, fmt.Sprintf("select count(*) from pg_stat_activity where pid = %d", pid), "0", 10*time.Second)
		if got := rowCount(t, su, where); got != "1" {
			t.Fatalf("stale row missing before the sweep: %s", got)
		}
		restarted := New(Options{Backend: d.backend, User: "ledger_user", Log: testLog(t)})
		restarted.Start()
		defer restarted.Close()
		took := waitRows(t, su, where, "0", 10*time.Second)
		t.Logf("stale row swept %s after start", took)
	})
}

// BenchmarkRecord is the ledger's cost per login: one upsert over the
// writer connection (the login waits for it) and one delete, batched.
func BenchmarkRecord(b *testing.B) {
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	for _, q := range []string{"CREATE ROLE ledger_user LOGIN", "CREATE ROLE alice LOGIN", "CREATE DATABASE app OWNER alice"} {
		if err := c.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(b.TempDir(), "install.sql")
	if err := os.WriteFile(path, []byte(InstallSQL("ledger_user")), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("psql", "-X", "-q", "-d", fmt.Sprintf("host=%s port=%d user=postgres dbname=app", c.SocketDir(), c.Port()), "-f", path).CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	backend, _ := c.ConnConfig("postgres", "postgres")
	aliceCfg, _ := c.ConnConfig("alice", "app")
	alice, err := pgconn.ConnectConfig(ctx, aliceCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer alice.Close(ctx)
	l := New(Options{Backend: backend, User: "ledger_user", SweepInterval: time.Hour})
	defer l.Close()
	row := aliceRow(alice.PID())
	b.ResetTimer()
	for b.Loop() {
		row.AuthTime = time.Now()
		e, err := l.Record(ctx, "app", row)
		if err != nil {
			b.Fatal(err)
		}
		e.Release()
	}
}
