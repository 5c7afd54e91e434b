package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestBackendReuse proves that a kept backend carries no session state to
// its next client, and is never handed to another user, another database,
// other startup parameters, or after a session that ended mid-transaction.
func TestBackendReuse(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: sessionHBA, ident: sessionIdent, backendTOML: "reuse = true\nreuse_idle_timeout = \"30s\""})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE ROLE carol LOGIN", "CREATE DATABASE app", "GRANT ALL ON DATABASE app TO alice, carol")
	alice := conn{user: "alice", database: "app", cert: "alice"}
	r := &reuser{t: t, w: w, ctx: ctx}
	open, exec, closeAndWait := r.open, r.exec, r.closeAndWait

	// Session 1 leaves every kind of session state behind.
	a1 := open(alice)
	pid := a1.PID()
	exec(a1, "SET work_mem = '7MB'")
	exec(a1, "CREATE TEMP TABLE leftover (i int)")
	exec(a1, "PREPARE leftover_stmt AS SELECT 1")
	exec(a1, "LISTEN leftover_channel")
	exec(a1, "SELECT pg_advisory_lock(42)")
	exec(a1, "SET application_name = 'changed'")
	closeAndWait(a1, 0, true)

	// Session 2, same user, database and parameters: same backend, clean.
	a2 := open(alice)
	if a2.PID() != pid {
		t.Fatalf("backend not reused: pid %d, want %d", a2.PID(), pid)
	}
	if got := a2.ParameterStatus("application_name"); got != "" {
		t.Errorf("application_name ParameterStatus after reuse = %q, want the session default", got)
	}
	checks := map[string]string{
		"select current_setting('work_mem')":                                     "4MB",
		"select count(*) from pg_class where relname = 'leftover'":               "0",
		"select count(*) from pg_prepared_statements":                            "0",
		"select count(*) from pg_listening_channels()":                           "0",
		"select count(*) from pg_locks where locktype = 'advisory'":              "0",
		"select current_user::text || ',' || session_user::text":                 "alice,alice",
		"select current_setting('application_name')":                             "",
		fmt.Sprintf("select count(*) from pg_stat_activity where pid = %d", pid): "1",
	}
	for q, want := range checks {
		if got := string(exec(a2, q)[0]); got != want {
			t.Errorf("after reuse, %s = %q, want %q", q, got, want)
		}
	}
	if n := w.proxy.ReusedBackends(); n != 1 {
		t.Errorf("ReusedBackends = %d, want 1", n)
	}
	closeAndWait(a2, 0, true)

	// Another user never gets alice's backend.
	c1 := open(conn{user: "carol", database: "app", cert: "carol-example"})
	if c1.PID() == pid {
		t.Fatal("carol was handed alice's backend")
	}
	if got := string(exec(c1, "select current_user")[0]); got != "carol" {
		t.Fatalf("carol's session runs as %q", got)
	}
	closeAndWait(c1, 1, true)

	// Other startup parameters: a fresh backend.
	a3 := open(conn{user: "alice", database: "app", cert: "alice", extra: "application_name=other"})
	if a3.PID() == pid {
		t.Fatal("a session with other startup parameters reused alice's backend")
	}
	closeAndWait(a3, 2, true)

	// A session that ends inside a transaction is not kept.
	a4 := open(alice)
	if a4.PID() != pid {
		t.Fatalf("expected the kept backend %d, got %d", pid, a4.PID())
	}
	exec(a4, "BEGIN")
	exec(a4, "CREATE TEMP TABLE in_tx (i int)")
	closeAndWait(a4, 2, false)
	a5 := open(alice)
	if a5.PID() == pid {
		t.Fatal("a backend left inside a transaction was reused")
	}
	a5.Close(ctx)
}

// reuser opens proxy sessions and watches the proxy's kept backends.
type reuser struct {
	t   *testing.T
	w   *world
	ctx context.Context
}

func (r *reuser) open(c conn) *pgconn.PgConn {
	r.t.Helper()
	pc, err := r.w.connect(r.ctx, proxy, c)
	if err != nil {
		r.t.Fatal(err)
	}
	return pc
}

// exec runs sql and returns the first row of its last result (nil when
// that result has no rows).
func (r *reuser) exec(pc *pgconn.PgConn, sql string) [][]byte {
	r.t.Helper()
	rs, err := pc.Exec(r.ctx, sql).ReadAll()
	if err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	last := rs[len(rs)-1]
	if len(last.Rows) == 0 {
		return nil
	}
	return last.Rows[0]
}

