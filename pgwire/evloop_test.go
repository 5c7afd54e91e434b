package pgwire

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"

	"github.com/pgcertgate/pgcertgate/config"
)

// relayEngines are the engines every relay test runs under. On a system
// without the event loop it falls back to goroutines, and the subtest
// runs the goroutine relay again; where the kernel gives no io_uring,
// its subtest runs on the epoll loops.
var relayEngines = []string{config.RelayGoroutine, config.RelayEventLoop, config.RelayIOUring}

// forEachEngine runs f once per relay engine, as a subtest named after it.
func forEachEngine(t *testing.T, f func(t *testing.T, engine string)) {
	t.Helper()
	for _, e := range relayEngines {
		t.Run(e, func(t *testing.T) {
			before, beforeRing := evJoined.Load(), evRingJoined.Load()
			f(t, e)
			if !config.EventLoopEngine(e) || runtime.GOOS != "linux" || t.Failed() {
				return
			}
			if evJoined.Load() == before {
				t.Error("no session joined an event loop")
			}
			if e == config.RelayIOUring && evRingJoined.Load() == beforeRing {
				if err := ringLoopsUnavailable(); err != nil {
					t.Logf("no io_uring here (%v): the epoll loops relayed", err)
				} else {
					t.Error("no session joined a loop on io_uring")
				}
			}
		})
	}
}

// soakFull is set by make soak: the heavy relay tests run at full size.
var soakFull = os.Getenv("SOAK_FULL") == "1"

// echoBackend serves backend as a backend that echoes everything it gets,
// until the relay closes it; the goroutine ends with the test.
func echoBackend(t *testing.T, backend net.Conn) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(backend, backend)
		backend.Close()
	}()
	t.Cleanup(func() { backend.Close(); <-done })
}

// echoRoundTrips writes total bytes in messages of random sizes (up to
// several TLS records each) through c, reads the echo concurrently, and
// checks both ways' SHA-256.
func echoRoundTrips(c net.Conn, rng *rand.Rand, total, maxMsg int) error {
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, maxMsg)
		for left := total; left > 0; {
			n := min(left, 1+rng.IntN(maxMsg))
			for i := range buf[:n] {
				buf[i] = byte(left + i)
			}
			sent.Write(buf[:n])
			if _, err := c.Write(buf[:n]); err != nil {
				werr <- err
				return
			}
			left -= n
		}
		werr <- nil
	}()
	got := sha256.New()
	if _, err := io.CopyN(got, c, int64(total)); err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return errors.New("the echo's checksum differs from what was sent")
	}
	return nil
}

// tlsSession starts a relayed session: a TLS client (returned), the relay
// on engine, and an echoing backend. done is closed when the relay ends.
func tlsSession(t *testing.T, engine string) (client *tls.Conn, done chan struct{}) {
	t.Helper()
	c, server, _ := tlsRelayPair(t, tls.VersionTLS13)
	backend, backendPeer := tcpPair(t)
	echoBackend(t, backendPeer)
	done = make(chan struct{})
	go func() { relayOn(engine, server, nil, backend, nil, nil, nil); close(done) }()
	t.Cleanup(func() { c.tls.Close(); <-done })
	return c.tls, done
}

