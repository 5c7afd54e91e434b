package pgwire

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/uring"
)

// overSides lists, loop by loop, the sides a loop still holds of sessions
// that have ended. It asks each loop on its own thread, after everything
// posted to it so far.
func overSides(t *testing.T) int {
	t.Helper()
	n := 0
	for _, l := range append(evLoops.epoll.loops[:len(evLoops.epoll.loops):len(evLoops.epoll.loops)], evLoops.onRing.loops...) {
		ch := make(chan int, 1)
		l.post(nil, func() {
			k := 0
			for _, s := range l.sides {
				if s.s.over {
					k++
				}
			}
			ch <- k
		})
		select {
		case k := <-ch:
			n += k
		case <-time.After(10 * time.Second):
			t.Fatal("an event loop did not answer in 10 s")
		}
	}
	return n
}

// TestEvloopStopBeforeStart: a stop that comes while the session is
// joining its loop, as soon as the stop can reach the loop, must run after
// the session's start. Run before it, the session ended, its ending
// goroutine closed the descriptors, and start then registered them in the
// loop, which held them (and would read and write them) for ever after.
func TestEvloopStopBeforeStart(t *testing.T) {
	forEachLoop(t, func(t *testing.T, engine string) {
		testEvloopStopBeforeStart(t, engine)
	})
}

// forEachLoop runs f once per kind of event loop.
func forEachLoop(t *testing.T, f func(t *testing.T, engine string)) {
	for _, e := range []string{config.RelayEventLoop, config.RelayIOUring} {
		t.Run(e, func(t *testing.T) { f(t, e) })
	}
}

func testEvloopStopBeforeStart(t *testing.T, engine string) {
	const rounds = 1000
	for i := range rounds {
		clientPeer, client := tcpPair(t)
		backend, _ := tcpPair(t)
		ctl := newSessionControl(backend)
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			// Stop the moment the loop can be told: spin until the wake
			// is there, then do what stop does, under the same lock.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				ctl.mu.Lock()
				if ctl.wake != nil {
					ctl.err = adminTerminated()
					ctl.requested.Store(true)
					ctl.wake()
					ctl.mu.Unlock()
					return
				}
				ctl.mu.Unlock()
			}
		}()
		done := make(chan struct{})
		go func() { relayOn(engine, client, nil, backend, nil, ctl, nil); close(done) }()
		waitDone(t, stopped, "the stop")
		waitDone(t, done, "relay after the stop")
		_ = clientPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(clientPeer)
		if err != nil || len(got) == 0 || got[0] != 'E' {
			t.Fatalf("round %d: client got %q, %v; want the stop's ErrorResponse", i, got, err)
		}
		if n := overSides(t); n != 0 {
			t.Fatalf("round %d: the loops hold %d sides of ended sessions", i, n)
		}
	}
}

// evTestSession is a session relayed by an event loop, with an echoing
// backend.
type evTestSession struct {
	peer  net.Conn
	stand *evBackend
	done  chan struct{}
}

func startEvTestSession(t *testing.T, engine string) *evTestSession {
	t.Helper()
	clientPeer, client := tcpPair(t)
	backend, backendPeer := tcpPair(t)
	echoBackend(t, backendPeer)
	stand := make(chan *evBackend, 1)
	s := &evTestSession{peer: clientPeer, done: make(chan struct{})}
	go func() {
		relayOn(engine, client, nil, backend, nil, nil, func(b net.Conn) { stand <- b.(*evBackend) })
		close(s.done)
	}()
	select {
	case s.stand = <-stand:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not join an event loop")
	}
	t.Cleanup(func() { clientPeer.Close(); <-s.done })
	return s
}

func (s *evTestSession) echo(t *testing.T, msg string) {
	t.Helper()
	_ = s.peer.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.peer.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s.peer, got); err != nil || string(got) != msg {
		t.Fatalf("echo: got %q, %v", got, err)
	}
}

// TestEvloopPanicEndsOneSession: a panic on a loop's thread, while it
// works for one session, ends that session alone: the loop's other
// sessions carry on, and so does the rest of its queue.
func TestEvloopPanicEndsOneSession(t *testing.T) {
	forEachLoop(t, testEvloopPanicEndsOneSession)
}

func testEvloopPanicEndsOneSession(t *testing.T, engine string) {
	a := startEvTestSession(t, engine)
	a.echo(t, "before")
	var b *evTestSession
	for range len(evLoops.epoll.loops) + len(evLoops.onRing.loops) + 1 {
		s := startEvTestSession(t, engine)
		if s.stand.loop == a.stand.loop {
			b = s
			break
		}
	}
	if b == nil {
		t.Fatal("no second session on the first one's loop")
	}
	b.echo(t, "b")
	l := a.stand.loop
	after := make(chan struct{})
	l.post(b.stand.sess, func() { panic("a bug in the loop") })
	l.post(nil, func() { close(after) })
	waitDone(t, b.done, "the session whose work panicked")
	waitDone(t, after, "the work queued behind the panic")
	_ = b.peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := b.peer.Read(make([]byte, 1)); err == nil {
		t.Error("the panicking session's client can still read")
	}
	a.echo(t, "after")
}

