package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/config"
)

// relayEngines are the relay engines the relay tests run under, one
// subtest each.
var relayEngines = []string{config.RelayGoroutine, config.RelayEventLoop, config.RelayIOUring}

var relayEngineLine = regexp.MustCompile(`(?m)^relay_engine = .*\n`)

// setRelayEngine rewrites relay_engine in the proxy's configuration and
// reloads it: sessions started from now on use engine.
func (w *world) setRelayEngine(t *testing.T, engine string) {
	t.Helper()
	b, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// A top-level key: it goes before the first table.
	w.writeFile("pgcertgate.toml", fmt.Sprintf("relay_engine = %q\n", engine)+relayEngineLine.ReplaceAllString(string(b), ""))
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w.proxy.Reload(rt)
}

// forEachRelayEngine runs f once per relay engine on the same world.
func forEachRelayEngine(t *testing.T, w *world, f func(t *testing.T)) {
	t.Helper()
	for _, e := range relayEngines {
		t.Run(e, func(t *testing.T) {
			w.setRelayEngine(t, e)
			f(t)
		})
	}
}

// forEachRelayEngineWorld runs f once per relay engine, each on a world
// of its own, for tests that leave state behind in the cluster.
func forEachRelayEngineWorld(t *testing.T, newWorld func(t *testing.T) *world, f func(t *testing.T, w *world)) {
	t.Helper()
	for _, e := range relayEngines {
		t.Run(e, func(t *testing.T) {
			w := newWorld(t)
			w.setRelayEngine(t, e)
			f(t, w)
		})
	}
}

// TestRelayEngineControl: on every engine a running session is ended by
// the admin API's Terminate (FATAL 57P01, while the backend is busy), a
// client's clean exit keeps the backend for the next client under reuse,
// and a fast shutdown closes a session whose client stopped reading in
// the middle of a large result.
func TestRelayEngineControl(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: sessionHBA, ident: sessionIdent, backendTOML: "reuse = true"})
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE DATABASE app OWNER alice")
	forEachRelayEngine(t, w, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		t.Run("terminate", func(t *testing.T) {
			pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close(context.Background())
			res := make(chan error, 1)
			go func() { _, err := pc.Exec(ctx, "select pg_sleep(30)").ReadAll(); res <- err }()
			// Busy, as the test says: PostgreSQL drops a cancel that
			// reaches a backend before it has started the query, and the
			// query would then run on after the session's end.
			waitFor(t, ctx, w, fmt.Sprintf("select 1 from pg_stat_activity where pid = %d and state = 'active' and query like 'select pg_sleep%%'", pc.PID()))
			var id uint64
			for deadline := time.Now().Add(10 * time.Second); id == 0; {
				for _, s := range w.proxy.Sessions() {
					if s.BackendPID == pc.PID() {
						id = s.ID
					}
				}
				if time.Now().After(deadline) {
					t.Fatal("session not listed")
				}
			}
			if err := w.proxy.Terminate(id); err != nil {
				t.Fatal(err)
			}
			err = <-res
			var pg *pgconn.PgError
			if !errors.As(err, &pg) || pg.Code != "57P01" {
				t.Fatalf("query ended with %v, want 57P01", err)
			}
			// A backend interrupted mid-query is not kept: it must go
			// away, and before the next subtest counts alice's backends.
			w.waitValue(t, "app", fmt.Sprintf("select count(*) from pg_stat_activity where pid = %d", pc.PID()), "0", 10*time.Second)
		})
		t.Run("reuse after Terminate", func(t *testing.T) {
			var pids []uint32
			for range 2 {
				pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
				if err != nil {
					t.Fatal(err)
				}
				res, err := pc.Exec(ctx, "select pg_backend_pid()").ReadAll()
				if err != nil {
					t.Fatal(err)
				}
				pids = append(pids, pc.PID())
				_ = res
				if err := pc.Close(ctx); err != nil {
					t.Fatal(err)
				}
				// The backend goes back to the pool after the session has
				// left the list of sessions: wait for the pool to hold it
				// before the next client asks.
				waitSessions(t, w, 0)
				waitUntil(t, "the backend kept in the pool", 10*time.Second, func() bool { return w.proxy.IdleBackends() == 1 })
			}
			rows, err := w.superuserRows(ctx, "select count(*) from pg_stat_activity where usename = 'alice'")
			if err != nil {
				t.Fatal(err)
			}
			if string(rows[0][0]) != "1" || pids[0] != pids[1] {
				t.Errorf("%s backends for alice after two clients in turn with reuse (pids %v), want 1", rows[0][0], pids)
			}
		})
		t.Run("copy out, large", func(t *testing.T) {
			pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close(context.Background())
			var sb strings.Builder
			tag, err := pc.CopyTo(ctx, &sb, "COPY (select g, md5(g::text) from generate_series(1, 200000) g) TO STDOUT")
			if err != nil {
				t.Fatal(err)
			}
			res, err := pc.Exec(ctx, "select sum(length(g::text || E'\\t' || md5(g::text) || E'\\n')) from generate_series(1, 200000) g").ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if tag.RowsAffected() != 200000 || fmt.Sprint(sb.Len()) != string(res[0].Rows[0][0]) {
				t.Fatalf("copied %d rows, %d bytes; the server counts %s", tag.RowsAffected(), sb.Len(), res[0].Rows[0][0])
			}
		})
	})
}

// TestRelayEngineCloseWhileBlocked: the server's Close ends a session
// whose client asked for a large result and stopped reading, on each kind
// of event loop (the goroutine relay's case is every other test's
// cleanup).
func TestRelayEngineCloseWhileBlocked(t *testing.T) {
	for _, e := range []string{config.RelayEventLoop, config.RelayIOUring} {
		t.Run(e, func(t *testing.T) { testCloseWhileBlocked(t, e) })
	}
}

func testCloseWhileBlocked(t *testing.T, engine string) {
	w := sessionWorld(t)
	w.setRelayEngine(t, engine)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Conn().Close()
	// The query is sent, its result never read.
	if _, err := pc.Conn().Write(simpleQuery("select repeat('x', 1000000) from generate_series(1, 200)")); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, w, 1)
	closed := make(chan error, 1)
	go func() { closed <- w.proxy.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close still waiting after 20 s")
	}
}

func simpleQuery(q string) []byte {
	n := 4 + len(q) + 1
	return append([]byte{'Q', byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, append([]byte(q), 0)...)
}

// waitSessions waits until the proxy relays n sessions.
func waitSessions(t *testing.T, w *world, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(w.proxy.Sessions()) != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", len(w.proxy.Sessions()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
