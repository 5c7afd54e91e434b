package integration

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// Hostile startups, because the proxy answers anyone who can reach its
// port before any authentication: raw sockets and crypto/tls against the
// in-process proxy. Each case prints the exact bytes the client receives
// as a transcript, compares it with what PostgreSQL 15 itself sends where
// the behaviour is shared, and then shows the proxy still serving a normal
// certificate login.
//
// A transcript is a space-separated list of what arrived, in order:
//
//	'S' 'N' 'G'        a one-byte answer to SSLRequest or GSSENCRequest
//	tls(TLS 1.3 alpn=…) a completed TLS handshake
//	tls-error(…)       a failed handshake: the alert or error the client got
//	E(S=… V=… C=… M=… D=… H=…)  an ErrorResponse (F, L, R, which PostgreSQL
//	                   adds and pgcertgate does not, are left out)
//	v(3.2 [_pq_.x])    NegotiateProtocolVersion
//	R(0) K(4) Z(I)     AuthenticationOk, BackendKeyData (key length), ReadyForQuery
//	T D(…) C(…)        a query's RowDescription, DataRow and CommandComplete
//	                   (ParameterStatus messages are left out: their values vary)
//	raw("…")           bytes that are no protocol 3 message
//	closed             end of stream (FIN, reset or close_notify)
//	open               the server still waits (after the read deadline)

const hostileHBA = "hostssl all all 127.0.0.1/32 cert\n"

// hostileAuthTimeout is the authentication_timeout of the worlds that test
// it: PostgreSQL's minimum is 1s, and a normal login must still fit.
const hostileAuthTimeout = 2 * time.Second

func hostileWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, newPKI(t), worldOptions{hba: hostileHBA, conf: map[string]string{
		"authentication_timeout": fmt.Sprintf("%ds", int(hostileAuthTimeout/time.Second)),
	}})
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE DATABASE app OWNER alice")
	return w
}

// hostileProxy starts a second pgcertgate in front of w's PostgreSQL with
// some settings of w's configuration changed (the harness's own settings
// cannot be overridden through extraTOML: TOML refuses a key twice).
func hostileProxy(t *testing.T, w *world, name string, settings map[string]string) (addr string) {
	t.Helper()
	data, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	for key, value := range settings {
		line := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + ` = .*$`)
		if line.MatchString(cfg) {
			cfg = line.ReplaceAllLiteralString(cfg, key+" = "+value)
		} else {
			cfg = strings.Replace(cfg, "[backend]", key+" = "+value+"\n[backend]", 1)
		}
	}
	path := filepath.Join(w.dir, "pgcertgate-"+name+".toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := config.Load(path)
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	log := &syncBuffer{}
	srv := pgwire.New(pgwire.Options{Runtime: rt, Logger: hostileLogger(log)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing proxy %s: %v", name, err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("proxy %s log:\n%s", name, log.String())
		}
	})
	return ln.Addr().String()
}

// hostileLogger is the second proxy's logger, shown when a test fails.
func hostileLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// hostileAttempt logs alice in through the proxy at addr and asks who she
// is.
func hostileAttempt(w *world, addr string) outcome {
	// A later port= in the conninfo wins over the harness proxy's.
	_, port, _ := net.SplitHostPort(addr)
	return w.attempt(proxy, conn{user: "alice", database: "app", cert: "alice", extra: "port=" + port})
}

// hostileStillServes asserts a normal certificate login through the proxy.
func hostileStillServes(t *testing.T, w *world, addr string) {
	t.Helper()
	if o := hostileAttempt(w, addr); !o.ok || o.user != "alice" {
		t.Fatalf("a normal login through the proxy afterwards: %v", o)
	}
}

// hostileClient is one raw client connection and what it received.
type hostileClient struct {
	t          *testing.T
	w          *world
	conn       net.Conn // the TCP connection, or the TLS one over it
	raw        net.Conn
	transcript []string
	bytes      []byte // everything received, for the log
}

func hostileDial(t *testing.T, w *world, addr string) *hostileClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &hostileClient{t: t, w: w, conn: c, raw: c}
}

