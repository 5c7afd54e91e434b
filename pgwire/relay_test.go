package pgwire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// batchConn holds the client's writes while batching, so that several TLS
// records reach the server in one segment, or one record in pieces.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

// flush writes what was held, cut at the given offsets.
func (b *batchConn) flush(t *testing.T, cuts ...int) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	buf := b.buf
	b.buf, b.batching = nil, false
	prev := 0
	for _, c := range append(cuts, len(buf)) {
		if c <= prev || c > len(buf) {
			continue
		}
		if _, err := b.Conn.Write(buf[prev:c]); err != nil {
			t.Fatal(err)
		}
		prev = c
	}
}

// TestRelayTLS drives the client copier (runTLS over transport) with TLS
// records that arrive one per segment, several per segment, split inside
// the 5-byte header and inside the body, and large enough to fill the
// copy buffer. Each step waits for its bytes on the far side before the
// next is sent, so a record left behind in crypto/tls (the copier waiting
// on an empty socket while a complete record sits unread) shows as a
// timeout rather than passing unnoticed.
func TestRelayTLS(t *testing.T) {
	forEachEngine(t, testRelayTLS)
}

func testRelayTLS(t *testing.T, engine string) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tlsVersionName(version), func(t *testing.T) {
			client, server, sink := tlsRelayPair(t, version)
			var in int64
			done := make(chan struct{})
			go func() {
				in, _, _, _ = relayOn(engine, server, nil, sink.w, nil, nil, nil)
				close(done)
			}()

			rng := rand.New(rand.NewPCG(1, 2))
			payload := func(n int) []byte {
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				return p
			}
			var sent []byte
			send := func(p []byte) {
				if _, err := client.tls.Write(p); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, p...)
			}
			step := func(name string, f func()) {
				f()
				sink.expect(t, name, sent)
			}
			step("one record", func() { send(payload(20)) })
			step("three records in one segment", func() {
				client.raw.batching = true
				send(payload(10))
				send(payload(300))
				send(payload(1))
				client.raw.flush(t)
			})
			for cut := 1; cut <= 6; cut++ {
				step("record split inside its header or body", func() {
					client.raw.batching = true
					send(payload(50))
					client.raw.flush(t, cut)
				})
			}
			step("two records, the second cut short", func() {
				client.raw.batching = true
				send(payload(40))
				send(payload(40))
				client.raw.flush(t, 60)
			})
			step("records larger than the copy buffer", func() { send(payload(100 << 10)) })
			step("many records in one segment", func() {
				client.raw.batching = true
				for range 40 {
					send(payload(rng.IntN(2000) + 1))
				}
				client.raw.flush(t)
			})
			for range 200 {
				step("random", func() {
					client.raw.batching = rng.IntN(2) == 0
					for range rng.IntN(4) + 1 {
						send(payload(rng.IntN(3000) + 1))
					}
					if client.raw.batching {
						client.raw.flush(t, rng.IntN(100))
					}
				})
			}
			// close_notify is a clean end.
			if err := client.tls.Close(); err != nil {
				t.Fatal(err)
			}
			waitDone(t, done, "relay after the client closed")
			if in != int64(len(sent)) {
				t.Errorf("relay counted %d bytes, sent %d", in, len(sent))
			}
		})
	}
}

type tlsClient struct {
	raw *batchConn
	tls *tls.Conn
}

// sink collects what the copier writes.
type sink struct {
	w   net.Conn
	mu  sync.Mutex
	got []byte
	ch  chan struct{}
}

func (s *sink) expect(t *testing.T, step string, want []byte) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.got)
		ok := bytes.Equal(s.got, want)
		s.mu.Unlock()
		if ok {
			return
		}
		if n >= len(want) {
			t.Fatalf("%s: sink got %d bytes that differ from the %d sent", step, n, len(want))
		}
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("%s: sink has %d of %d bytes after 10s", step, n, len(want))
		}
	}
}