// closeAndWait ends a session and waits until the proxy has kept (kept
// true) or dropped its backend.
func (r *reuser) closeAndWait(pc *pgconn.PgConn, idleBefore int, kept bool) {
	r.t.Helper()
	pc.Close(r.ctx)
	want := idleBefore
	if kept {
		want++
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.w.proxy.IdleBackends() != want {
		if time.Now().After(deadline) {
			r.t.Fatalf("idle backends = %d, want %d", r.w.proxy.IdleBackends(), want)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

// TestReuseNeverCrossesCertificates: two certificates that map to the same
// role never share a backend, because DISCARD ALL leaves state behind
// (dblink connections logged in as someone else, the random() seed, LOADed
// modules). The same certificate gets its own kept backend back, state and
// all.
func TestReuseNeverCrossesCertificates(t *testing.T) {
	const hbaConf = "hostssl all all 127.0.0.1/32 cert map=m\n"
	const identConf = "m alice app\nm bob app\n"
	for _, pass := range []bool{false, true} {
		t.Run(fmt.Sprintf("pass_client_identity=%v", pass), func(t *testing.T) {
			w := newWorld(t, newPKI(t), worldOptions{hba: hbaConf, ident: identConf,
				backendTOML: fmt.Sprintf("reuse = true\nreuse_idle_timeout = \"30s\"\npass_client_identity = %v", pass)})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// app is a superuser so that it may LOAD a module and open a
			// password-less dblink connection as another role.
			w.setup(t, "CREATE ROLE app LOGIN SUPERUSER", "CREATE ROLE secret LOGIN", "CREATE DATABASE app OWNER app")
			if _, err := w.superuserRowsIn(ctx, "app", "CREATE EXTENSION dblink"); err != nil {
				t.Fatal(err)
			}
			r := &reuser{t: t, w: w, ctx: ctx}
			bobConn := conn{user: "app", database: "app", cert: "bob"}
			aliceConn := conn{user: "app", database: "app", cert: "alice"}

			// bob leaves state behind that DISCARD ALL does not reset.
			bob := r.open(bobConn)
			bobPID := bob.PID()
			r.exec(bob, "select setseed(0.5)")
			r.exec(bob, "LOAD 'auto_explain'")
			r.exec(bob, "select dblink_connect('stash', format('host=%s port=%s dbname=postgres user=secret', "+
				"split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port')))")
			r.closeAndWait(bob, 0, true)

			// The value random() gives first after setseed(0.5).
			seeded, err := w.superuserRows(ctx, "select setseed(0.5), random()::text")
			if err != nil {
				t.Fatal(err)
			}
			// alice maps to the same role, database and parameters, with
			// her own certificate: a backend of her own, with none of it.
			alice := r.open(aliceConn)
			if alice.PID() == bobPID {
				t.Fatalf("alice was handed bob's backend (pid %d)", bobPID)
			}
			if got := r.exec(alice, "select dblink_get_connections() is null")[0]; string(got) != "t" {
				t.Errorf("alice sees dblink connections")
			}
			if got := r.exec(alice, "select current_setting('auto_explain.log_min_duration', true) is null")[0]; string(got) != "t" {
				t.Errorf("alice's backend has auto_explain loaded")
			}
			if got := r.exec(alice, "select random()::text")[0]; string(got) == string(seeded[0][1]) {
				t.Errorf("alice's first random() = %s, the value after bob's setseed(0.5)", got)
			}
			// Only bob's backend is kept; alice's joins it when she leaves.
			r.closeAndWait(alice, 1, true)

			// bob gets his own backend back, state included.
			bob2 := r.open(bobConn)
			if bob2.PID() != bobPID {
				t.Fatalf("bob's kept backend not returned to him: pid %d, want %d", bob2.PID(), bobPID)
			}
			if got := r.exec(bob2, "select u from dblink('stash', 'select current_user') as t(u name)")[0]; string(got) != "secret" {
				t.Errorf("bob's dblink connection = %q, want secret", got)
			}
			r.closeAndWait(bob2, 1, true)
			if n := w.proxy.ReusedBackends(); n != 1 {
				t.Errorf("ReusedBackends = %d, want 1", n)
			}
		})
	}
}