func (h *hostileClient) note(s string) { h.transcript = append(h.transcript, s) }

func (h *hostileClient) write(b []byte) {
	h.t.Helper()
	if _, err := h.conn.Write(b); err != nil {
		h.note("write-error(" + err.Error() + ")")
	}
}

// byte reads a one-byte answer (SSLRequest, GSSENCRequest).
func (h *hostileClient) byte() byte {
	h.t.Helper()
	b := make([]byte, 1)
	if _, err := io.ReadFull(h.conn, b); err != nil {
		h.note(hostileEnd(err))
		return 0
	}
	h.bytes = append(h.bytes, b...)
	h.note(fmt.Sprintf("'%c'", b[0]))
	return b[0]
}

// tlsConfig is alice's verify-full TLS client configuration.
func (h *hostileClient) tlsConfig(alpn ...string) *tls.Config {
	return &tls.Config{
		ServerName:   "localhost",
		RootCAs:      h.w.pki.root.Pool(),
		Certificates: []tls.Certificate{h.w.pki.clients["alice"].TLSCertificate()},
		NextProtos:   alpn,
	}
}

// handshake runs a TLS client handshake over the connection.
func (h *hostileClient) handshake(cfg *tls.Config) bool {
	tc := tls.Client(h.raw, cfg)
	if err := tc.Handshake(); err != nil {
		msg := err.Error()
		if ne, ok := errors.AsType[*net.OpError](err); ok {
			msg = ne.Op + ": " + ne.Err.Error()
		}
		h.note("tls-error(" + msg + ")")
		return false
	}
	cs := tc.ConnectionState()
	h.note(fmt.Sprintf("tls(%s alpn=%q)", tls.VersionName(cs.Version), cs.NegotiatedProtocol))
	h.conn = tc
	return true
}

// readAll reads until the server closes (or the read deadline passes) and
// notes every message.
func (h *hostileClient) readAll(wait time.Duration) {
	_ = h.conn.SetReadDeadline(time.Now().Add(wait))
	data, err := io.ReadAll(h.conn)
	h.bytes = append(h.bytes, data...)
	h.transcript = append(h.transcript, hostileMessages(data)...)
	h.note(hostileEnd(err))
}

// readUntil reads messages until one of type typ (e.g. 'Z').
func (h *hostileClient) readUntil(typ byte) {
	h.t.Helper()
	var buf []byte
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(h.conn, hdr); err != nil {
			h.transcript = append(h.transcript, hostileMessages(buf)...)
			h.note(hostileEnd(err))
			return
		}
		body := make([]byte, int(binary.BigEndian.Uint32(hdr[1:]))-4)
		if _, err := io.ReadFull(h.conn, body); err != nil {
			h.note(hostileEnd(err))
			return
		}
		buf = append(append(buf, hdr...), body...)
		if hdr[0] == typ {
			h.bytes = append(h.bytes, buf...)
			h.transcript = append(h.transcript, hostileMessages(buf)...)
			return
		}
	}
}

func (h *hostileClient) String() string { return strings.Join(h.transcript, " ") }

// hostileEnd names how a read ended.
func hostileEnd(err error) string {
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "open"
	}
	return "read-error(" + err.Error() + ")"
}

