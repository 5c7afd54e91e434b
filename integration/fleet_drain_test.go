package integration

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestDrainInFleet: SIGTERM's drain of one replica among two. /readyz
// fails at once while new sessions are still accepted for drain_delay;
// then new sessions get PostgreSQL's 57P03, while a cancel for the
// draining replica's session is still delivered, straight or forwarded
// by the other replica, and one for the other replica's session sent to
// the draining one is still forwarded; the listener closes once the last
// of its sessions ends.
func TestDrainInFleet(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{
		hba: "local all all trust\nhostssl all alice 127.0.0.0/8 cert\n",
		// 3s: long enough that a login on two shared cores fits in it.
		extraTOML: "proxy_protocol = \"on\"\nproxy_protocol_trusted = [\"127.0.0.1/32\"]\ndrain_delay = \"3s\"\nshutdown_timeout = \"60s\"",
	})
	w.setup(t, "CREATE ROLE alice LOGIN")
	reps := startReplicas(t, w, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := conn{user: "alice", cert: "alice"}
	// From 127.0.0.3, which is not in proxy_protocol_trusted: served
	// without a header.
	dial := func(r *clusterReplica) (*pgconn.PgConn, error) {
		return viaBalancer(ctx, t, w, r.addr, "127.0.0.3", alice)
	}
	// Two sessions on the replica that drains, one on its peer.
	held := make([]*pgconn.PgConn, 3)
	for i := range held {
		pc, err := dial(reps[min(i/2, 1)])
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		held[i] = pc
	}
	if code, _ := opsGet(t, reps[0].adminURL+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz before the drain: %d", code)
	}
	// A login prepared up to its StartupMessage, TLS and the client
	// certificate done: what is left (the startup packet, the drain's
	// admission) takes the replica moments, so sent within drain_delay
	// it is admitted however slowly this machine ran the handshake.
	early := preparedLogin(ctx, t, w, reps[0].addr, "127.0.0.3", alice)
	defer early.Close()

	drained := make(chan error, 1)
	began := time.Now()
	go func() { drained <- reps[0].srv.Drain(context.Background()) }()
	fleetWait(t, 10*time.Second, "readyz to fail", func() bool {
		code, _ := opsGet(t, reps[0].adminURL+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if code, body := opsGet(t, reps[0].adminURL+"/readyz"); !strings.Contains(body, "not accepting connections") {
		t.Errorf("readyz while draining: %d %q", code, body)
	}

	t.Run("accepted during drain_delay", func(t *testing.T) {
		fe := pgproto3.NewFrontend(early, early)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": "postgres"}})
		sent := time.Since(began)
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		readyFor := func(what string) {
			t.Helper()
			for {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatalf("%s, startup sent %v into the drain: %v", what, sent, err)
				}
				switch m := msg.(type) {
				case *pgproto3.ErrorResponse:
					t.Fatalf("%s, startup sent %v into the drain (drain_delay 3s): %s %s %s", what, sent, m.Severity, m.Code, m.Message)
				case *pgproto3.ReadyForQuery:
					return
				}
			}
		}
		readyFor("login")
		fe.Send(&pgproto3.Query{String: "SELECT 1"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		readyFor("SELECT 1")
		fe.Send(&pgproto3.Terminate{})
		_ = fe.Flush()
		early.Close()
	})

	t.Run("refused with 57P03 after drain_delay", func(t *testing.T) {
		var got outcome
		fleetWait(t, 20*time.Second, "a login to be refused", func() bool {
			pc, err := dial(reps[0])
			if err == nil {
				pc.Close(ctx)
				return false
			}
			got = classify(err)
			return true
		})
		if took := time.Since(began); took < 3*time.Second {
			t.Errorf("refused %v after the drain began, before drain_delay (3s)", took)
		}
		if want := "FATAL 57P03 the database system is shutting down"; got.String() != want {
			t.Fatalf("got %s (%s)\nwant %s", got, got.raw, want)
		}
	})

	t.Run("cancel still delivered and forwarded", func(t *testing.T) {
		// held[0] cancelled at the draining replica itself, held[1]
		// forwarded to it by its peer, held[2] (on the peer) forwarded
		// by the draining replica.
		for i, via := range []*clusterReplica{reps[0], reps[1], reps[0]} {
			pc := held[i]
			res := pc.Exec(ctx, "SELECT pg_sleep(30)")
			fleetWait(t, 20*time.Second, "pg_sleep to run", func() bool {
				rows, err := w.superuserRows(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
				return err == nil && string(rows[0][0]) == "1"
			})
			// A plain CancelRequest from an untrusted source: at
			// reps[1] it is forwarded to the draining replica.
			buf, err := (&pgproto3.CancelRequest{ProcessID: pc.PID(), SecretKey: pc.SecretKey()}).Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			rawExchange(t, via.addr, "127.0.0.2", buf)
			_, err = res.ReadAll()
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
				t.Fatalf("session %d: query ended with %v, want 57014", i, err)
			}
			opsExec(t, ctx, pc, "SELECT 1")
		}
	})

	t.Run("listener closes once the sessions end", func(t *testing.T) {
		select {
		case err := <-drained:
			t.Fatalf("Drain returned %v with sessions open", err)
		default:
		}
		for _, pc := range held[:2] {
			pc.Close(ctx)
		}
		select {
		case err := <-drained:
			if err != nil {
				t.Fatalf("Drain: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Drain did not return once the sessions ended")
		}
		c, err := net.DialTimeout("tcp", reps[0].addr, 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatal("the drained replica still accepts connections")
		}
	})
}

// preparedLogin connects to a proxy at addr from src as c, and takes the
// connection up to where its StartupMessage is due: SSLRequest, then the
// TLS handshake with c's client certificate.
func preparedLogin(ctx context.Context, t *testing.T, w *world, addr, src string, c conn) *tls.Conn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(w.conninfo(proxy, c))
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 20 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(time.Minute))
	if _, err := raw.Write(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, 80877103)); err != nil {
		raw.Close()
		t.Fatal(err)
	}
	var s [1]byte
	if _, err := io.ReadFull(raw, s[:]); err != nil || s[0] != 'S' {
		raw.Close()
		t.Fatalf("SSLRequest answered %q, %v", s, err)
	}
	tc := tls.Client(raw, cfg.TLSConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		t.Fatal(err)
	}
	return tc
}

// fleetWait polls cond every 50ms until it holds, failing after limit.
func fleetWait(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		<-tick.C
	}
}