// TestRelayLargeMessages sends messages up to many TLS records long
// through a TLS client both ways at once (a COPY in and out), and checks
// what comes back byte for byte. make soak moves 1 GiB.
func TestRelayLargeMessages(t *testing.T) {
	total := 8 << 20
	if soakFull {
		total = 1 << 30
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		client, _ := tlsSession(t, engine)
		_ = client.SetDeadline(time.Now().Add(20 * time.Minute))
		if err := echoRoundTrips(client, rand.New(rand.NewPCG(3, 4)), total, 300<<10); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRelaySlowReader: a backend that writes as fast as it can to a
// client that reads slowly must not make the proxy buffer it: memory stays
// bounded while many times the socket buffers pass through.
func TestRelaySlowReader(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		clientPeer, client := tcpPair(t)
		backend, backendPeer := tcpPair(t)
		const total = 64 << 20
		wdone := make(chan error, 1)
		go func() {
			buf := make([]byte, 256<<10)
			left := total
			for left > 0 {
				n, err := backendPeer.Write(buf[:min(left, len(buf))])
				if err != nil {
					wdone <- err
					return
				}
				left -= n
			}
			wdone <- nil
		}()
		done := make(chan struct{})
		go func() { relayOn(engine, client, nil, backend, nil, nil, nil); close(done) }()
		var base runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&base)
		peak := uint64(0)
		buf := make([]byte, 4<<10)
		_ = clientPeer.SetReadDeadline(time.Now().Add(time.Minute))
		for got, i := 0, 0; got < total; i++ {
			n, err := clientPeer.Read(buf)
			if err != nil {
				t.Fatalf("after %d bytes: %v", got, err)
			}
			got += n
			if i%64 == 0 {
				// The client reads slower than the backend writes:
				// pacing, not synchronisation.
				time.Sleep(time.Millisecond)
			}
			if i%2048 == 0 {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
		if err := <-wdone; err != nil {
			t.Fatal(err)
		}
		// The proxy's share is a copy buffer or two; the bound leaves
		// room for the test's own garbage and the race detector.
		if growth := int64(peak) - int64(base.HeapInuse); growth > 16<<20 {
			t.Errorf("heap grew by %d bytes while %d passed through", growth, total)
		}
		clientPeer.Close()
		waitDone(t, done, "relay after the client left")
	})
}

// TestRelayHalfClose: a client that shuts down its sending side ends the
// session after its last bytes: the backend gets them and then EOF, and
// the client reads EOF.
func TestRelayHalfClose(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		clientPeer, client := tcpPair(t)
		backend, backendPeer := tcpPair(t)
		done := make(chan struct{})
		go func() { relayOn(engine, client, nil, backend, nil, nil, nil); close(done) }()
		if _, err := clientPeer.Write([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		if err := clientPeer.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = backendPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, err := io.ReadAll(backendPeer); string(got) != "bye" || err != nil {
			t.Fatalf("backend got %q, %v", got, err)
		}
		_ = clientPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, err := io.ReadAll(clientPeer); len(got) != 0 || err != nil {
			t.Fatalf("client got %q, %v", got, err)
		}
		waitDone(t, done, "relay after a half-close")
	})
}

// TestRelayKeepsBackend: a client's Terminate with the backend idle ends
// the session with the backend kept, unharmed and without the Terminate,
// on every engine (an event loop hands back a new net.Conn over the same
// socket).
func TestRelayKeepsBackend(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		clientPeer, client := tcpPair(t)
		backend, backendPeer := tcpPair(t)
		tracker := newSessionTracker(nil)
		type result struct {
			keep bool
			kept net.Conn
		}
		res := make(chan result, 1)
		go func() {
			_, _, keep, kept := relayOn(engine, client, nil, backend, tracker, newSessionControl(backend), nil)
			res <- result{keep, kept}
		}()
		query := []byte{'Q', 0, 0, 0, 13, 's', 'e', 'l', 'e', 'c', 't', ' ', '1', 0}
		if _, err := clientPeer.Write(query); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(query))
		_ = backendPeer.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(backendPeer, got); err != nil || !bytes.Equal(got, query) {
			t.Fatalf("backend got %q, %v", got, err)
		}
		ready := []byte{'Z', 0, 0, 0, 5, 'I'}
		if _, err := backendPeer.Write(ready); err != nil {
			t.Fatal(err)
		}
		got = make([]byte, len(ready))
		_ = clientPeer.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(clientPeer, got); err != nil || !bytes.Equal(got, ready) {
			t.Fatalf("client got %q, %v", got, err)
		}
		if _, err := clientPeer.Write([]byte{'X', 0, 0, 0, 4}); err != nil {
			t.Fatal(err)
		}
		var r result
		select {
		case r = <-res:
		case <-time.After(10 * time.Second):
			t.Fatal("relay still running after Terminate")
		}
		if !r.keep {
			t.Fatal("backend not kept")
		}
		defer r.kept.Close()
		_ = r.kept.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := r.kept.Write([]byte("next")); err != nil {
			t.Fatal(err)
		}
		got = make([]byte, 4)
		if _, err := io.ReadFull(backendPeer, got); err != nil || string(got) != "next" {
			t.Fatalf("backend got %q after the session, %v (the Terminate must not pass)", got, err)
		}
		if _, err := backendPeer.Write([]byte("back")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r.kept, got); err != nil || string(got) != "back" {
			t.Fatalf("kept backend read %q, %v", got, err)
		}
	})
}

