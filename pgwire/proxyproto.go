package pgwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/pires/go-proxyproto"
)

// PROXY protocol framing (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
const (
	// proxyV2PrefixLen is the v2 signature, version/command, family and
	// the 16-bit length of what follows.
	proxyV2PrefixLen = 16
	// maxProxyHeaderLen bounds a v2 header, prefix included. Addresses
	// take at most 216 bytes (two Unix paths); the rest is TLVs, of which
	// HAProxy and the cloud balancers send a few hundred bytes at most.
	// The length is checked before the payload is read, and the whole
	// header fits in the startup reader's buffer.
	maxProxyHeaderLen = 2048
	// maxProxyV1Len is the v1 spec's longest line, CRLF included; the
	// parser stops there.
	maxProxyV1Len = 107
)

var (
	proxySigV1 = []byte("PROXY")
	proxySigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// errNoProxyHeader: the connection does not start with a PROXY signature.
var errNoProxyHeader = errors.New("no PROXY protocol header")

// proxyHeader is what a PROXY header says of the connection.
type proxyHeader struct {
	version byte
	// local is set for a v2 LOCAL command (the balancer's own health
	// check) and for v1's UNKNOWN: the spec says to use the real
	// connection's addresses then.
	local bool
	// src is the client's address and port, for a PROXY command.
	src netip.AddrPort
	// forwarded: the TLV of a cancel forwarded by a peer replica.
	forwarded bool
}

// hasProxySignature reports whether r starts with a v1 or v2 PROXY
// signature. It waits only for the bytes a signature needs, and only when
// the first byte could start one: a PostgreSQL startup packet's first byte
// is the high byte of a length below 10000, never 'P' or '\r'.
func hasProxySignature(r *bufio.Reader) bool {
	first, err := r.Peek(1)
	if err != nil {
		return false
	}
	sig := proxySigV1
	switch first[0] {
	case proxySigV1[0]:
	case proxySigV2[0]:
		sig = proxySigV2
	default:
		return false
	}
	b, err := r.Peek(len(sig))
	return err == nil && bytes.Equal(b, sig)
}

// readProxyHeader reads one PROXY v1 or v2 header from r and consumes
// exactly its bytes: whatever the client sent after it stays in r, which
// is the startup reader. errNoProxyHeader means r holds no signature (and
// nothing was consumed); any other error means a malformed, truncated or
// oversized header, after which r is not to be read again.
func readProxyHeader(r *bufio.Reader) (*proxyHeader, error) {
	if !hasProxySignature(r) {
		return nil, errNoProxyHeader
	}
	if first, _ := r.Peek(1); first[0] == proxySigV2[0] {
		// Check the length before the parser reads the payload.
		prefix, err := r.Peek(proxyV2PrefixLen)
		if err != nil {
			return nil, fmt.Errorf("truncated PROXY v2 header: %w", err)
		}
		if n := proxyV2PrefixLen + int(binary.BigEndian.Uint16(prefix[14:16])); n > maxProxyHeaderLen {
			return nil, fmt.Errorf("PROXY v2 header of %d bytes exceeds the limit of %d", n, maxProxyHeaderLen)
		}
	}
	h, err := proxyproto.Read(r)
	if err != nil {
		return nil, err
	}
	out := &proxyHeader{version: h.Version}
	if h.Command.IsLocal() {
		out.local = true
		return out, nil
	}
	if h.Version == 2 {
		// Unknown TLVs are ignored, as the spec asks, but a TLV vector
		// that does not parse makes the whole header malformed.
		tlvs, err := h.TLVs()
		if err != nil {
			return nil, err
		}
		for _, t := range tlvs {
			if t.Type == pp2TypeForwardedCancel && bytes.Equal(t.Value, forwardedCancelMark) {
				out.forwarded = true
			}
		}
	}
	src, ok := h.SourceAddr.(*net.TCPAddr)
	if !ok || !h.TransportProtocol.IsStream() || h.TransportProtocol.IsUnix() {
		// A datagram or Unix-socket client cannot be a PostgreSQL TCP
		// client, and has no address pg_hba.conf could match.
		return nil, fmt.Errorf("PROXY header for an unsupported transport (%#02x)", byte(h.TransportProtocol))
	}
	addr, ok := netip.AddrFromSlice(src.IP)
	if !ok {
		return nil, fmt.Errorf("PROXY header with an invalid source address")
	}
	out.src = netip.AddrPortFrom(addr.Unmap(), uint16(src.Port))
	return out, nil
}

// acceptProxyHeader applies proxy_protocol to a new TCP connection, under
// authentication_timeout: a source in proxy_protocol_trusted must start
// with a header, whose source address becomes the client's address for
// everything after (pg_hba.conf, logs, pass_client_identity); any other
// source that sends one is refused, because a header is trivially forged.
func (c *clientConn) acceptProxyHeader() error {
	cfg := c.state.rt.Config
	if c.local != nil || !cfg.ProxyProtocolOn() {
		return nil
	}
	if !cfg.ProxyTrusted(c.addr) {
		if hasProxySignature(c.r.Reader) {
			return &Error{Severity: severityFatal, Reason: "proxy_header_untrusted",
				LogDetail: "PROXY protocol header from a source not in proxy_protocol_trusted"}
		}
		return nil
	}
	if _, err := c.r.Peek(1); err != nil {
		// Closed before a byte: a balancer's plain TCP check, or a
		// timeout; logged as any silent startup close.
		return errSilentClose
	}
	h, err := readProxyHeader(c.r.Reader)
	if errors.Is(err, errNoProxyHeader) {
		return &Error{Severity: severityFatal, Reason: "proxy_header_missing",
			LogDetail: "connection from a proxy_protocol_trusted source did not start with a PROXY protocol header"}
	}
	if err != nil {
		return &Error{Severity: severityFatal, Reason: "proxy_header_invalid", LogDetail: err.Error()}
	}
	proxyPeer := netip.AddrPortFrom(c.addr, c.port)
	c.note(slog.String("proxy_peer", proxyPeer.String()), slog.Int("proxy_version", int(h.version)))
	if h.local {
		c.note(slog.String("proxy_command", "local"))
		return nil
	}
	c.addr, c.port = h.src.Addr(), h.src.Port()
	if h.forwarded {
		c.forwardedCancel = true
		c.note(slog.Bool("forwarded_cancel", true))
	}
	c.setNote("client", slog.StringValue(c.addr.String()))
	c.setNote("client_port", slog.Uint64Value(uint64(c.port)))
	return nil
}

// setNote replaces the value of an audit attribute already noted.
func (c *clientConn) setNote(key string, v slog.Value) {
	for i := range c.attrs {
		if c.attrs[i].Key == key {
			c.attrs[i].Value = v
			return
		}
	}
	c.attrs = append(c.attrs, slog.Attr{Key: key, Value: v})
}
