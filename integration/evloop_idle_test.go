package integration

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/config"
)

// TestRelayEngineIdle: idle sessions on the event loop hold no goroutine
// of their own (the goroutine relay holds three per session), and still
// count as running where the server counts sessions: Drain waits for
// them, Shutdown counts them as open connections and, once its context
// is cancelled, closes them and returns only after each session's end has
// run.
func TestRelayEngineIdle(t *testing.T) {
	const n = 30
	newWorld := func(t *testing.T) *world {
		w := newWorld(t, newPKI(t), worldOptions{hba: sessionHBA, ident: sessionIdent,
			extraTOML: "drain_delay = \"1ms\"\nshutdown_timeout = \"5m\""})
		w.setup(t, "CREATE ROLE alice LOGIN", "CREATE DATABASE app OWNER alice")
		return w
	}
	forEachRelayEngineWorld(t, newWorld, func(t *testing.T, w *world) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		alice := conn{user: "alice", database: "app", cert: "alice"}
		// One session first, so that the event loops, started with the
		// first session they relay, are counted in the baseline.
		pc, err := w.connect(ctx, proxy, alice)
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.Close(ctx); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the first connection's end", 20*time.Second, func() bool { return w.proxy.Connections() == 0 })
		base := runtime.NumGoroutine()

		var pcs []*pgconn.PgConn
		defer func() {
			for _, pc := range pcs {
				pc.Close(context.Background())
			}
		}()
		for range n {
			pc, err := w.connect(ctx, proxy, alice)
			if err != nil {
				t.Fatal(err)
			}
			pcs = append(pcs, pc)
		}
		waitSessions(t, w, n)
		engine := w.proxy.Config().Engine()
		if config.EventLoopEngine(engine) {
			// The connections' goroutines end after the loop takes
			// their sessions.
			waitUntil(t, fmt.Sprintf("fewer than %d goroutines more than the %d before %d idle sessions", n/10, base, n),
				20*time.Second, func() bool { return runtime.NumGoroutine() < base+n/10 })
		} else if g := runtime.NumGoroutine(); g < base+n {
			// The measurement's own check: the goroutine relay's
			// sessions are seen.
			t.Fatalf("%d goroutines with %d idle sessions on the goroutine relay, %d before: want at least one more per session", g, n, base)
		}
		t.Logf("%s: %d goroutines before, %d with %d idle sessions", engine, base, runtime.NumGoroutine(), n)

		drained := make(chan error, 1)
		dctx, stop := context.WithCancel(context.Background())
		defer stop()
		go func() { drained <- w.proxy.Drain(dctx) }()
		// Drain counts the sessions it waits for once it refuses new
		// ones, and says so.
		waitUntil(t, "Drain's count of the sessions it waits for (its refusal event)", 20*time.Second, func() bool { return logLine(w, "refusing new sessions") != "" })
		if _, err := w.connect(ctx, proxy, alice); !isCode(err, "57P03") {
			t.Fatalf("a new session during Drain: %v, want 57P03", err)
		}
		if want := fmt.Sprintf("sessions=%d ", n); !strings.Contains(logLine(w, "refusing new sessions"), want) {
			t.Fatalf("Drain's count: %q, want %s", logLine(w, "refusing new sessions"), want)
		}
		ended := strings.Count(w.logBuf.String(), "event=session_end")
		// One session ends; Drain waits for the others.
		if err := pcs[0].Close(ctx); err != nil {
			t.Fatal(err)
		}
		pcs = pcs[1:]
		waitUntil(t, "the closed session's end", 20*time.Second, func() bool { return w.proxy.Connections() == n-1 })
		select {
		case err := <-drained:
			t.Fatalf("Drain returned (%v) with %d sessions open", err, n-1)
		default:
		}
		// Cancelled, Drain closes what is left, through Shutdown.
		stop()
		select {
		case err := <-drained:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Drain still waiting 30 s after its context was cancelled")
		}
		if want := fmt.Sprintf("open_connections=%d", n-1); !strings.Contains(logLine(w, "stopped accepting connections"), want) {
			t.Fatalf("Shutdown's count: %q, want %s", logLine(w, "stopped accepting connections"), want)
		}
		// Every session's end ran before Shutdown returned.
		if got := strings.Count(w.logBuf.String(), "event=session_end") - ended; got != n {
			t.Fatalf("%d session_end events once Drain returned, want %d", got, n)
		}
		if c, s := w.proxy.Connections(), len(w.proxy.Sessions()); c != 0 || s != 0 {
			t.Fatalf("%d connections, %d sessions after Drain returned", c, s)
		}
	})
}

// isCode reports whether err is PostgreSQL's error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == code
}

// logLine is the proxy log's last line containing msg; "" when none does.
func logLine(w *world, msg string) string {
	lines := strings.Split(w.logBuf.String(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], msg) {
			return lines[i]
		}
	}
	return ""
}
