package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const sessionHBA = `hostssl all all 127.0.0.1/32 cert map=m
hostnossl all all 127.0.0.1/32 reject
`

const sessionIdent = `m alice alice
m /^(.*)@example\.com$ \1
`

// sessionWorld is a proxy in front of PostgreSQL with alice and carol able
// to log in by certificate.
func sessionWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, newPKI(t), worldOptions{hba: sessionHBA, ident: sessionIdent})
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE ROLE carol LOGIN", "CREATE DATABASE app OWNER alice")
	return w
}

func TestSessions(t *testing.T) {
	forEachRelayEngineWorld(t, sessionWorld, testSessions)
}

func testSessions(t *testing.T, w *world) {

	t.Run("psql cert login", func(t *testing.T) {
		out, err := psql(t, w.conninfo(proxy, conn{user: "alice", database: "app", cert: "alice"}),
			"-c", "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()")
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		// The backend connection is a Unix socket, so the backend sees no
		// SSL: the client's TLS ends at the proxy.
		if got := strings.TrimSpace(out); got != "alice|f" {
			t.Fatalf("psql printed %q, want alice|f", got)
		}
	})

	t.Run("psql regex map", func(t *testing.T) {
		out, err := psql(t, w.conninfo(proxy, conn{user: "carol", database: "app", cert: "carol-example"}), "-c", "select current_user")
		if err != nil || strings.TrimSpace(out) != "carol" {
			t.Fatalf("psql: %v\n%s", err, out)
		}
	})

	t.Run("psql sees PostgreSQL's error text", func(t *testing.T) {
		out, err := psql(t, w.conninfo(proxy, conn{user: "carol", database: "app", cert: "alice"}), "-c", "select 1")
		if err == nil {
			t.Fatalf("psql succeeded: %s", out)
		}
		if !strings.Contains(out, `FATAL:  certificate authentication failed for user "carol"`) {
			t.Fatalf("psql output lacks PostgreSQL's message:\n%s", out)
		}
	})

	t.Run("psql plaintext refused", func(t *testing.T) {
		out, err := psql(t, w.conninfo(proxy, conn{user: "alice", database: "app", sslmode: "disable"}), "-c", "select 1")
		if err == nil || !strings.Contains(out, `FATAL:  pg_hba.conf rejects connection for host "127.0.0.1", user "alice", database "app", no encryption`) {
			t.Fatalf("psql: %v\n%s", err, out)
		}
	})

	t.Run("backend pid and parameters", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice", extra: "application_name=gatetest options='-c search_path=public,pg_catalog'"})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		res := pc.ExecParams(ctx, "select pg_backend_pid()::text, current_setting('application_name'), current_setting('search_path')", nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if got, want := string(res.Rows[0][0]), fmt.Sprint(pc.PID()); got != want {
			t.Errorf("pg_backend_pid() = %s, BackendKeyData pid = %s: clients need the real pid", got, want)
		}
		if got := string(res.Rows[0][1]); got != "gatetest" {
			t.Errorf("application_name = %q, want gatetest", got)
		}
		if got := string(res.Rows[0][2]); got != "public,pg_catalog" {
			t.Errorf("search_path from options = %q", got)
		}
		if v := pc.ParameterStatus("server_version"); v == "" {
			t.Error("no server_version ParameterStatus relayed")
		}
		if pc.SecretKey() == nil || len(pc.SecretKey()) != 4 {
			t.Errorf("cancel key length %d, want 4 for protocol 3.0", len(pc.SecretKey()))
		}
	})

	t.Run("cancel pg_sleep", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		done := make(chan error, 1)
		go func() {
			done <- pc.ExecParams(ctx, "select pg_sleep(60)", nil, nil, nil, nil).Read().Err
		}()
		// Wait until the backend is really sleeping: a cancel that
		// arrives before the query starts cancels nothing.
		waitFor(t, ctx, w, fmt.Sprintf("select 1 from pg_stat_activity where pid = %d and state = 'active' and query like 'select pg_sleep%%'", pc.PID()))
		began := time.Now()
		if err := pc.CancelRequest(ctx); err != nil {
			t.Fatalf("CancelRequest: %v", err)
		}
		err = <-done
		pgErr, ok := errors.AsType[*pgconn.PgError](err)
		if !ok || pgErr.Code != "57014" {
			t.Fatalf("query ended with %v, want 57014 canceling statement due to user request", err)
		}
		t.Logf("cancel took %v", time.Since(began))
		// The session survives a cancel.
		if res := pc.ExecParams(ctx, "select 1", nil, nil, nil, nil).Read(); res.Err != nil {
			t.Fatalf("session unusable after cancel: %v", res.Err)
		}
	})

	t.Run("forged cancel is ignored", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		// The backend's own key never reached the client, so a cancel
		// with a wrong key for the right pid must do nothing.
		forged, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		defer forged.Close(ctx)
		res := pc.ExecParams(ctx, "select pg_sleep(0.5)", nil, nil, nil, nil)
		if err := sendCancel(ctx, w.addr, pc.PID(), []byte{1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
		if r := res.Read(); r.Err != nil {
			t.Fatalf("query was cancelled by a forged key: %v", r.Err)
		}
	})

	t.Run("copy out and in", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		var out bytes.Buffer
		tag, err := pc.CopyTo(ctx, &out, "COPY (select i, repeat('x', 1000) from generate_series(1, 5000) i) TO STDOUT")
		if err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() != 5000 || out.Len() < 5_000_000 {
			t.Fatalf("COPY TO: %d rows, %d bytes", tag.RowsAffected(), out.Len())
		}
		if err := pc.Exec(ctx, "CREATE TABLE t (i int, s text)").Close(); err != nil {
			t.Fatal(err)
		}
		n := out.Len()
		tag, err = pc.CopyFrom(ctx, io.NopCloser(&out), "COPY t FROM STDIN")
		if err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() != 5000 {
			t.Fatalf("COPY FROM: %d rows", tag.RowsAffected())
		}
		res := pc.ExecParams(ctx, "select count(*)::text, sum(length(s))::text from t", nil, nil, nil, nil).Read()
		if res.Err != nil || string(res.Rows[0][0]) != "5000" || string(res.Rows[0][1]) != "5000000" {
			t.Fatalf("table after COPY: %v %q", res.Err, res.Rows)
		}
		t.Logf("copied %d bytes out and back in", n)
	})
}

// waitFor polls PostgreSQL (directly, as superuser) until query returns a
// row, and returns its first column. Polling a condition, with a deadline,
// is not sleeping as synchronisation: it ends as soon as the state is
// reached.
func waitFor(t *testing.T, ctx context.Context, w *world, query string) string {
	t.Helper()
	for {
		rows, err := w.superuserRows(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 {
			return string(rows[0][0])
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %q: %v", query, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
