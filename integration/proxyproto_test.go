package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// PROXY protocol, end to end: a balancer on 127.0.0.1 (the only trusted
// source) speaks for clients at 10.x addresses, and pg_hba.conf lines
// admit or refuse by the address the header gives. PostgreSQL is the
// backend throughout; pass_client_identity shows it the header's address.

const proxyHBA = `local all all trust
host    all pp_net     10.1.0.0/16 trust
host    all pp_same    samehost    trust
host    all pp_samenet samenet     trust
hostssl all alice      10.2.0.0/16 cert
`

// proxyV2Header is a PROXY v2 header for a TCP4 or TCP6 client, with any
// TLVs; command 0x21 is PROXY, 0x20 LOCAL.
func proxyV2Header(cmd byte, src string, tlvs ...[]byte) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, cmd)
	var payload []byte
	if src == "" {
		b = append(b, 0x00)
	} else {
		ap := netip.MustParseAddrPort(src)
		dst := netip.MustParseAddrPort("127.0.0.1:6432")
		if ap.Addr().Is4() {
			b = append(b, 0x11)
			s, d := ap.Addr().As4(), dst.Addr().As4()
			payload = append(s[:], d[:]...)
		} else {
			b = append(b, 0x21)
			s, d := ap.Addr().As16(), netip.IPv6Loopback().As16()
			payload = append(s[:], d[:]...)
		}
		payload = binary.BigEndian.AppendUint16(payload, ap.Port())
		payload = binary.BigEndian.AppendUint16(payload, dst.Port())
	}
	for _, t := range tlvs {
		payload = append(payload, t...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

// headerConn sends hdr in the same write as the client's first packet, as
// a balancer may: the startup reader then finds the SSLRequest already
// buffered behind the header, and must not lose it.
type headerConn struct {
	net.Conn
	hdr []byte
}

func (c *headerConn) Write(p []byte) (int, error) {
	if c.hdr == nil {
		return c.Conn.Write(p)
	}
	hdr := c.hdr
	c.hdr = nil
	n, err := c.Conn.Write(append(append([]byte(nil), hdr...), p...))
	return max(n-len(hdr), 0), err
}

// proxyDial returns a DialFunc that sends hdr from src ("" for the
// default source), in its own write or (joined) with the first packet.
func proxyDial(src string, hdr []byte, joined bool) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 20 * time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || hdr == nil {
			return c, err
		}
		if joined {
			return &headerConn{Conn: c, hdr: hdr}, nil
		}
		if _, err := c.Write(hdr); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

func proxyAttempt(t *testing.T, w *world, c conn, dial pgconn.DialFunc, query string) (string, outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(w.conninfo(proxy, c))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = dial
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", classify(err)
	}
	defer pc.Close(ctx)
	res := pc.ExecParams(ctx, query, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", classify(res.Err)
	}
	return string(res.Rows[0][0]), outcome{ok: true}
}

func TestProxyProtocolHBA(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{
		hba:         proxyHBA,
		extraTOML:   "proxy_protocol = \"on\"\nproxy_protocol_trusted = [\"127.0.0.1/32\"]",
		backendTOML: "pass_client_identity = true",
	})
	w.setup(t, "CREATE ROLE pp_net LOGIN", "CREATE ROLE pp_same LOGIN", "CREATE ROLE pp_samenet LOGIN", "CREATE ROLE alice LOGIN")
	rej := func(host, user, enc string) string {
		return fmt.Sprintf(`FATAL 28000 no pg_hba.conf entry for host "%s", user "%s", database "postgres", %s`, host, user, enc)
	}
	const ssl, plain = "SSL encryption", "no encryption"
	for _, tc := range []struct {
		name   string
		c      conn
		hdr    []byte
		joined bool
		want   string // "ok" or the refusal
		addr   string // pgcertgate.client_addr the backend sees, when ok
	}{
		{name: "v2, admitted by the header's network", c: conn{user: "pp_net"}, hdr: proxyV2Header(0x21, "10.1.2.3:5555"), want: "ok", addr: "10.1.2.3"},
		{name: "v2 joined with the SSLRequest", c: conn{user: "pp_net"}, hdr: proxyV2Header(0x21, "10.1.2.3:5555"), joined: true, want: "ok", addr: "10.1.2.3"},
		{name: "v2 joined with a plaintext startup", c: conn{user: "pp_net", sslmode: "disable"}, hdr: proxyV2Header(0x21, "10.1.9.9:1"), joined: true, want: "ok", addr: "10.1.9.9"},
		{name: "v2, refused by the header's network", c: conn{user: "pp_net"}, hdr: proxyV2Header(0x21, "10.9.2.3:5555"), want: rej("10.9.2.3", "pp_net", ssl)},
		{name: "v2 plaintext, refused", c: conn{user: "pp_net", sslmode: "disable"}, hdr: proxyV2Header(0x21, "10.9.2.3:5555"), want: rej("10.9.2.3", "pp_net", plain)},
		{name: "v2 with unknown TLVs", c: conn{user: "pp_net"}, hdr: proxyV2Header(0x21, "10.1.2.4:5555", []byte{0xE0, 0, 3, 'a', 'b', 'c'}, []byte{0x30, 0, 0}), want: "ok", addr: "10.1.2.4"},
		{name: "v1", c: conn{user: "pp_net"}, hdr: []byte("PROXY TCP4 10.1.7.7 127.0.0.1 4444 6432\r\n"), want: "ok", addr: "10.1.7.7"},
		{name: "v1 joined", c: conn{user: "pp_net"}, hdr: []byte("PROXY TCP4 10.1.7.8 127.0.0.1 4444 6432\r\n"), joined: true, want: "ok", addr: "10.1.7.8"},
		{name: "v1, refused", c: conn{user: "pp_net"}, hdr: []byte("PROXY TCP4 10.7.7.7 127.0.0.1 4444 6432\r\n"), want: rej("10.7.7.7", "pp_net", ssl)},
		{name: "samehost: the header's address is the host's", c: conn{user: "pp_same"}, hdr: proxyV2Header(0x21, "127.0.0.1:5555"), want: "ok", addr: "127.0.0.1"},
		{name: "samehost: the header's address is not", c: conn{user: "pp_same"}, hdr: proxyV2Header(0x21, "10.1.2.3:5555"), want: rej("10.1.2.3", "pp_same", ssl)},
		{name: "samenet: the header's address is on lo's net", c: conn{user: "pp_samenet"}, hdr: proxyV2Header(0x21, "127.0.0.9:5555"), want: "ok", addr: "127.0.0.9"},
		{name: "samenet: the header's address is not", c: conn{user: "pp_samenet"}, hdr: proxyV2Header(0x21, "10.1.2.3:5555"), want: rej("10.1.2.3", "pp_samenet", ssl)},
		{name: "cert line, admitted", c: conn{user: "alice", cert: "alice"}, hdr: proxyV2Header(0x21, "10.2.0.9:5555"), want: "ok", addr: "10.2.0.9"},
		{name: "cert line, refused", c: conn{user: "alice", cert: "alice"}, hdr: proxyV2Header(0x21, "10.1.0.9:5555"), want: rej("10.1.0.9", "alice", ssl)},
		{name: "v6 header", c: conn{user: "pp_net"}, hdr: proxyV2Header(0x21, "[fd00::9]:5555"), want: rej("fd00::9", "pp_net", ssl)},
		{name: "v4-mapped v6 header is IPv4", c: conn{user: "pp_net"}, hdr: proxyV2Header(0x21, "[::ffff:10.1.2.5]:5555"), want: "ok", addr: "10.1.2.5"},
		// LOCAL: the balancer speaking for itself; the socket's own
		// address (127.0.0.1) is the client's.
		{name: "LOCAL uses the real address", c: conn{user: "pp_same"}, hdr: proxyV2Header(0x20, ""), want: "ok", addr: "127.0.0.1"},
		{name: "LOCAL, refused by the real address", c: conn{user: "pp_net"}, hdr: proxyV2Header(0x20, ""), want: rej("127.0.0.1", "pp_net", ssl)},
		{name: "v1 UNKNOWN uses the real address", c: conn{user: "pp_same"}, hdr: []byte("PROXY UNKNOWN\r\n"), want: "ok", addr: "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, o := proxyAttempt(t, w, tc.c, proxyDial("", tc.hdr, tc.joined), "SELECT current_setting('pgcertgate.client_addr')")
			if tc.want == "ok" {
				if !o.ok {
					t.Fatalf("refused: %s\n%s", o, w.logBuf.String())
				}
				if got != tc.addr {
					t.Fatalf("backend sees client_addr %q, want %q", got, tc.addr)
				}
				return
			}
			if o.String() != tc.want {
				t.Fatalf("got %s\nwant %s", o, tc.want)
			}
		})
	}
	// The audit events name the header's address, and the balancer's.
	logs := w.logBuf.String()
	for _, want := range []string{`client=10.9.2.3 client_port=5555`, `proxy_peer=127.0.0.1:`, `client=10.1.2.3 client_port=5555`, `proxy_command=local`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// rawExchange connects from src, sends data, and reads until the server
// closes; it returns what the server sent.
func rawExchange(t *testing.T, addr, src string, data []byte) []byte {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if len(data) > 0 {
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection; read %q", got)
	}
	return got
}

func TestProxyProtocolRefusals(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{
		hba:       proxyHBA,
		extraTOML: "proxy_protocol = \"on\"\nproxy_protocol_trusted = [\"127.0.0.1/32\"]\nauthentication_timeout = \"3s\"",
	})
	w.setup(t, "CREATE ROLE pp_samenet LOGIN")
	sslRequest := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)
	hdr := proxyV2Header(0x21, "10.1.2.3:5555")
	for _, tc := range []struct {
		name, src string
		data      []byte
		reason    string // the audit event's reason
	}{
		{name: "trusted source without a header", data: sslRequest, reason: "proxy_header_missing"},
		{name: "untrusted source with a v2 header", src: "127.0.0.2", data: append(hdr, sslRequest...), reason: "proxy_header_untrusted"},
		{name: "untrusted source with a v1 header", src: "127.0.0.2", data: []byte("PROXY TCP4 10.1.2.3 127.0.0.1 1 2\r\n"), reason: "proxy_header_untrusted"},
		{name: "malformed v1", data: []byte("PROXY TCP4 10.1.2.3 127.0.0.1 1\r\n"), reason: "proxy_header_invalid"},
		{name: "v1 without CRLF in 107 bytes", data: []byte("PROXY TCP4 " + strings.Repeat("9", 200)), reason: "proxy_header_invalid"},
		{name: "oversized v2", data: append(hdr[:14:14], 0xff, 0xff), reason: "proxy_header_invalid"},
		{name: "truncated v2, then silence", data: hdr[:20], reason: "proxy_header_invalid"},
		{name: "v2 TLV overrunning the header", data: proxyV2Header(0x21, "10.1.2.3:5555", []byte{0xE0, 0, 9, 'x'}), reason: "proxy_header_invalid"},
		{name: "v2 UDP", data: func() []byte { h := proxyV2Header(0x21, "10.1.2.3:5555"); h[13] = 0x12; return h }(), reason: "proxy_header_invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.logBuf.reset()
			if got := rawExchange(t, w.addr, tc.src, tc.data); len(got) != 0 {
				t.Fatalf("server answered %q; want a silent close", got)
			}
			logs := w.logBuf.String()
			if !strings.Contains(logs, "reason="+tc.reason) || !strings.Contains(logs, "connection refused") {
				t.Fatalf("log lacks a refusal with reason=%s:\n%s", tc.reason, logs)
			}
		})
	}
	// An untrusted source that sends no header is served as before.
	t.Run("untrusted source without a header", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cfg, err := pgconn.ParseConfig(w.conninfo(proxy, conn{user: "pp_samenet"}))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DialFunc = proxyDial("127.0.0.2", nil, false)
		pc, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		pc.Close(ctx)
	})
}