// TestEvloopEndingPanic: a panic in a session's end, on its ending
// goroutine, still closes both sockets and calls done, which Shutdown
// waits for.
func TestEvloopEndingPanic(t *testing.T) {
	var fds [2][2]int
	for i := range fds {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = p
		t.Cleanup(func() { unix.Close(p[1]) })
	}
	sess := &evSession{up: &copier{}, down: &copier{}}
	sess.client = evSide{s: sess, fd: fds[0][0], peer: &sess.backend, from: sess.up}
	sess.backend = evSide{s: sess, fd: fds[1][0], peer: &sess.client, from: sess.down}
	// No stand-in: the end trips over it, as it would over any bug.
	ended := make(chan relayResult, 1)
	sess.done = func(r relayResult) { ended <- r }
	go sess.ending()
	var r relayResult
	select {
	case r = <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("done not called after a panic in the session's end")
	}
	if r.keep {
		t.Error("the backend kept after a panic")
	}
	if !sess.client.closed || !sess.backend.closed {
		t.Errorf("closed: client %v, backend %v; want both", sess.client.closed, sess.backend.closed)
	}
	for i, p := range fds {
		if n, err := unix.Read(p[1], make([]byte, 1)); n != 0 || err != nil {
			t.Errorf("socket %d: peer read %d, %v; want EOF", i, n, err)
		}
	}
}

// TestEvloopFullSideNotRead: a side with more than a buffer's worth of its
// own output waiting is not read, and not watched for input, until that
// drains: reading a TLS client can queue output to it (a KeyUpdate's
// answer), and a client that never reads would otherwise grow its buffer
// without bound.
func TestEvloopFullSideNotRead(t *testing.T) {
	l, err := newEvLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(l.epfd); unix.Close(l.wakefd) })
	pair := func() (int, int) {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
		return p[0], p[1]
	}
	cfd, cpeer := pair()
	bfd, bpeer := pair()
	sess := &evSession{loop: l, up: &copier{}, down: &copier{}}
	sess.client = evSide{s: sess, id: 1, fd: cfd, peer: &sess.backend, from: sess.up}
	sess.backend = evSide{s: sess, id: 2, fd: bfd, peer: &sess.client, from: sess.down}
	l.sides[1], l.sides[2] = &sess.client, &sess.backend

	if _, err := unix.Write(cpeer, []byte("data")); err != nil {
		t.Fatal(err)
	}
	sess.client.queue(make([]byte, evOutCap+1))
	l.readSide(&sess.client)
	if n, err := unix.Read(bpeer, make([]byte, 16)); n > 0 || !errors.Is(err, unix.EAGAIN) {
		t.Errorf("the full client was read: the backend got %d bytes, %v", n, err)
	}
	l.update(sess)
	if m := sess.client.mask; m&unix.EPOLLIN != 0 || m&unix.EPOLLOUT == 0 {
		t.Errorf("full client's interest %#x: want EPOLLOUT without EPOLLIN", m)
	}

	// One read's worth from the backend, sealed, is below the threshold:
	// a client writing while its notices wait is still read.
	sess.client.dropPending()
	sess.client.queue(make([]byte, evOutCap-1024))
	l.readSide(&sess.client)
	got := make([]byte, 16)
	var n int
	waitFor(t, "the client's bytes at the backend", func() bool {
		n, _ = unix.Read(bpeer, got)
		return n > 0
	})
	if !bytes.Equal(got[:n], []byte("data")) {
		t.Errorf("backend got %q", got[:n])
	}
	l.update(sess)
	if m := sess.client.mask; m&unix.EPOLLIN == 0 {
		t.Errorf("client's interest %#x below the threshold: want EPOLLIN", m)
	}
}