// hostileMessages renders protocol 3 backend messages.
func hostileMessages(data []byte) []string {
	var out []string
	for len(data) > 0 {
		if len(data) < 5 || int(binary.BigEndian.Uint32(data[1:])) < 4 || int(binary.BigEndian.Uint32(data[1:]))+1 > len(data) {
			out = append(out, fmt.Sprintf("raw(%q)", data))
			break
		}
		n := int(binary.BigEndian.Uint32(data[1:])) + 1
		typ, body := data[0], data[5:n]
		data = data[n:]
		switch typ {
		case 'E', 'N':
			var fields []string
			for len(body) > 1 {
				code := body[0]
				val, rest, _ := strings.Cut(string(body[1:]), "\x00")
				body = []byte(rest)
				if strings.IndexByte("FLR", code) >= 0 {
					continue
				}
				if strings.IndexByte("SVC", code) >= 0 {
					fields = append(fields, fmt.Sprintf("%c=%s", code, val))
				} else {
					fields = append(fields, fmt.Sprintf("%c=%q", code, val))
				}
			}
			out = append(out, fmt.Sprintf("%c(%s)", typ, strings.Join(fields, " ")))
		case 'v':
			newest := binary.BigEndian.Uint32(body)
			opts := strings.Split(strings.TrimSuffix(string(body[8:]), "\x00"), "\x00")
			if len(body) == 8 {
				opts = nil
			}
			out = append(out, fmt.Sprintf("v(%d.%d %v)", newest>>16, newest&0xffff, opts))
		case 'R':
			out = append(out, fmt.Sprintf("R(%d)", binary.BigEndian.Uint32(body)))
		case 'K':
			out = append(out, fmt.Sprintf("K(%d)", len(body)-4))
		case 'Z':
			out = append(out, fmt.Sprintf("Z(%c)", body[0]))
		case 'S':
			// ParameterStatus: values differ between runs; left out.
		case 'D':
			var vals []string
			cols := int(binary.BigEndian.Uint16(body))
			body = body[2:]
			for range cols {
				l := int(int32(binary.BigEndian.Uint32(body)))
				vals = append(vals, string(body[4:4+l]))
				body = body[4+l:]
			}
			out = append(out, fmt.Sprintf("D(%s)", strings.Join(vals, ",")))
		case 'C':
			out = append(out, fmt.Sprintf("C(%s)", strings.TrimSuffix(string(body), "\x00")))
		default:
			out = append(out, fmt.Sprintf("%c", typ))
		}
	}
	return out
}

// Message builders.

