package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/config"
)

// TestForwardedCancelHeader: the header a replica puts on a forwarded
// cancel parses as one, marked forwarded, with the client's address, and
// leaves the CancelRequest after it untouched.
func TestForwardedCancelHeader(t *testing.T) {
	for _, tc := range []struct{ src, dst, want string }{
		{"10.1.2.3:5555", "127.0.0.1:6432", "10.1.2.3:5555"},
		{"[fd00::7]:5555", "127.0.0.1:6432", "[fd00::7]:5555"},
		{"10.1.2.3:5555", "[fd00::1]:6432", "10.1.2.3:5555"},
		{"", "127.0.0.1:6432", "0.0.0.0:0"},
	} {
		var src netip.AddrPort
		if tc.src != "" {
			src = netip.MustParseAddrPort(tc.src)
		}
		cancel := []byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 7, 1, 2, 3, 4}
		r := bufio.NewReader(bytes.NewReader(append(forwardedCancelHeader(src, netip.MustParseAddrPort(tc.dst)), cancel...)))
		h, err := readProxyHeader(r)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if !h.forwarded || h.src.String() != tc.want {
			t.Fatalf("%s: forwarded=%v src=%s", tc.src, h.forwarded, h.src)
		}
		if rest, _ := io.ReadAll(r); !bytes.Equal(rest, cancel) {
			t.Fatalf("%s: %q after the header", tc.src, rest)
		}
	}
	// A header without the mark, or with another value, is not forwarded.
	r := bufio.NewReader(bytes.NewReader(proxyV2(0x21, 0x11, cat(v4Payload("10.1.2.3", "10.0.0.1", 1, 2), tlv(pp2TypeForwardedCancel, []byte("x"))))))
	if h, err := readProxyHeader(r); err != nil || h.forwarded {
		t.Fatalf("forwarded=%v err=%v", h != nil && h.forwarded, err)
	}
}

func TestCancelKeyReplica(t *testing.T) {
	for id := 0; id <= 31; id++ {
		key := []byte{0xff, 0xff, 0xff, 0xff}
		key[0] = key[0]&(1<<replicaShift-1) | byte(id)<<replicaShift
		if got := keyReplica(key); got != id {
			t.Fatalf("id %d read back as %d", id, got)
		}
	}
}

// TestCancelPeersDNS: peers_dns resolves to host:port targets, and the
// answer is kept for peersDNSTTL rather than asked for every cancel.
func TestCancelPeersDNS(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(`hba_file = "h"
ssl_cert_file = "c"
ssl_key_file = "k"
proxy_protocol = "on"
proxy_protocol_trusted = ["127.0.0.1"]
[backend]
dsn = "host=/tmp"
[cluster]
replica_id = 1
peers_dns = "localhost:6543"
`))
	if err != nil {
		t.Fatal(err)
	}
	p := newCancelPeers()
	got := p.targets(cfg, time.Second)
	if !slices.Contains(got, "127.0.0.1:6543") {
		t.Fatalf("targets %v, want 127.0.0.1:6543 among them", got)
	}
	at := p.dnsAt
	p.targets(cfg, time.Second)
	if !p.dnsAt.Equal(at) {
		t.Fatal("resolved again within peersDNSTTL")
	}
}

// TestCancelPeersWithoutSelf: a replica never forwards a cancel to its
// own listener, which peers_dns lists with the others.
func TestCancelPeersWithoutSelf(t *testing.T) {
	own := map[netip.AddrPort]bool{netip.MustParseAddrPort("10.0.0.7:6432"): true, netip.MustParseAddrPort("[fd00::7]:6432"): true}
	got := withoutSelf([]string{"10.0.0.6:6432", "10.0.0.7:6432", "10.0.0.7:6433", "[fd00::7]:6432", "[::ffff:10.0.0.7]:6432", "pgcertgate-1.peers:6432"}, own)
	want := []string{"10.0.0.6:6432", "10.0.0.7:6433", "pgcertgate-1.peers:6432"}
	if !slices.Equal(got, want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	// A listener on 0.0.0.0 answers on every interface address.
	s := &Server{listeners: map[net.Listener]struct{}{}}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s.listeners[ln] = struct{}{}
	port := ln.Addr().(*net.TCPAddr).Port
	if !s.ownAddrs()[netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))] {
		t.Fatalf("ownAddrs %v lacks 127.0.0.1:%d", s.ownAddrs(), port)
	}
}