// TestRelayChurn starts and ends many sessions at random, plain and TLS,
// each moving a random amount both ways and ending from a random side;
// then every descriptor and goroutine the sessions had is gone.
func TestRelayChurn(t *testing.T) {
	sessions, parallel := 400, 40
	if soakFull {
		sessions, parallel = 5000, 200
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		// Loops start with the first session: start them before the
		// baseline.
		warm, _ := tlsSession(t, engine)
		if err := echoRoundTrips(warm, rand.New(rand.NewPCG(0, 0)), 10, 10); err != nil {
			t.Fatal(err)
		}
		fd0, g0 := openFDs(t), runtime.NumGoroutine()
		var wg sync.WaitGroup
		sem := make(chan struct{}, parallel)
		errs := make(chan error, sessions)
		for i := range sessions {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := churnSession(engine, uint64(i)); err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		waitFor(t, "descriptors and goroutines back to their baseline", func() bool {
			return openFDs(t) <= fd0 && runtime.NumGoroutine() <= g0
		})
	})
}

// churnSession is one of TestRelayChurn's sessions, on sockets of its own.
func churnSession(engine string, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 11))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	pair := func() (net.Conn, net.Conn, error) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, nil, err
		}
		s, err := ln.Accept()
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		return c, s, nil
	}
	clientPeer, client, err := pair()
	if err != nil {
		return err
	}
	defer clientPeer.Close()
	backend, backendPeer, err := pair()
	if err != nil {
		client.Close()
		return err
	}
	defer backendPeer.Close()
	echoed := make(chan struct{})
	go func() { _, _ = io.Copy(backendPeer, backendPeer); backendPeer.Close(); close(echoed) }()
	defer func() { <-echoed }()
	deadline := time.Now().Add(2 * time.Minute)
	_ = clientPeer.SetDeadline(deadline)
	var c net.Conn = clientPeer
	var serverSide net.Conn = client
	if rng.IntN(8) == 0 {
		// A TLS client, its handshake done before the relay as
		// startTLS does it.
		srvTLS := tls.Server(newTransport(client, nil), churnTLS().server)
		cliTLS := tls.Client(clientPeer, churnTLS().client)
		herr := make(chan error, 1)
		go func() { herr <- srvTLS.Handshake() }()
		if err := cliTLS.Handshake(); err != nil {
			client.Close()
			backend.Close()
			<-herr
			return err
		}
		if err := <-herr; err != nil {
			client.Close()
			backend.Close()
			return err
		}
		c, serverSide = cliTLS, srvTLS
	}
	done := make(chan struct{})
	go func() { relayOn(engine, serverSide, nil, backend, nil, nil, nil); close(done) }()
	if err := echoRoundTrips(c, rng, rng.IntN(200<<10), 1+rng.IntN(40<<10)); err != nil {
		clientPeer.Close()
		<-done
		return err
	}
	switch rng.IntN(3) {
	case 0:
		clientPeer.Close()
	case 1:
		// The backend ends the session: the client sees EOF.
		backendPeer.(*net.TCPConn).CloseWrite()
		if _, err := io.ReadAll(c); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			clientPeer.Close()
			<-done
			return fmt.Errorf("client after the backend's close: %w", err)
		}
	default:
		clientPeer.(*net.TCPConn).CloseWrite()
	}
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		clientPeer.Close()
		backendPeer.Close()
		<-done
		return errors.New("relay did not end")
	}
	return nil
}