func hostileStartup(proto uint32, kv ...string) []byte {
	body := binary.BigEndian.AppendUint32(nil, proto)
	for _, s := range kv {
		body = append(append(body, s...), 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

func hostileSpecial(code uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), code)
}

const (
	hostileSSLRequest    = 80877103
	hostileGSSENCRequest = 80877104
	hostileCancelRequest = 80877102
	hostileProto30       = 3 << 16
)

var hostileAlice = []string{"user", "alice", "database", "app"}

// hostileCase is one hostile exchange. run drives a fresh connection; the
// transcripts it leaves are compared with proxy (pgcertgate) and postgres
// (PostgreSQL 15 directly; "" where PostgreSQL 15 has no such behaviour,
// e.g. direct TLS, which came with 17).
type hostileCase struct {
	name     string
	run      func(h *hostileClient)
	proxy    string
	postgres string
	// differs explains a deliberate difference from PostgreSQL 15.
	differs string
	// timeout cases run against servers with authentication_timeout =
	// hostileAuthTimeout and must end when it expires, not before.
	timeout bool
}

// hostileSSLThen sends SSLRequest, completes the TLS handshake with alice's
// certificate and sends msg through TLS.
func hostileSSLThen(msg []byte) func(h *hostileClient) {
	return func(h *hostileClient) {
		h.write(hostileSpecial(hostileSSLRequest))
		if h.byte() != 'S' || !h.handshake(h.tlsConfig()) {
			return
		}
		h.write(msg)
		h.readAll(10 * time.Second)
	}
}

// hostileSend writes msg in plaintext and reads the answer.
func hostileSend(msg []byte) func(h *hostileClient) {
	return func(h *hostileClient) {
		h.write(msg)
		h.readAll(10 * time.Second)
	}
}

func hostileCases() []hostileCase {
	length := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	garbage := make([]byte, 1024)
	rng := rand.New(rand.NewPCG(5, 23214))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	garbage[0] = 0x7f // a length word far beyond 10000, not a TLS record
	noTerminator := hostileStartup(hostileProto30, hostileAlice...)
	noTerminator = noTerminator[:len(noTerminator)-1]
	binary.BigEndian.PutUint32(noTerminator, uint32(len(noTerminator)))
	// A StartupMessage whose body is exactly 10000 bytes, the largest
	// PostgreSQL accepts, padded with a custom setting (which, unlike
	// application_name, draws no truncation NOTICE).
	base := len(hostileStartup(hostileProto30, append(hostileAlice, "hostile.pad", "")...)) - 4
	maxBody := hostileStartup(hostileProto30, append(hostileAlice, "hostile.pad", strings.Repeat("x", 10000-base))...)
	tooLong := hostileStartup(hostileProto30, append(hostileAlice, "hostile.pad", strings.Repeat("x", 10001-base))...)
	login := "R(0) K(4) Z(I) T D(alice) C(SELECT 1) Z(I)"
	const fatal = "E(S=FATAL V=FATAL "
	hbaNoEncryption := fatal + `C=28000 M="no pg_hba.conf entry for host \"127.0.0.1\", user \"alice\", database \"app\", no encryption") closed`
	badReplication := fatal + `C=22023 M="invalid value for parameter \"replication\": \"maybe\"" H="Valid values are: \"false\", 0, \"true\", 1, \"database\".") closed`
	unencrypted := `'S' tls(TLS 1.3 alpn="") ` + fatal + `C=08P01 M="received unencrypted data after SSL request" D="This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.") closed`
	queryAfterLogin := func(h *hostileClient) {
		h.readUntil('Z')
		q := append([]byte("select current_user"), 0)
		h.write(append(binary.BigEndian.AppendUint32([]byte{'Q'}, uint32(4+len(q))), q...))
		h.readUntil('Z')
	}
	return []hostileCase{
		{name: "length 0", run: hostileSend(length(0)), proxy: "closed", postgres: "closed"},
		{name: "length 3", run: hostileSend(length(3)), proxy: "closed", postgres: "closed"},
		{name: "length 7 (body 3)", run: hostileSend(length(7)), proxy: "closed", postgres: "closed"},
		{name: "length 10005 (body 10001)", run: hostileSend(length(10005)), proxy: "closed", postgres: "closed"},
		{name: "body 10001 bytes, sent whole", run: hostileSend(tooLong), proxy: "closed", postgres: "closed"},
		{name: "length 2^31-1", run: hostileSend(length(1<<31 - 1)), proxy: "closed", postgres: "closed"},
		{name: "length -1", run: hostileSend(length(0xffffffff)), proxy: "closed", postgres: "closed"},
		{name: "length -2^31", run: hostileSend(length(0x80000000)), proxy: "closed", postgres: "closed"},
		{name: "HTTP request", run: hostileSend([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")), proxy: "closed", postgres: "closed"},
		{name: "random garbage", run: hostileSend(garbage), proxy: "closed", postgres: "closed"},
		{
			name: "body of exactly 10000 bytes is accepted",
			run: func(h *hostileClient) {
				h.write(hostileSpecial(hostileSSLRequest))
				if h.byte() != 'S' || !h.handshake(h.tlsConfig()) {
					return
				}
				h.write(maxBody)
				queryAfterLogin(h)
			},
			proxy:    `'S' tls(TLS 1.3 alpn="") ` + login,
			postgres: `'S' tls(TLS 1.3 alpn="") ` + login,
		},
		{
			name: "plaintext after SSLRequest (CVE-2021-23214)",
			run: func(h *hostileClient) {
				// One write: the startup packet is buffered before the
				// handshake, as a man in the middle would inject it.
				h.write(append(hostileSpecial(hostileSSLRequest), hostileStartup(hostileProto30, hostileAlice...)...))
				if h.byte() != 'S' || !h.handshake(h.tlsConfig()) {
					return
				}
				h.readAll(10 * time.Second)
			},
			proxy: unencrypted, postgres: unencrypted,
		},
		{
			name:     "second SSLRequest",
			run:      hostileSSLThen(hostileSpecial(hostileSSLRequest)),
			proxy:    `'S' tls(TLS 1.3 alpn="") ` + fatal + `C=0A000 M="unsupported frontend protocol 1234.5679: server supports 3.0 to 3.2") closed`,
			postgres: `'S' tls(TLS 1.3 alpn="") ` + fatal + `C=0A000 M="unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0") closed`,
			differs:  "pgcertgate speaks protocol 3.2 (PostgreSQL 18); PostgreSQL 15 only 3.0",
		},
		{
			name:     "GSSENCRequest inside TLS",
			run:      hostileSSLThen(hostileSpecial(hostileGSSENCRequest)),
			proxy:    `'S' tls(TLS 1.3 alpn="") ` + fatal + `C=0A000 M="unsupported frontend protocol 1234.5680: server supports 3.0 to 3.2") closed`,
			postgres: `'S' tls(TLS 1.3 alpn="") ` + fatal + `C=0A000 M="unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0") closed`,
			differs:  "protocol 3.2, as above",
		},
		{
			name:     "protocol 2.0",
			run:      hostileSend(hostileStartup(2<<16, hostileAlice...)),
			proxy:    `raw("EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.2\n\x00") closed`,
			postgres: `raw("EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\x00") closed`,
			differs:  "protocol 3.2, as above",
		},
		{
			name:     "protocol 1.0",
			run:      hostileSend(hostileStartup(1<<16, hostileAlice...)),
			proxy:    `raw("EFATAL:  unsupported frontend protocol 1.0: server supports 3.0 to 3.2\n\x00") closed`,
			postgres: `raw("EFATAL:  unsupported frontend protocol 1.0: server supports 3.0 to 3.0\n\x00") closed`,
			differs:  "protocol 3.2, as above",
		},
		{
			name:     "protocol 4.0",
			run:      hostileSend(hostileStartup(4<<16, hostileAlice...)),
			proxy:    fatal + `C=0A000 M="unsupported frontend protocol 4.0: server supports 3.0 to 3.2") closed`,
			postgres: fatal + `C=0A000 M="unsupported frontend protocol 4.0: server supports 3.0 to 3.0") closed`,
			differs:  "protocol 3.2, as above",
		},
		{
			name:     "protocol 3.9 with a _pq_ option",
			run:      hostileSend(hostileStartup(3<<16|9, append(hostileAlice, "_pq_.hostile", "1")...)),
			proxy:    "v(3.2 [_pq_.hostile]) " + hbaNoEncryption,
			postgres: "v(3.0 [_pq_.hostile]) " + hbaNoEncryption,
			differs:  "protocol 3.2, as above",
		},
		{
			name:     "missing user",
			run:      hostileSend(hostileStartup(hostileProto30, "database", "app")),
			proxy:    fatal + `C=28000 M="no PostgreSQL user name specified in startup packet") closed`,
			postgres: fatal + `C=28000 M="no PostgreSQL user name specified in startup packet") closed`,
		},
		{
			name:     "bad replication value",
			run:      hostileSend(hostileStartup(hostileProto30, append(hostileAlice, "replication", "maybe")...)),
			proxy:    badReplication,
			postgres: badReplication,
		},
		{
			name:     "missing terminator",
			run:      hostileSend(noTerminator),
			proxy:    fatal + `C=08P01 M="invalid startup packet layout: expected terminator as last byte") closed`,
			postgres: fatal + `C=08P01 M="invalid startup packet layout: expected terminator as last byte") closed`,
		},
		{
			name:     "CancelRequest with an unknown key",
			run:      hostileSend(append(binary.BigEndian.AppendUint32(length(16), hostileCancelRequest), 0, 0, 0, 1, 1, 2, 3, 4)),
			proxy:    "closed",
			postgres: "closed",
		},
		{
			name:     "CancelRequest with a 300-byte key",
			run:      hostileSend(append(binary.BigEndian.AppendUint32(length(312), hostileCancelRequest), make([]byte, 304)...)),
			proxy:    "closed",
			postgres: "closed",
		},
		{
			name:     "CancelRequest cut short",
			run:      hostileSend(binary.BigEndian.AppendUint32(length(8), hostileCancelRequest)),
			proxy:    "closed",
			postgres: "closed",
		},
		{
			name: "direct TLS without ALPN",
			run: func(h *hostileClient) {
				if h.handshake(h.tlsConfig()) {
					h.write(hostileStartup(hostileProto30, hostileAlice...))
					h.readAll(10 * time.Second)
				}
			},
			proxy: `tls(TLS 1.3 alpn="") closed`,
		},
		{
			name: "GSSENCRequest",
			run: func(h *hostileClient) {
				h.write(hostileSpecial(hostileGSSENCRequest))
				if h.byte() != 'N' {
					return
				}
				// Declined: the client goes on with SSL on the same
				// connection, and logs in.
				h.write(hostileSpecial(hostileSSLRequest))
				if h.byte() != 'S' || !h.handshake(h.tlsConfig()) {
					return
				}
				h.write(hostileStartup(hostileProto30, hostileAlice...))
				queryAfterLogin(h)
			},
			proxy:    `'N' 'S' tls(TLS 1.3 alpn="") ` + login,
			postgres: `'G'`,
			differs:  "PostgreSQL built with GSSAPI (Debian's is) answers 'G'; pgcertgate does no GSSAPI and declines with 'N' by design",
		},
		{
			name: "TLS 1.1 ClientHello after SSLRequest",
			run: func(h *hostileClient) {
				h.write(hostileSpecial(hostileSSLRequest))
				if h.byte() == 'S' {
					h.handshake(hostileTLSVersion(h.tlsConfig(), tls.VersionTLS11))
				}
			},
			proxy:    `'S' tls-error(remote error: tls: protocol version not supported)`,
			postgres: `'S' tls-error(remote error: tls: protocol version not supported)`,
		},
		{
			name: "TLS 1.0 ClientHello after SSLRequest",
			run: func(h *hostileClient) {
				h.write(hostileSpecial(hostileSSLRequest))
				if h.byte() == 'S' {
					h.handshake(hostileTLSVersion(h.tlsConfig(), tls.VersionTLS10))
				}
			},
			proxy:    `'S' tls-error(remote error: tls: protocol version not supported)`,
			postgres: `'S' tls-error(remote error: tls: protocol version not supported)`,
		},
		{
			name:  "direct TLS 1.1 ClientHello",
			run:   func(h *hostileClient) { h.handshake(hostileTLSVersion(h.tlsConfig("postgresql"), tls.VersionTLS11)) },
			proxy: `tls-error(remote error: tls: protocol version not supported)`,
		},
		{
			name:  "direct TLS 1.0 ClientHello",
			run:   func(h *hostileClient) { h.handshake(hostileTLSVersion(h.tlsConfig("postgresql"), tls.VersionTLS10)) },
			proxy: `tls-error(remote error: tls: protocol version not supported)`,
		},
		{
			name: "truncated startup packet, then the client closes",
			run: func(h *hostileClient) {
				h.write(append(length(100), hostileStartup(hostileProto30, "user", "alice")[4:14]...))
				_ = h.raw.(*net.TCPConn).CloseWrite()
				h.readAll(10 * time.Second)
			},
			proxy: "closed", postgres: "closed",
		},
		{
			name: "truncated startup packet, then silence",
			run: func(h *hostileClient) {
				h.write(append(length(100), hostileStartup(hostileProto30, "user", "alice")[4:14]...))
				h.readAll(10 * time.Second)
			},
			proxy: "closed", postgres: "closed", timeout: true,
		},
		{
			name:     "no bytes at all",
			run:      func(h *hostileClient) { h.readAll(10 * time.Second) },
			proxy:    "closed",
			postgres: "closed",
			timeout:  true,
		},
		{
			name: "SSLRequest, then no handshake",
			run: func(h *hostileClient) {
				h.write(hostileSpecial(hostileSSLRequest))
				if h.byte() == 'S' {
					h.readAll(10 * time.Second)
				}
			},
			proxy: "'S' closed", postgres: "'S' closed", timeout: true,
		},
		{
			name: "TLS handshake done, then no startup packet",
			run: func(h *hostileClient) {
				h.write(hostileSpecial(hostileSSLRequest))
				if h.byte() == 'S' && h.handshake(h.tlsConfig()) {
					h.readAll(10 * time.Second)
				}
			},
			proxy: `'S' tls(TLS 1.3 alpn="") closed`, postgres: `'S' tls(TLS 1.3 alpn="") closed`, timeout: true,
		},
		{
			name:  "direct TLS with a foreign ALPN",
			run:   func(h *hostileClient) { h.handshake(h.tlsConfig("http/1.1", "h2")) },
			proxy: `tls-error(remote error: tls: no application protocol)`,
		},
		{
			name: "direct TLS with ALPN postgresql",
			run: func(h *hostileClient) {
				if h.handshake(h.tlsConfig("postgresql")) {
					h.write(hostileStartup(hostileProto30, hostileAlice...))
					queryAfterLogin(h)
				}
			},
			proxy: `tls(TLS 1.3 alpn="postgresql") ` + login,
		},
		{
			name: "SSLRequest with a foreign ALPN",
			run: func(h *hostileClient) {
				h.write(hostileSpecial(hostileSSLRequest))
				if h.byte() == 'S' {
					h.handshake(h.tlsConfig("http/1.1"))
				}
			},
			proxy:   `'S' tls-error(remote error: tls: no application protocol)`,
			differs: "PostgreSQL 15 ignores ALPN; 17 refuses a foreign one after SSLRequest too",
		},
	}
}

// hostileTLSVersion pins a client to one old TLS version.
func hostileTLSVersion(cfg *tls.Config, v uint16) *tls.Config {
	cfg.MinVersion, cfg.MaxVersion = v, v
	return cfg
}

func TestHostileStartup(t *testing.T) {
	w := hostileWorld(t)
	pgAddr := net.JoinHostPort(w.hostPort(direct))
	// The harness's proxy has authentication_timeout = 20s; the timeout
	// cases use a second one with PostgreSQL's setting.
	shortAddr := hostileProxy(t, w, "short-timeout", map[string]string{
		"authentication_timeout": fmt.Sprintf("%q", hostileAuthTimeout.String()),
	})
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			addr := w.addr
			if tc.timeout {
				// These wait for the timeout: run them side by side.
				t.Parallel()
				addr = shortAddr
			}
			for _, side := range []struct {
				name, addr, want string
			}{
				{"pgcertgate", addr, tc.proxy},
				{fmt.Sprintf("PostgreSQL %d", w.cluster.MajorVersion()), pgAddr, tc.postgres},
			} {
				began := time.Now()
				h := hostileDial(t, w, side.addr)
				tc.run(h)
				took := time.Since(began)
				t.Logf("%s: %s  (%v)\n  bytes: %s", side.name, h, took.Round(time.Millisecond), hostileQuote(h.bytes))
				if side.want != "" && h.String() != side.want {
					t.Errorf("%s sent\n  %s\nwant\n  %s", side.name, h, side.want)
				}
				if tc.timeout && side.want != "" && (took < hostileAuthTimeout-100*time.Millisecond || took > hostileAuthTimeout+5*time.Second) {
					t.Errorf("%s closed after %v, want authentication_timeout (%v)", side.name, took, hostileAuthTimeout)
				}
				if !tc.timeout && strings.HasSuffix(h.String(), "closed") && took > hostileAuthTimeout {
					t.Errorf("%s took %v to close", side.name, took)
				}
			}
			if tc.differs != "" {
				t.Logf("differs from PostgreSQL %d by design: %s", w.cluster.MajorVersion(), tc.differs)
			}
			hostileStillServes(t, w, addr)
		})
	}
}

// hostileQuote shows received bytes, eliding the middle of long ones.
func hostileQuote(b []byte) string {
	if len(b) <= 400 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q … (%d bytes) … %q", b[:300], len(b)-380, b[len(b)-80:])
}

// hostileLoginEventually logs in at addr until it works, for a slot the
// proxy frees just after the client sees its connection end. Every failed
// try must be the expected refusal.
func hostileLoginEventually(t *testing.T, w *world, addr string, refused func(outcome) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for tries := 1; ; tries++ {
		o := hostileAttempt(w, addr)
		if o.ok && o.user == "alice" {
			t.Logf("login works again (try %d)", tries)
			return
		}
		if !refused(o) {
			t.Fatalf("login: %v", o)
		}
		if time.Now().After(deadline) {
			t.Fatalf("login still refused after %d tries: %v", tries, o)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}
}

func TestLimits(t *testing.T) {
	w := hostileWorld(t)

	t.Run("max_connections", func(t *testing.T) {
		addr := hostileProxy(t, w, "max-connections", map[string]string{"max_connections": "3"})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, port, _ := net.SplitHostPort(addr)
		var sessions []*pgconn.PgConn
		for range 3 {
			pc, err := pgconn.Connect(ctx, w.conninfo(proxy, conn{user: "alice", database: "app", cert: "alice"})+" port="+port)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close(ctx)
			sessions = append(sessions, pc)
		}
		// The fourth gets 53300 after the TLS handshake and the startup
		// packet, as PostgreSQL sends it (it checks after
		// ProcessStartupPacket, before authentication).
		h := hostileDial(t, w, addr)
		hostileSSLThen(hostileStartup(hostileProto30, hostileAlice...))(h)
		t.Logf("fourth connection: %s", h)
		if want := `'S' tls(TLS 1.3 alpn="") E(S=FATAL V=FATAL C=53300 M="sorry, too many clients already") closed`; h.String() != want {
			t.Errorf("got\n  %s\nwant\n  %s", h, want)
		}
		// Plaintext too: the limit comes before pg_hba.conf.
		h = hostileDial(t, w, addr)
		hostileSend(hostileStartup(hostileProto30, hostileAlice...))(h)
		t.Logf("fourth connection in plaintext: %s", h)
		if want := `E(S=FATAL V=FATAL C=53300 M="sorry, too many clients already") closed`; h.String() != want {
			t.Errorf("got\n  %s\nwant\n  %s", h, want)
		}
		tooMany := func(o outcome) bool { return o.code == "53300" && o.message == "sorry, too many clients already" }
		if o := hostileAttempt(w, addr); !tooMany(o) {
			t.Errorf("pgx as the fourth: %v, want FATAL 53300", o)
		}
		// One session ends; a new login then works.
		if err := sessions[0].Close(ctx); err != nil {
			t.Fatal(err)
		}
		hostileLoginEventually(t, w, addr, tooMany)
	})

	t.Run("max_startup_connections", func(t *testing.T) {
		addr := hostileProxy(t, w, "max-startup", map[string]string{"max_startup_connections": "2"})
		// Two silent sockets hold both startup slots: connected, sending
		// nothing. The kernel queues accepted connections in order and
		// the proxy takes slots in its accept loop, so they hold the
		// slots before any later connection is accepted.
		var silent []*hostileClient
		for range 2 {
			silent = append(silent, hostileDial(t, w, addr))
		}
		// A third socket is closed at once, before TLS costs anything.
		h := hostileDial(t, w, addr)
		began := time.Now()
		h.readAll(5 * time.Second)
		t.Logf("third connection: %s after %v", h, time.Since(began).Round(time.Millisecond))
		if h.String() != "closed" {
			t.Fatalf("third connection: %s, want closed at once", h)
		}
		dropped := func(o outcome) bool { return !o.ok && o.tlsError }
		if o := hostileAttempt(w, addr); !dropped(o) {
			t.Errorf("a login while the slots are taken: %v, want the connection closed", o)
		}
		for _, s := range silent {
			s.raw.Close()
		}
		// Once the silent sockets are gone, logins work.
		hostileLoginEventually(t, w, addr, dropped)
		// Sessions do not count against max_startup_connections: three
		// at once, with two startup slots.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, port, _ := net.SplitHostPort(addr)
		for range 3 {
			pc, err := pgconn.Connect(ctx, w.conninfo(proxy, conn{user: "alice", database: "app", cert: "alice"})+" port="+port)
			if err != nil {
				t.Fatalf("session beyond max_startup_connections: %v", err)
			}
			defer pc.Close(ctx)
		}
	})
}
