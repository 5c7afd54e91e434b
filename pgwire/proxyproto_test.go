package pgwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// proxyV2 builds a PROXY v2 header: version/command byte, family/transport
// byte, then the payload with its length.
func proxyV2(verCmd, famProto byte, payload []byte) []byte {
	b := append([]byte(nil), proxySigV2...)
	b = append(b, verCmd, famProto)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

// v4Payload is a TCP4 address block: source, destination, ports.
func v4Payload(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func v6Payload(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func tlv(typ byte, value []byte) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint16(b, uint16(len(value)))
	return append(b, value...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestReadProxyHeader(t *testing.T) {
	// What follows every header: an SSLRequest. It must come out of the
	// reader intact whatever the header was.
	after := special(sslRequestCode)
	for _, tc := range []struct {
		name  string
		in    []byte
		src   string // client address:port; "" for none
		local bool
		err   string // substring of the error; "" for none
		// alone: the connection ends after in, with nothing following.
		alone bool
	}{
		{name: "v1 tcp4", in: []byte("PROXY TCP4 10.1.2.3 192.168.0.1 5555 6432\r\n"), src: "10.1.2.3:5555"},
		{name: "v1 tcp6", in: []byte("PROXY TCP6 fd00::7 fd00::1 40000 6432\r\n"), src: "[fd00::7]:40000"},
		{name: "v1 unknown", in: []byte("PROXY UNKNOWN\r\n"), local: true},
		{name: "v1 unknown with addresses", in: []byte("PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\n"), local: true},
		{name: "v1 without CR", in: []byte("PROXY TCP4 10.1.2.3 192.168.0.1 5555 6432\n"), err: `must end with \r\n`},
		{name: "v1 too long", in: []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"), err: "107 bytes"},
		{name: "v1 bad address", in: []byte("PROXY TCP4 10.1.2.300 192.168.0.1 5555 6432\r\n"), err: "address"},
		{name: "v1 v6 address in tcp4", in: []byte("PROXY TCP4 fd00::7 192.168.0.1 5555 6432\r\n"), err: "address"},
		{name: "v1 bad port", in: []byte("PROXY TCP4 10.1.2.3 192.168.0.1 65536 6432\r\n"), err: "port"},
		{name: "v1 truncated", in: []byte("PROXY TCP4 10.1.2.3 19"), err: "header"},
		{name: "v2 tcp4", in: proxyV2(0x21, 0x11, v4Payload("10.1.2.3", "10.0.0.1", 5555, 6432)), src: "10.1.2.3:5555"},
		{name: "v2 tcp6", in: proxyV2(0x21, 0x21, v6Payload("fd00::7", "fd00::1", 40000, 6432)), src: "[fd00::7]:40000"},
		{name: "v2 v4-mapped source", in: proxyV2(0x21, 0x21, v6Payload("::ffff:10.1.2.3", "::1", 1, 2)), src: "10.1.2.3:1"},
		{name: "v2 local", in: proxyV2(0x20, 0x00, nil), local: true},
		{name: "v2 local with an address block", in: proxyV2(0x20, 0x11, v4Payload("10.1.2.3", "10.0.0.1", 1, 2)), local: true},
		{name: "v2 unknown TLVs", in: proxyV2(0x21, 0x11, cat(v4Payload("10.1.2.3", "10.0.0.1", 5555, 6432),
			tlv(0xE0, []byte("forwarded?")), tlv(0x30, nil), tlv(0xEE, bytes.Repeat([]byte{0xff}, 300)))), src: "10.1.2.3:5555"},
		{name: "v2 TLV past the end", in: proxyV2(0x21, 0x11, cat(v4Payload("10.1.2.3", "10.0.0.1", 1, 2), []byte{0xE0, 0x00, 0x09, 'x'})), err: "TLV"},
		{name: "v2 oversized", in: proxyV2(0x21, 0x11, make([]byte, maxProxyHeaderLen)), err: "exceeds the limit"},
		{name: "v2 oversized length word", in: cat(proxySigV2, []byte{0x21, 0x11, 0xff, 0xff}), err: "exceeds the limit"},
		{name: "v2 truncated prefix", in: cat(proxySigV2, []byte{0x21, 0x11}), err: "truncated", alone: true},
		{name: "v2 truncated signature", in: proxySigV2[:8], err: errNoProxyHeader.Error(), alone: true},
		{name: "v1 truncated alone", in: []byte("PROXY TCP4 10.1.2.3 19"), err: "header", alone: true},
		{name: "v2 truncated payload alone", in: cat(proxySigV2, []byte{0x21, 0x11, 0, 12, 10, 1, 2}), err: "address", alone: true},
		{name: "v2 truncated payload", in: cat(proxySigV2, []byte{0x21, 0x11, 0, 12, 10, 1, 2}), err: "address"},
		{name: "v2 short address block", in: proxyV2(0x21, 0x11, []byte{10, 1, 2, 3}), err: "length"},
		{name: "v2 version 3", in: proxyV2(0x31, 0x11, v4Payload("10.1.2.3", "10.0.0.1", 1, 2)), err: "version"},
		{name: "v2 unknown command", in: proxyV2(0x2F, 0x11, v4Payload("10.1.2.3", "10.0.0.1", 1, 2)), err: "command"},
		{name: "v2 udp", in: proxyV2(0x21, 0x12, v4Payload("10.1.2.3", "10.0.0.1", 1, 2)), err: "unsupported transport"},
		{name: "v2 unix", in: proxyV2(0x21, 0x31, make([]byte, 216)), err: "unsupported transport"},
		{name: "v2 proxy unspec", in: proxyV2(0x21, 0x00, nil), err: "unsupported"},
		{name: "startup packet", in: nil, err: errNoProxyHeader.Error()},
		{name: "P but not PROXY", in: []byte("POST / HTTP/1.1\r\n"), err: errNoProxyHeader.Error()},
		{name: "CR but not v2", in: []byte("\r\n\r\n\x00\r\nQUIZ\n0000"), err: errNoProxyHeader.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after := after
			if tc.alone {
				after = nil
			}
			r := bufio.NewReaderSize(bytes.NewReader(cat(tc.in, after)), 8192)
			h, err := readProxyHeader(r)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if errors.Is(err, errNoProxyHeader) {
					rest, _ := io.ReadAll(r)
					if want := cat(tc.in, after); !bytes.Equal(rest, want) {
						t.Fatalf("no header, but the reader lost bytes: %q left of %q", rest, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.local != tc.local {
				t.Fatalf("local = %v, want %v", h.local, tc.local)
			}
			if got := h.src; tc.src != "" && got.String() != tc.src {
				t.Fatalf("source %s, want %s", got, tc.src)
			}
			rest, _ := io.ReadAll(r)
			if !bytes.Equal(rest, after) {
				t.Fatalf("after the header the reader holds %q, want %q", rest, after)
			}
		})
	}
}

// TestReadProxyHeaderWaitsForV1 checks that a v1 header is read without
// waiting for bytes past its CRLF: HAProxy may send it alone, and the
// PostgreSQL client's first packet can be shorter than a v1 line's
// longest form.
func TestReadProxyHeaderWaitsForV1(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		_, _ = pw.Write([]byte("PROXY TCP4 10.1.2.3 10.0.0.1 1 2\r\n"))
	}()
	h, err := readProxyHeader(bufio.NewReader(pr))
	if err != nil {
		t.Fatal(err)
	}
	if h.src.String() != "10.1.2.3:1" {
		t.Fatalf("source %s", h.src)
	}
}

// FuzzProxyHeader checks the header reader on any input: it never
// panics, never consumes more than a header's bounds, and never loses a
// byte that follows the header.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 10.1.2.3 192.168.0.1 5555 6432\r\n\x00\x00\x00\x08\x04\xd2\x16\x2f"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(proxyV2(0x21, 0x11, v4Payload("10.1.2.3", "10.0.0.1", 5555, 6432)))
	f.Add(proxyV2(0x20, 0x00, nil))
	f.Add(proxyV2(0x21, 0x21, cat(v6Payload("fd00::7", "fd00::1", 1, 2), tlv(0xE0, []byte("x")))))
	f.Add(startupMsg(3<<16, "user", "alice"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 8192)
		h, err := readProxyHeader(r)
		rest, _ := io.ReadAll(r)
		consumed := len(data) - len(rest)
		switch {
		case errors.Is(err, errNoProxyHeader):
			if consumed != 0 {
				t.Fatalf("no header, but %d bytes consumed", consumed)
			}
		case err != nil:
			return
		default:
			if !bytes.Equal(rest, data[consumed:]) {
				t.Fatal("bytes after the header changed")
			}
			limit := maxProxyHeaderLen
			if h.version == 1 {
				limit = maxProxyV1Len
			}
			if consumed > limit {
				t.Fatalf("v%d header of %d bytes accepted", h.version, consumed)
			}
			if !h.local && !h.src.IsValid() {
				t.Fatal("PROXY command without a source address")
			}
		}
	})
}