// churnTLS is one TLS configuration pair for TestRelayChurn's TLS clients.
var churnTLS = sync.OnceValue(func() struct{ server, client *tls.Config } {
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "churn root"})
	if err != nil {
		panic(err)
	}
	srv, err := ca.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		panic(err)
	}
	return struct{ server, client *tls.Config }{
		&tls.Config{Certificates: []tls.Certificate{srv.TLSCertificate()}},
		&tls.Config{ServerName: "localhost", RootCAs: ca.Pool()},
	}
})

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestRelaySoak holds many sessions for a while, each sending messages of
// random sizes with random pauses between them, and checks every echo;
// afterwards descriptors, goroutines and heap are back at their baseline.
// make soak runs 1,000 sessions for 10 minutes.
func TestRelaySoak(t *testing.T) {
	sessions, length, pause := 60, 3*time.Second, 20*time.Millisecond
	if soakFull {
		sessions, length, pause = 1000, 10*time.Minute, 500*time.Millisecond
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		warm, _ := tlsSession(t, engine)
		if err := echoRoundTrips(warm, rand.New(rand.NewPCG(0, 0)), 10, 10); err != nil {
			t.Fatal(err)
		}
		heap := func() uint64 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapInuse
		}
		fd0, g0, heap0 := openFDs(t), runtime.NumGoroutine(), heap()
		end := time.Now().Add(length)
		var wg sync.WaitGroup
		errs := make(chan error, sessions)
		var rounds atomic.Int64
		for i := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(i), 99))
				err := withRelayedSession(engine, rng, func(c net.Conn) error {
					for time.Now().Before(end) {
						size := 1 + rng.IntN(16<<10)
						if rng.IntN(20) == 0 {
							size = 1 + rng.IntN(1<<20)
						}
						if err := echoRoundTrips(c, rng, size, 1+rng.IntN(64<<10)); err != nil {
							return err
						}
						rounds.Add(1)
						// Random think time: pacing, not synchronisation.
						time.Sleep(time.Duration(rng.Int64N(int64(pause))))
					}
					return nil
				})
				if err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		waitFor(t, "descriptors and goroutines back to their baseline", func() bool {
			return openFDs(t) <= fd0 && runtime.NumGoroutine() <= g0
		})
		// The pools may keep a few buffers; the sessions' own memory
		// must be gone.
		if h := heap(); h > heap0+8<<20 {
			t.Errorf("heap in use %d bytes after the soak, %d before", h, heap0)
		}
		t.Logf("%d sessions, %d round trips in %s; heap in use %d → %d bytes", sessions, rounds.Load(), length, heap0, heap())
	})
}

// withRelayedSession starts a session on engine (one in eight over TLS)
// with an echoing backend, runs f with the client's end, and closes it.
func withRelayedSession(engine string, rng *rand.Rand, f func(c net.Conn) error) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	pair := func() (net.Conn, net.Conn, error) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, nil, err
		}
		s, err := ln.Accept()
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		return c, s, nil
	}
	clientPeer, client, err := pair()
	if err != nil {
		return err
	}
	defer clientPeer.Close()
	backend, backendPeer, err := pair()
	if err != nil {
		client.Close()
		return err
	}
	defer backendPeer.Close()
	echoed := make(chan struct{})
	go func() { _, _ = io.Copy(backendPeer, backendPeer); backendPeer.Close(); close(echoed) }()
	defer func() { <-echoed }()
	var c net.Conn = clientPeer
	var serverSide net.Conn = client
	if rng.IntN(8) == 0 {
		srvTLS := tls.Server(newTransport(client, nil), churnTLS().server)
		cliTLS := tls.Client(clientPeer, churnTLS().client)
		herr := make(chan error, 1)
		go func() { herr <- srvTLS.Handshake() }()
		err := cliTLS.Handshake()
		if herr := <-herr; err == nil {
			err = herr
		}
		if err != nil {
			client.Close()
			backend.Close()
			return err
		}
		c, serverSide = cliTLS, srvTLS
	}
	done := make(chan struct{})
	go func() { relayOn(engine, serverSide, nil, backend, nil, nil, nil); close(done) }()
	defer func() { clientPeer.Close(); <-done }()
	_ = clientPeer.SetDeadline(time.Now().Add(30 * time.Minute))
	return f(c)
}