// TestCancelPeersOneFamily: a name resolving to each replica's IPv4 and
// IPv6 address yields one address per replica, so that no replica is
// sent the same cancel twice.
func TestCancelPeersOneFamily(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"}, []string{"10.0.0.1", "10.0.0.2"}},
		{[]string{"fd00::1", "fd00::2"}, []string{"fd00::1", "fd00::2"}},
		{[]string{"10.0.0.1", "10.0.0.2"}, []string{"10.0.0.1", "10.0.0.2"}},
		{[]string{"fd00::1", "::ffff:10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"}, []string{"10.0.0.1", "10.0.0.2"}},
		{[]string{"fe80::1%eth0", "fd00::2"}, []string{"fe80::1%eth0", "fd00::2"}},
		{nil, nil},
	} {
		if got := oneFamily(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("oneFamily(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	// And where peers_dns is resolved: a dual-stack headless Service.
	cfg, err := config.Parse("t.toml", []byte(`hba_file = "h"
ssl_cert_file = "c"
ssl_key_file = "k"
proxy_protocol = "on"
proxy_protocol_trusted = ["10.0.0.0/8"]
[backend]
dsn = "host=/tmp"
[cluster]
replica_id = 1
peers_dns = "pgcertgate-peers:6432"
`))
	if err != nil {
		t.Fatal(err)
	}
	p := newCancelPeers()
	p.lookup = func(_ context.Context, host string) ([]string, error) {
		if host != "pgcertgate-peers" {
			return nil, fmt.Errorf("lookup of %q", host)
		}
		return []string{"10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"}, nil
	}
	if got, want := p.targets(cfg, time.Second), []string{"10.0.0.1:6432", "10.0.0.2:6432"}; !slices.Equal(got, want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
}

// TestForwardCancelHeaderBySource: over the peer channel a forwarder sends
// the PROXY header exactly when the receiving replica requires one, that
// is when the forwarder's own source address, as the receiver sees it, is
// in proxy_protocol_trusted; the destination's address has no say.
func TestForwardCancelHeaderBySource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 to listen on: %v", err)
	}
	defer ln.Close()
	dst := netip.MustParseAddrPort(ln.Addr().String())
	// peer accepts one connection and reports the source address it saw
	// and whether a PROXY header came first; it declines the SSLRequest,
	// which ends the forward.
	type seen struct {
		src    netip.Addr
		header bool
		err    error
	}
	peer := func() <-chan seen {
		ch := make(chan seen, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				ch <- seen{err: err}
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			src := netip.MustParseAddrPort(c.RemoteAddr().String()).Addr().Unmap()
			r := bufio.NewReader(c)
			h, err := readProxyHeader(r)
			if err != nil && !errors.Is(err, errNoProxyHeader) {
				ch <- seen{err: err}
				return
			}
			ssl := make([]byte, 8)
			if _, err := io.ReadFull(r, ssl); err != nil || binary.BigEndian.Uint32(ssl[4:]) != sslRequestCode {
				ch <- seen{err: fmt.Errorf("want an SSLRequest: %q, %v", ssl, err)}
				return
			}
			_, err = c.Write([]byte{'N'})
			ch <- seen{src: src, header: h != nil && h.forwarded, err: err}
		}()
		return ch
	}
	forward := func(trusted netip.Addr) seen {
		ch := peer()
		req := cancelRequest{pid: 7, key: []byte{1, 2, 3, 4}}
		err := forwardCancel(ln.Addr().String(), netip.MustParseAddrPort("10.1.2.3:5555"), req, 10*time.Second,
			&tls.Config{}, func(a netip.Addr) bool { return a == trusted })
		if err == nil || !strings.Contains(err.Error(), "declined SSL") {
			t.Fatalf("forwardCancel: %v, want the peer's refusal of SSL", err)
		}
		s := <-ch
		if s.err != nil {
			t.Fatal(s.err)
		}
		return s
	}
	// The first forward finds out the source address the kernel picks.
	src := forward(netip.IPv4Unspecified()).src
	if src == dst.Addr() {
		t.Skipf("the connection's source is its destination %v: the two cannot be told apart", src)
	}
	for _, tc := range []struct {
		name    string
		trusted netip.Addr
		header  bool
	}{
		{"source trusted", src, true},
		{"destination trusted", dst.Addr(), false},
		{"neither trusted", netip.MustParseAddr("192.0.2.1"), false},
	} {
		if s := forward(tc.trusted); s.header != tc.header {
			t.Errorf("%s (source %v, destination %v): header %v, want %v", tc.name, s.src, dst.Addr(), s.header, tc.header)
		}
	}
}
