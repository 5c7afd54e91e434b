package pgwire

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// drainTestServer is a testServer with drain_delay set, whose log
// messages arrive on logs. Its backend is unreachable: a startup packet
// that gets past the drain meets pg_hba.conf's reject of plaintext.
func drainTestServer(t *testing.T) (ts *testServer, logs <-chan string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "unit root"})
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]struct {
		data []byte
		mode os.FileMode
	}{
		"server.crt":  {srvLeaf.CertPEM, 0o644},
		"server.key":  {srvLeaf.KeyPEM, 0o600},
		"root.crt":    {ca.CertPEM, 0o644},
		"pg_hba.conf": {[]byte("hostssl all all all cert\nhostnossl all all all reject\n"), 0o644},
		"pgcertgate.toml": {[]byte(`hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
authentication_timeout = "5s"
drain_delay = "1h"
shutdown_timeout = "1h"
[backend]
dsn = "host=127.0.0.1 port=1 sslmode=disable"
connect_timeout = "2s"
`), 0o644},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := config.Load(filepath.Join(dir, "pgcertgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1000)
	srv := New(Options{Runtime: rt, Logger: slog.New(messageHandler{ch})})
	return &testServer{srv: srv, ca: ca, roots: ca.Pool()}, ch
}

// messageHandler sends each log record's message on a channel, dropping
// it when the channel is full.
type messageHandler struct{ ch chan<- string }

func (h messageHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h messageHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h messageHandler) WithGroup(string) slog.Handler            { return h }
func (h messageHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r.Message:
	default:
	}
	return nil
}

// waitMessage reads logs until msg, failing after 10s.
func waitMessage(t *testing.T, logs <-chan string, msg string) {
	t.Helper()
	limit := time.After(10 * time.Second)
	for {
		select {
		case m := <-logs:
			if m == msg {
				return
			}
		case <-limit:
			t.Fatalf("no log message %q", msg)
		}
	}
}

// startupOutcome sends a plaintext StartupMessage over a connection the
// server handles and returns the error it answers.
func startupOutcome(t *testing.T, ts *testServer) *pgproto3.ErrorResponse {
	t.Helper()
	c := ts.dial(t)
	if _, err := c.Write(startupMsg(3<<16, "user", "alice")); err != nil {
		t.Fatal(err)
	}
	return readError(t, c)
}

// cancelOverTCP sends an unknown CancelRequest to addr and waits for the
// server to close, which shows the listener accepted and served it.
func cancelOverTCP(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("the listener refused a cancel: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf, err := (&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after a cancel: read %d, %v; want the server to close", n, err)
	}
}

// TestDrainSequence: SIGTERM's drain, step by step, with drain_delay
// ended by the test: readiness fails at once; during drain_delay new
// sessions are still accepted; after it they are refused with 57P03 while
// the listener stays open for cancels; the listener closes, and Drain
// returns, once the last session ends.
func TestDrainSequence(t *testing.T) {
	ts, logs := drainTestServer(t)
	s := ts.srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	drained := make(chan error, 1)
	started := false
	t.Cleanup(func() {
		if !started {
			s.Close()
			<-served
		}
	})
	// Once a connection has been served, Serve has registered ln.
	cancelOverTCP(t, ln.Addr().String())
	if !s.Serving() {
		t.Fatal("not serving before the drain")
	}

	inDelay, endDelay := make(chan time.Duration, 1), make(chan struct{})
	s.drain.delay = func(ctx context.Context, d time.Duration) {
		inDelay <- d
		select {
		case <-endDelay:
		case <-ctx.Done():
		}
	}
	// A session open across the drain, as the slot it holds.
	if err := s.admitSession(); err != nil {
		t.Fatal(err)
	}
	started = true
	go func() { drained <- s.Drain(context.Background()) }()
	select {
	case d := <-inDelay:
		if d != time.Hour {
			t.Errorf("drain_delay waited %v, want 1h", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain never waited for drain_delay")
	}

	// Within drain_delay.
	if s.Serving() {
		t.Error("Serving (readiness) still true once Drain has begun")
	}
	if e := startupOutcome(t, ts); e.Code != "28000" {
		t.Errorf("a startup during drain_delay: %s %s, want it past the drain (28000 from pg_hba.conf)", e.Code, e.Message)
	}

	close(endDelay)
	waitMessage(t, logs, "refusing new sessions; cancel requests are still served until the open sessions end")

	// After drain_delay, with a session open.
	if e := startupOutcome(t, ts); e.Code != "57P03" || e.Message != "the database system is shutting down" || e.Severity != "FATAL" {
		t.Errorf("a startup after drain_delay: %s %s %s, want FATAL 57P03 the database system is shutting down", e.Severity, e.Code, e.Message)
	}
	if err := s.admitSession(); err == nil || len(s.sessionSlots) != 1 {
		t.Errorf("admitSession after drain_delay: %v with %d slots in use, want 57P03 and the 1 open session's", err, len(s.sessionSlots))
	}
	cancelOverTCP(t, ln.Addr().String())
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a session open", err)
	case err := <-served:
		t.Fatalf("the listener closed (%v) with a session open", err)
	default:
	}

	// The last session ends.
	s.releaseSession()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return once the last session ended")
	}
	<-served
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after the drain")
	}
}

// TestDrainAdmitRace: Drain starts refusing between a new session's
// max_connections slot and its test of the drain. The session must then
// be refused, or counted by Drain as one to wait for: never admitted
// uncounted, which would let Drain close the listener, where the
// session's cancels arrive, while it runs.
func TestDrainAdmitRace(t *testing.T) {
	ts, _ := drainTestServer(t)
	s := ts.srv
	t.Cleanup(func() { s.Close() })
	counted := -1
	s.drain.slotTaken = func() { counted = s.startRefusing() }
	err := s.admitSession()
	if err == nil && counted == 0 {
		t.Fatal("a session was admitted that the refusing Drain did not count")
	}
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) || pe.Message != "the database system is shutting down" {
			t.Fatalf("refused with %v, want 57P03", err)
		}
		if n := len(s.sessionSlots); n != 0 {
			t.Fatalf("the refused session left %d slots taken", n)
		}
	}
}
