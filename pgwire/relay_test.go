package pgwire

import (
	"bytes"
	"crypto/tls"
	"crypto/x509/pkix"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

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
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "relay root"})
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tlsVersionName(version), func(t *testing.T) {
			client, server, sink := tlsRelayPair(t, ca, srvLeaf, version)
			up := &copier{name: "client->sink", dst: sink.w, src: server}
			done := make(chan struct{})
			go func() { up.run(); sink.w.Close(); close(done) }()

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
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("copier did not end after the client closed")
			}
			if up.err != nil {
				t.Errorf("copier error %v, want a clean end", up.err)
			}
			if up.n != int64(len(sent)) {
				t.Errorf("copier counted %d bytes, sent %d", up.n, len(sent))
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
func tlsRelayPair(t *testing.T, ca *testpki.CA, srv *testpki.Leaf, version uint16) (*tlsClient, *tls.Conn, *sink) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func() (net.Conn, net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range []net.Conn{c, s} {
			_ = x.SetDeadline(time.Now().Add(time.Minute))
			t.Cleanup(func() { x.Close() })
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

// TestTransportCount checks the record counter against records cut at
// every possible place.
func TestTransportCount(t *testing.T) {
	var stream []byte
	var lens []int
	for _, n := range []int{0, 1, 5, 300, 16384 + 256, 0, 2} {
		stream = append(stream, 23, 3, 3, byte(n>>8), byte(n))
		stream = append(stream, make([]byte, n)...)
		lens = append(lens, n)
	}
	for cut := 0; cut <= len(stream); cut += 7 {
		tr := &transport{}
		tr.count(stream[:cut])
		tr.count(stream[cut:])
		if tr.records != len(lens) || tr.hdrN != 0 || tr.body != 0 {
			t.Fatalf("cut at %d: records %d hdrN %d body %d, want %d 0 0", cut, tr.records, tr.hdrN, tr.body, len(lens))
		}
	}
	tr := &transport{}
	tr.count(stream[:3])
	if tr.records != 0 || tr.hdrN != 3 {
		t.Fatalf("after 3 header bytes: records %d hdrN %d", tr.records, tr.hdrN)
	}
}
