package pgwire

import (
	"bufio"
	"bytes"
	"io"
	"net/netip"
	"slices"
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
