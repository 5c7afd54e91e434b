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
	open := func(c conn) *pgconn.PgConn {
		t.Helper()
		pc, err := w.connect(ctx, proxy, c)
		if err != nil {
			t.Fatal(err)
		}
		return pc
	}
	exec := func(pc *pgconn.PgConn, sql string) [][]byte {
		t.Helper()
		rs, err := pc.Exec(ctx, sql).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		last := rs[len(rs)-1]
		if len(last.Rows) == 0 {
			return nil
		}
		return last.Rows[0]
	}
	// closeAndWait ends a session and waits until the proxy has kept
	// (want true) or dropped its backend.
	closeAndWait := func(pc *pgconn.PgConn, idleBefore int, kept bool) {
		t.Helper()
		pc.Close(ctx)
		want := idleBefore
		if kept {
			want++
		}
		deadline := time.Now().Add(10 * time.Second)
		for w.proxy.IdleBackends() != want {
			if time.Now().After(deadline) {
				t.Fatalf("idle backends = %d, want %d", w.proxy.IdleBackends(), want)
			}
			time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
		}
	}

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
