package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// waitUntil polls cond until it holds or the deadline passes. Polling a
// condition is not sleeping as synchronisation: it ends as soon as the
// state is reached.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const hardenHBA = "hostssl all all 127.0.0.1/32 cert\nhostnossl all all 127.0.0.1/32 reject\n"

func hardenWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	if o.hba == "" {
		o.hba = hardenHBA
	}
	w := newWorld(t, newPKI(t), o)
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE DATABASE app")
	return w
}

var aliceApp = conn{user: "alice", database: "app", cert: "alice"}

// TestBackendFaults: whatever the backend does, each client gets a clear
// error, the proxy stays up, and it serves again once the backend is back.
func TestBackendFaults(t *testing.T) {
	w := hardenWorld(t, worldOptions{connectTimeout: "2s", conf: map[string]string{"max_connections": "6", "superuser_reserved_connections": "3"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	unavailable := "FATAL 57P03 could not connect to the database server behind pgcertgate"

	t.Run("down at connect time", func(t *testing.T) {
		if err := w.cluster.Halt(ctx, "fast"); err != nil {
			t.Fatal(err)
		}
		if got := w.attempt(proxy, aliceApp); got.String() != unavailable {
			t.Errorf("backend down: %s, want %s", got, unavailable)
		}
		if err := w.cluster.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		if got := w.attempt(proxy, aliceApp); !got.ok {
			t.Fatalf("after the backend came back: %s", got)
		}
	})

	t.Run("restart mid-session", func(t *testing.T) {
		pc, err := w.connect(ctx, proxy, aliceApp)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		if err := w.cluster.Halt(ctx, "fast"); err != nil {
			t.Fatal(err)
		}
		// The backend's own FATAL reaches the client, then the close.
		err = pc.Exec(ctx, "select 1").Close()
		if err == nil {
			t.Fatal("query succeeded on a backend that was shut down")
		}
		t.Logf("client saw: %v", err)
		if err := w.cluster.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		if got := w.attempt(proxy, aliceApp); !got.ok {
			t.Fatalf("after restart: %s", got)
		}
	})

	t.Run("stalled backend", func(t *testing.T) {
		pid, err := w.cluster.PostmasterPID()
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stopped := true
		defer func() {
			if stopped {
				syscall.Kill(pid, syscall.SIGCONT)
			}
		}()
		began := time.Now()
		got := w.attempt(proxy, aliceApp)
		if got.String() != unavailable {
			t.Errorf("stalled backend: %s, want %s", got, unavailable)
		}
		t.Logf("refused after %v (connect_timeout 2s)", time.Since(began).Round(time.Millisecond))
		syscall.Kill(pid, syscall.SIGCONT)
		stopped = false
		if got := w.attempt(proxy, aliceApp); !got.ok {
			t.Fatalf("after SIGCONT: %s", got)
		}
	})

	t.Run("backend at max_connections", func(t *testing.T) {
		// max_connections 6 with 3 reserved for superusers: alice gets
		// three, then PostgreSQL's own refusal, which must reach the
		// client unchanged, exactly as it does directly.
		var held []interface{ Close(context.Context) error }
		defer func() {
			for _, c := range held {
				c.Close(ctx)
			}
		}()
		for range 3 {
			pc, err := w.connect(ctx, proxy, aliceApp)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, pc)
		}
		viaProxy := w.attempt(proxy, aliceApp)
		directly := w.attempt(direct, aliceApp)
		if viaProxy.ok || viaProxy.code != "53300" || viaProxy.String() != directly.String() {
			t.Fatalf("full backend:\n  pgcertgate: %s\n  postgres:   %s", viaProxy, directly)
		}
		t.Logf("both: %s", viaProxy)
	})
}

// TestSlowClients: silent and trickling sockets are closed at
// authentication_timeout while normal logins keep succeeding. make test
// runs a reduced size; SOAK_FULL=1 (make soak) runs 1,000.
func TestSlowClients(t *testing.T) {
	n := soakSize(200, 1000)
	w := hardenWorld(t, worldOptions{extraTOML: "authentication_timeout = \"2s\"\nmax_startup_connections = 5000"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	raise := func() {
		var lim syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < 4*uint64(n)+1024 {
			lim.Cur = min(lim.Max, 4*uint64(n)+1024)
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	raise()
	var conns []net.Conn
	var wg sync.WaitGroup
	began := time.Now()
	for i := range n {
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 1 {
			// Trickle: one byte of an SSLRequest at a time, slower than
			// any real client, never finishing within the timeout.
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, b := range []byte{0, 0, 0, 8, 4, 210, 22} {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(500 * time.Millisecond) // the attack's pacing, not synchronisation
				}
			}()
		}
	}
	// Normal logins during the attack.
	var worst time.Duration
	for range 10 {
		t0 := time.Now()
		if got := w.attempt(proxy, aliceApp); !got.ok {
			t.Fatalf("login during the attack: %s", got)
		}
		worst = max(worst, time.Since(t0))
	}
	t.Logf("%d slow sockets; 10 logins during the attack, slowest %v", n, worst)
	// Every slow socket is closed by the proxy at authentication_timeout.
	var closedBy time.Duration
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		_, err := c.Read(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("a slow socket outlived authentication_timeout by 10s")
		}
		closedBy = max(closedBy, time.Since(began))
		c.Close()
	}
	wg.Wait()
	t.Logf("all %d closed within %v of the first dial (authentication_timeout 2s)", n, closedBy.Round(time.Millisecond))
	waitUntil(t, "the proxy to drop every slow connection", 10*time.Second, func() bool { return w.proxy.Connections() == 0 })
	_ = ctx
}

// soakSize is the reduced size for make test, or the full size under
// SOAK_FULL=1 (make soak).
func soakSize(reduced, full int) int {
	if os.Getenv("SOAK_FULL") == "1" {
		return full
	}
	return reduced
}

// TestResourceStability: many connect/disconnect cycles, some failing
// authentication and some succeeding, leave goroutines, file descriptors
// and heap where they started.
func TestResourceStability(t *testing.T) {
	n := soakSize(300, 20000)
	w := hardenWorld(t, worldOptions{})
	bad := conn{user: "bob", database: "app", cert: "alice"}
	noCert := conn{user: "alice", database: "app"}
	cycle := func(i int) {
		var c conn
		switch i % 4 {
		case 0, 1:
			c = aliceApp
		case 2:
			c = bad
		default:
			c = noCert
		}
		got := w.attempt(proxy, c)
		if got.ok != (i%4 < 2) {
			t.Fatalf("cycle %d: %s", i, got)
		}
	}
	for i := range 20 { // warm-up: pools, TLS caches, lazily started goroutines
		cycle(i)
	}
	settle := func() (int, int, uint64) {
		waitUntil(t, "connections to drain", 10*time.Second, func() bool { return w.proxy.Connections() == 0 })
		// The test keeps the proxy's log in memory; that is not the
		// proxy's heap.
		w.logBuf.reset()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), openFDs(t), ms.HeapAlloc
	}
	g0, fd0, heap0 := settle()
	for i := range n {
		cycle(i)
	}
	var g1, fd1 int
	var heap1 uint64
	// Goroutines of closed connections finish asynchronously.
	waitUntil(t, "goroutines back to baseline", 15*time.Second, func() bool {
		g1, fd1, heap1 = settle()
		return g1 <= g0+2 && fd1 <= fd0+2
	})
	t.Logf("%d cycles: goroutines %d -> %d, open fds %d -> %d, heap %d KiB -> %d KiB", n, g0, g1, fd0, fd1, heap0>>10, heap1>>10)
	if heap1 > heap0+8<<20 {
		t.Errorf("heap grew by %d KiB over %d cycles", (heap1-heap0)>>10, n)
	}
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestHostileCertificates: long chains, huge chains, long and odd CNs.
// PostgreSQL and pgcertgate must agree, and the proxy must keep serving.
func TestHostileCertificates(t *testing.T) {
	p := newPKI(t)
	// A chain of 12 CAs below the root, and a leaf with a CN longer
	// than NAMEDATALEN.
	ca := p.root
	for i := range 12 {
		next, err := ca.NewIntermediate(pkix.Name{CommonName: "deep " + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		ca = next
	}
	deep, err := ca.NewClient(pkix.Name{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	p.clients["deep"] = deep
	long := strings.Repeat("a", 70)
	p.clients["longcn"], err = p.root.NewClient(pkix.Name{CommonName: long})
	if err != nil {
		t.Fatal(err)
	}
	// A leaf padded with 120 KB of DNS SANs.
	var sans []string
	for i := range 2000 {
		sans = append(sans, fmt.Sprintf("padding-%04d.%s.example", i, strings.Repeat("x", 40)))
	}
	p.clients["huge"], err = p.root.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithDNSSANs(sans...))
	if err != nil {
		t.Fatal(err)
	}
	// No CRLs: with them, every one of the deep CAs would need its own.
	w := newWorld(t, p, worldOptions{hba: hardenHBA, noCRL: true})
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE DATABASE app", `CREATE ROLE "`+long[:63]+`" LOGIN`)
	for _, tc := range []struct{ name, cert, user string }{
		{"chain of 14 certificates", "deep", "alice"},
		{"certificate over 100 KB", "huge", "alice"},
		// The user name is cut to 63 bytes; the CN is not, so the names
		// differ, in PostgreSQL and in pgcertgate alike.
		{"CN longer than 63 bytes", "longcn", long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := conn{user: tc.user, database: "app", cert: tc.cert}
			pg, gate := w.attempt(direct, c), w.attempt(proxy, c)
			t.Logf("postgres: %s (%s); pgcertgate: %s (%s)", pg, pg.raw, gate, gate.raw)
			if i := strings.LastIndex(w.logBuf.String(), "tls_error="); i >= 0 && gate.tlsError {
				t.Logf("pgcertgate logged: %s", strings.SplitN(w.logBuf.String()[i:], " verdict", 2)[0])
			}
			if pg.String() != gate.String() {
				t.Errorf("differ:\n  postgres:   %s (%s)\n  pgcertgate: %s (%s)", pg, pg.raw, gate, gate.raw)
			}
			if got := w.attempt(proxy, aliceApp); !got.ok {
				t.Fatalf("proxy stopped serving: %s", got)
			}
		})
	}
	_ = x509.Certificate{}
}

// TestDisconnectAtEveryStage drops the client at each step of a login; the
// proxy must release every connection and keep serving.
func TestDisconnectAtEveryStage(t *testing.T) {
	w := hardenWorld(t, worldOptions{extraTOML: "authentication_timeout = \"3s\""})
	leaf := w.pki.clients["alice"]
	roots := x509.NewCertPool()
	roots.AddCert(w.pki.root.Cert)
	tlsCfg := &tls.Config{ServerName: "localhost", RootCAs: roots, Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	sslRequest := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)
	startup := func() []byte {
		body := binary.BigEndian.AppendUint32(nil, 3<<16)
		for _, s := range []string{"user", "alice", "database", "app"} {
			body = append(append(body, s...), 0)
		}
		body = append(body, 0)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
	}()
	stages := []struct {
		name string
		run  func(c net.Conn) error
	}{
		{"after connect", func(c net.Conn) error { return nil }},
		{"mid SSLRequest", func(c net.Conn) error { _, err := c.Write(sslRequest[:3]); return err }},
		{"after SSLRequest", func(c net.Conn) error { _, err := c.Write(sslRequest); return err }},
		{"mid handshake", func(c net.Conn) error {
			if _, err := c.Write(sslRequest); err != nil {
				return err
			}
			// A ClientHello's first bytes, then silence.
			_, err := c.Write([]byte{0x16, 3, 1, 0, 200, 1, 0, 0, 196})
			return err
		}},
		{"after handshake", func(c net.Conn) error {
			c.Write(sslRequest)
			c.Read(make([]byte, 1))
			return tls.Client(c, tlsCfg).Handshake()
		}},
		{"mid startup packet", func(c net.Conn) error {
			c.Write(sslRequest)
			c.Read(make([]byte, 1))
			tc := tls.Client(c, tlsCfg)
			_, err := tc.Write(startup[:10])
			return err
		}},
		{"after startup, before the answer", func(c net.Conn) error {
			c.Write(sslRequest)
			c.Read(make([]byte, 1))
			tc := tls.Client(c, tlsCfg)
			_, err := tc.Write(startup)
			return err
		}},
	}
	for _, st := range stages {
		t.Run(st.name, func(t *testing.T) {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if err := st.run(c); err != nil {
				t.Fatal(err)
			}
			c.Close()
			waitUntil(t, "the proxy to release the connection", 10*time.Second, func() bool { return w.proxy.Connections() == 0 })
			if got := w.attempt(proxy, aliceApp); !got.ok {
				t.Fatalf("proxy stopped serving: %s", got)
			}
		})
	}
	t.Run("half-open client", func(t *testing.T) {
		// A client that stops talking without closing (a peer that
		// vanished) is closed at authentication_timeout.
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(sslRequest)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 16)
		n, _ := c.Read(b)
		if n != 1 || b[0] != 'S' {
			t.Fatalf("got %q", b[:n])
		}
		t0 := time.Now()
		_, err = c.Read(b)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("half-open connection not closed")
		}
		t.Logf("closed after %v (authentication_timeout 3s)", time.Since(t0).Round(time.Millisecond))
		waitUntil(t, "the proxy to release the connection", 10*time.Second, func() bool { return w.proxy.Connections() == 0 })
	})
}

// TestSSLv2Hello sends an SSLv2-style ClientHello, first in place of a
// startup packet and then after an SSLRequest, to PostgreSQL and to
// pgcertgate: both must close without accepting it.
func TestSSLv2Hello(t *testing.T) {
	w := hardenWorld(t, worldOptions{})
	// SSLv2 record header (0x80, length) with a CLIENT-HELLO offering
	// version 3.1 and one cipher spec, as very old clients sent it.
	hello := []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
		0x07, 0x00, 0xc0, 0x05, 0x00, 0x80, 0x03, 0x00, 0x80, 0x01, 0x00, 0x80, 0x08, 0x00, 0x80, 0x06, 0x00, 0x40, 0x04, 0x00, 0x80, 0x02, 0x00, 0x80,
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	sslRequest := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)
	exchange := func(addr string, afterSSLRequest bool) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var got []byte
		if afterSSLRequest {
			c.Write(sslRequest)
			b := make([]byte, 1)
			n, _ := c.Read(b)
			got = append(got, b[:n]...)
		}
		c.Write(hello)
		buf := make([]byte, 256)
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return fmt.Sprintf("%q then left open", got)
				}
				return fmt.Sprintf("%q then closed", got)
			}
		}
	}
	pgAddr := fmt.Sprintf("127.0.0.1:%d", w.cluster.Port())
	for _, after := range []bool{false, true} {
		pg, gate := exchange(pgAddr, after), exchange(w.addr, after)
		t.Logf("after SSLRequest=%v: postgres %s; pgcertgate %s", after, pg, gate)
		if !strings.HasSuffix(gate, "closed") || !strings.HasSuffix(pg, "closed") {
			t.Errorf("an SSLv2 hello must end the connection: postgres %s, pgcertgate %s", pg, gate)
		}
		if after && (!strings.HasPrefix(gate, `"S`) || !strings.HasPrefix(pg, `"S`)) {
			t.Errorf("SSLRequest not answered with S: postgres %s, pgcertgate %s", pg, gate)
		}
	}
	if got := w.attempt(proxy, aliceApp); !got.ok {
		t.Fatalf("proxy stopped serving: %s", got)
	}
}