// TestRelayTLSBadRecordAlert: a client record that fails to decrypt ends
// the session with crypto/tls's alert, even while the backend's bytes
// still wait for the client ahead of it: the client reads them, then
// learns why the session ended.
func TestRelayTLSBadRecordAlert(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		client, server, _ := tlsRelayPair(t, tls.VersionTLS13)
		backend, backendPeer := tcpPair(t)
		stand := make(chan net.Conn, 1)
		done := make(chan struct{})
		go func() { relayOn(engine, server, nil, backend, nil, nil, func(b net.Conn) { stand <- b }); close(done) }()
		// The backend sends more than every buffer on the way holds,
		// while the client reads nothing.
		flood := make(chan struct{})
		go func() {
			defer close(flood)
			buf := make([]byte, 64<<10)
			_ = backendPeer.SetWriteDeadline(time.Now().Add(time.Minute))
			for {
				if _, err := backendPeer.Write(buf); err != nil {
					return
				}
			}
		}()
		// On the event loop, wait until output for the client waits in
		// the relay.
		if config.EventLoopEngine(engine) {
			b := (<-stand).(*evBackend)
			waitFor(t, "output waiting for the client in the loop", func() bool {
				ch := make(chan int, 1)
				b.loop.post(b.sess, func() { ch <- b.sess.client.pendingLen() })
				return <-ch > 0
			})
		}
		// A record no key decrypts.
		bad := append([]byte{23, 3, 3, 0, 40}, bytes.Repeat([]byte{0xAB}, 40)...)
		if _, err := client.raw.Conn.Write(bad); err != nil {
			t.Fatal(err)
		}
		_ = client.raw.Conn.SetReadDeadline(time.Now().Add(time.Minute))
		nread, err := io.Copy(io.Discard, client.tls)
		t.Logf("client read %d bytes, then %v", nread, err)
		if err == nil || !strings.Contains(err.Error(), "bad record MAC") {
			t.Errorf("client's read ended with %v, want the bad record MAC alert", err)
		}
		waitDone(t, done, "relay after the bad record")
		backendPeer.Close()
		<-flood
	})
}

// TestRingStarved: a loop on io_uring with fewer provided buffers than
// sides wanting to read. Receives then find none (ENOBUFS); those sides
// wait until a buffer comes back, and every byte still arrives, in order.
// The loops are the process's, so the test runs itself in a process of
// its own with two buffers per loop.
func TestRingStarved(t *testing.T) {
	const env = "EVRING_TEST_BUFS"
	if out, child := runAlone(t, env, "2"); !child {
		if !bytes.Contains(out, []byte("receives found no buffer")) && !bytes.Contains(out, []byte("no io_uring here")) {
			t.Fatalf("the starved run said nothing of its receives:\n%s", out)
		}
		t.Logf("%s", bytes.TrimSpace(out))
		return
	}
	n, err := strconv.Atoi(os.Getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	evRingBufs = n
	const sessions, rounds, size = 16, 50, 20 << 10
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		clientPeer, client := tcpPair(t)
		backend, backendPeer := tcpPair(t)
		echoBackend(t, backendPeer)
		done := make(chan struct{})
		go func() { relayOn(config.RelayIOUring, client, nil, backend, nil, nil, nil); close(done) }()
		t.Cleanup(func() { clientPeer.Close(); <-done })
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = clientPeer.SetDeadline(time.Now().Add(time.Minute))
			msg := make([]byte, size)
			got := make([]byte, size)
			for r := range rounds {
				for j := range msg {
					msg[j] = byte(i + r + j)
				}
				if _, err := clientPeer.Write(msg); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(clientPeer, got); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("session %d round %d: echo differs", i, r)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := ringLoopsUnavailable(); err != nil {
		t.Logf("no io_uring here (%v)", err)
		return
	}
	starved := evRingStarved.Load()
	if starved == 0 {
		t.Errorf("%d sessions on %d buffers per loop: no receive found the buffers gone", sessions, n)
	}
	t.Logf("%d receives found no buffer; %d sessions × %d round trips of %d bytes all arrived", starved, sessions, rounds, size)
}

// TestRingUnavailable: where the kernel refuses io_uring, relay_engine =
// "io_uring" relays on the epoll loops, and says so once. The loops are
// the process's, so the test runs itself in a process of its own whose
// rings fail as under a seccomp profile that forbids io_uring.
func TestRingUnavailable(t *testing.T) {
	if out, child := runAlone(t, "EVRING_TEST_REFUSE", "1"); !child {
		if n := bytes.Count(out, []byte("io_uring unavailable; relaying on the epoll event loops")); n != 1 {
			t.Fatalf("the refusal was logged %d times, want once:\n%s", n, out)
		}
		return
	}
	newRing = func(uint32) (*uring.Ring, error) { return nil, os.NewSyscallError("io_uring_setup", unix.EPERM) }
	for i := range 3 {
		s := startEvTestSession(t, config.RelayIOUring)
		s.echo(t, fmt.Sprintf("session %d", i))
		if s.stand.loop.ring != nil {
			t.Fatal("a session joined a loop on io_uring")
		}
	}
	if err := ringLoopsUnavailable(); !errors.Is(err, unix.EPERM) {
		t.Errorf("ringLoopsUnavailable: %v, want EPERM", err)
	}
}

// runAlone runs the calling test again in a process of its own, with env
// set to value, and returns that process's output once it has passed;
// in that process (env set) it returns child true.
func runAlone(t *testing.T, env, value string) (out []byte, child bool) {
	t.Helper()
	if os.Getenv(env) != "" {
		return nil, true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+value)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out, false
}