// TestEvloopConnExit: the work a connection's goroutine defers runs once,
// after the session's end and in the order the goroutine deferred it,
// whether the relay ends before or after that goroutine returns, and even
// when the session's end panics; a connection that did not detach runs it
// at once.
func TestEvloopConnExit(t *testing.T) {
	for _, tc := range []struct {
		name         string
		detach       bool
		endFirst     bool // the relay ends before the goroutine returns
		panics       bool
		wantDeferred string
	}{
		{name: "not detached", wantDeferred: "ab"},
		{name: "relay ends after the goroutine returns", detach: true, wantDeferred: "Eab"},
		{name: "relay ends before the goroutine returns", detach: true, endFirst: true, wantDeferred: "Eab"},
		{name: "the end panics", detach: true, panics: true, wantDeferred: "Eab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []byte
			note := func(b byte) func() {
				return func() { mu.Lock(); got = append(got, b); mu.Unlock() }
			}
			x := &connExit{log: slog.New(slog.DiscardHandler)}
			end := func() {
				note('E')()
				if tc.panics {
					panic("end")
				}
			}
			ended := make(chan struct{})
			relayEnds := func() {
				x.relayEnded(end)
				close(ended)
			}
			// The connection goroutine: deferred calls as handle
			// and serve make them, innermost first.
			func() {
				defer x.goroutineDone()
				defer x.atExit(note('b'))
				defer x.atExit(note('a'))
				if tc.detach {
					x.detached = true
					if tc.endFirst {
						// From the loop's ending goroutine.
						go relayEnds()
						<-ended
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if len(got) != 0 {
					t.Errorf("%q ran before the goroutine returned", got)
				}
			}()
			if tc.detach && !tc.endFirst {
				mu.Lock()
				if len(got) != 0 {
					t.Errorf("%q ran before the relay ended", got)
				}
				mu.Unlock()
				go relayEnds()
				<-ended
			}
			mu.Lock()
			defer mu.Unlock()
			if string(got) != tc.wantDeferred {
				t.Errorf("ran %q, want %q", got, tc.wantDeferred)
			}
		})
	}
}

// unixPair returns both ends of a Unix stream socket pair, the first with
// a small send buffer, so that a writer to it soon meets a full socket.
func unixPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ends [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ends[i] = c.(*net.UnixConn)
	}
	if err := ends[0].SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	return ends[0], ends[1]
}

// TestRelayTLSLastWords: a TLS client's last bytes (the end of a COPY, a
// Terminate) followed at once by its close_notify reach a backend that
// reads slowly, every one of them. crypto/tls returns the last record's
// data and the close_notify's EOF from one read, while the backend may
// still have part of that data to take.
func TestRelayTLSLastWords(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		// TLS 1.2: its close_notify travels as an alert record, which
		// crypto/tls looks for behind the data (TLS 1.3 hides record
		// types, and its EOF comes from a read of its own).
		client, server, _ := tlsRelayPair(t, tls.VersionTLS12)
		backend, backendPeer := unixPair(t)
		msg := make([]byte, 1<<20)
		rng := rand.New(rand.NewPCG(5, 6))
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		// The last write is one record, nearly full: a backend that reads
		// slowly cannot take it all at once.
		last := len(msg)
		msg = append(msg, bytes.Repeat([]byte{'d'}, 16000)...)
		msg = append(msg, 'X', 0, 0, 0, 4)
		done := make(chan struct{})
		go func() { relayOn(engine, server, nil, backend, nil, nil, nil); close(done) }()
		type result struct {
			sum [sha256.Size]byte
			n   int
			err error
		}
		res := make(chan result, 1)
		go func() {
			// The backend reads in small pieces, with pauses: pacing,
			// not synchronisation.
			h := sha256.New()
			buf := make([]byte, 4<<10)
			n := 0
			_ = backendPeer.SetReadDeadline(time.Now().Add(time.Minute))
			for i := 0; ; i++ {
				k, err := backendPeer.Read(buf)
				h.Write(buf[:k])
				n += k
				if err != nil {
					if err == io.EOF {
						err = nil
					}
					var sum [sha256.Size]byte
					copy(sum[:], h.Sum(nil))
					res <- result{sum, n, err}
					return
				}
				if i%8 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		// The data and the close_notify leave in one write.
		client.raw.batching = true
		for _, p := range [][]byte{msg[:last], msg[last:]} {
			if _, err := client.tls.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := client.tls.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// CloseWrite leaves an expired write deadline behind.
		_ = client.raw.Conn.SetWriteDeadline(time.Now().Add(time.Minute))
		client.raw.flush(t)
		waitDone(t, done, "relay after the client's close_notify")
		var r result
		select {
		case r = <-res:
		case <-time.After(time.Minute):
			t.Fatal("backend still reading after a minute")
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.n != len(msg) || r.sum != sha256.Sum256(msg) {
			t.Fatalf("backend got %d bytes of %d (checksum equal: %v)", r.n, len(msg), r.sum == sha256.Sum256(msg))
		}
	})
}