// tlsRelayPair returns a TLS client, the server's *tls.Conn over a
// transport (as startTLS builds it), and a sink connected over TCP.
func tlsRelayPair(t *testing.T, version uint16) (*tlsClient, *tls.Conn, *sink) {
	t.Helper()
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "relay root"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dial := func() (net.Conn, net.Conn) {
		c, s := tcpPair(t)
		for _, x := range []net.Conn{c, s} {
			_ = x.SetDeadline(time.Now().Add(time.Minute))
		}
		return c, s
	}
	craw, sraw := dial()
	bc := &batchConn{Conn: craw}
	ctls := tls.Client(bc, &tls.Config{ServerName: "localhost", RootCAs: ca.Pool(), MinVersion: version, MaxVersion: version})
	stls := tls.Server(newTransport(sraw, nil), &tls.Config{Certificates: []tls.Certificate{srv.TLSCertificate()}})
	errc := make(chan error, 1)
	go func() { errc <- stls.Handshake() }()
	if err := ctls.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// The relay runs without deadlines on the client side.
	_ = sraw.SetDeadline(time.Time{})

	w, r := dial()
	s := &sink{w: w, ch: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			s.mu.Lock()
			s.got = append(s.got, buf[:n]...)
			s.mu.Unlock()
			select {
			case s.ch <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return &tlsClient{raw: bc, tls: ctls}, stls, s
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []net.Conn{c, s} {
		t.Cleanup(func() { x.Close() })
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// waitDone fails the test if ch is not closed within 10 s.
func waitDone(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still running after 10 s", what)
	}
}

// TestRelayEOFBehindData: data and the peer's FIN that arrive together
// (already queued when the copier starts, so the poller has a single
// readiness for both) must end the copier after the data is forwarded.
// A copier that waited after a short read instead of reading on to
// EAGAIN would wait forever for an EOF already there.
func TestRelayEOFBehindData(t *testing.T) {
	forEachEngine(t, testRelayEOFBehindData)
}

func testRelayEOFBehindData(t *testing.T, engine string) {
	t.Run("raw", func(t *testing.T) {
		peer, src := tcpPair(t)
		sinkW, sinkR := tcpPair(t)
		if _, err := peer.Write([]byte("last words")); err != nil {
			t.Fatal(err)
		}
		if err := peer.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { relayOn(engine, src, nil, sinkW, nil, nil, nil); close(done) }()
		waitDone(t, done, "relay after data and FIN")
		_ = sinkR.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(sinkR)
		if string(got) != "last words" || err != nil {
			t.Fatalf("forwarded %q, err %v", got, err)
		}
	})
	t.Run("TLS without close_notify", func(t *testing.T) {
		client, server, sink := tlsRelayPair(t, tls.VersionTLS13)
		if _, err := client.tls.Write([]byte("last words")); err != nil {
			t.Fatal(err)
		}
		// The client vanishes without close_notify: FIN right behind
		// the record.
		if err := client.raw.Conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { relayOn(engine, server, nil, sink.w, nil, nil, nil); close(done) }()
		waitDone(t, done, "relay after a record and FIN")
		sink.expect(t, "forwarded", []byte("last words"))
	})
	t.Run("backend's last words to a TLS client", func(t *testing.T) {
		// A backend's FATAL and its close arrive together; the client
		// must get the message, then the end.
		client, server, _ := tlsRelayPair(t, tls.VersionTLS13)
		backend, backendPeer := tcpPair(t)
		msg := bytes.Repeat([]byte("fatal "), 10000)
		if _, err := backendPeer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if err := backendPeer.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { relayOn(engine, server, nil, backend, nil, nil, nil); close(done) }()
		_ = client.raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(client.tls)
		if !bytes.Equal(got, msg) || err != nil {
			t.Fatalf("client got %d of %d bytes, err %v", len(got), len(msg), err)
		}
		waitDone(t, done, "relay after the backend's close")
	})
}

// TestRelayCloseWhileBlocked: the client stops reading and goes away
// while the client->backend copier is blocked writing to a backend that
// does not read either (a pipelining client killed mid-result). relay
// must still close both sides and return: closing the client socket waits
// for anyone holding its read lock, so no copier may write while holding
// it.
func TestRelayCloseWhileBlocked(t *testing.T) {
	forEachEngine(t, testRelayCloseWhileBlocked)
}

func testRelayCloseWhileBlocked(t *testing.T, engine string) {
	clientPeer, client := tcpPair(t)
	// The backend over a Unix socket pair with a small send buffer: the
	// copier's write blocks while the client's bytes are still queued
	// behind it.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ends [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "backend")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ends[i] = c
	}
	backend, backendPeer := ends[0].(*net.UnixConn), ends[1].(*net.UnixConn)
	if err := backend.SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	// The backend sends without end and reads nothing.
	go func() {
		junk := make([]byte, 64<<10)
		for {
			if _, err := backendPeer.Write(junk); err != nil {
				return
			}
		}
	}()
	// The client sends until every buffer on the way to the backend is
	// full, so the client->backend copier sits blocked in its write.
	junk := make([]byte, 64<<10)
	for {
		_ = clientPeer.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := clientPeer.Write(junk); err != nil {
			break
		}
	}
	done := make(chan struct{})
	go func() {
		// relay runs only now, on the filled buffers: the copier reads,
		// then blocks writing to the backend.
		relayOn(engine, client, nil, backend, nil, nil, nil)
		close(done)
	}()
	// Wait until bytes reach the backend's peer: the copier's 32 KiB
	// write has begun and, with a 4 KiB buffer, cannot finish.
	waitFor(t, "the copier's write to the backend", func() bool { return queued(t, backendPeer) > 0 })
	// The client goes away with unread data: its socket resets, and the
	// backend->client copier's next write fails first.
	_ = clientPeer.SetLinger(0)
	clientPeer.Close()
	waitDone(t, done, "relay after the client reset")
	backendPeer.Close()
}

// queued is how many bytes wait in c's receive queue (FIONREAD).
func queued(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil {
		t.Fatal(err)
	}
	if errno != 0 {
		t.Fatal(errno)
	}
	return int(n)
}

// waitFor polls cond for up to 10 s: the condition is kernel state no
// event announces.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEndSessionStoppedAfterTerminate: a stop that races the client's
// Terminate (the relay judged the backend reusable, but the stop was
// accepted before the relay could refuse it) must neither keep the backend
// nor cancel its pid: the cancel would reach whichever session the
// backend served next. The backend is terminated instead.
func TestEndSessionStoppedAfterTerminate(t *testing.T) {
	e := newRevsessEnv(t, "terminate")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cancels := make(chan int, 1)
	go func() {
		n := 0
		for {
			c, err := ln.Accept()
			if err != nil {
				cancels <- n
				return
			}
			n++
			c.Close()
		}
	}()
	backend, backendPeer := tcpPair(t)
	c := &clientConn{srv: e.srv, state: e.srv.state.Load(), id: 7, user: "alice", database: "db"}
	s := &session{backend: backend, cancel: &cancelTarget{pid: 4242, clientKey: []byte("client key"), backendKey: []byte("backend key"), network: "tcp", address: ln.Addr().String()}}
	e.srv.cancels.add(s.cancel)
	ctl := newSessionControl(backend)
	live := c.startLive(s, ctl)
	if !ctl.stop(adminTerminated()) {
		t.Fatal("stop refused")
	}
	c.endSession(context.Background(), s, newSessionTracker(nil), ctl, live, time.Now(), relayResult{keep: true, kept: backend})
	ln.Close()
	if n := <-cancels; n != 0 {
		t.Errorf("%d cancel requests went to the backend's pid", n)
	}
	_ = backendPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(backendPeer)
	if err != nil || !bytes.Equal(got, []byte{'X', 0, 0, 0, 4}) {
		t.Errorf("backend got %q, %v; want Terminate, then EOF", got, err)
	}
}
