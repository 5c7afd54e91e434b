package pgwire

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// startupMsg builds a StartupMessage with the given protocol and
// alternating name/value strings.
func startupMsg(proto uint32, kv ...string) []byte {
	body := binary.BigEndian.AppendUint32(nil, proto)
	for _, s := range kv {
		body = append(append(body, s...), 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

func special(code uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), code)
}

func TestParseStartup(t *testing.T) {
	long := strings.Repeat("x", 70)
	for _, tc := range []struct {
		name    string
		msg     []byte
		user    string
		db      string
		repl    replicationMode
		params  int
		wantErr string
	}{
		{name: "basic", msg: startupMsg(3<<16, "user", "alice", "database", "app"), user: "alice", db: "app"},
		{name: "database defaults to user", msg: startupMsg(3<<16, "user", "alice"), user: "alice", db: "alice"},
		{name: "empty database defaults to user", msg: startupMsg(3<<16, "user", "alice", "database", ""), user: "alice", db: "alice"},
		{name: "names cut to 63 bytes", msg: startupMsg(3<<16, "user", long, "database", long), user: long[:63], db: long[:63]},
		{name: "guc params kept", msg: startupMsg(3<<16, "user", "a", "application_name", "x", "options", "-c a=b"), user: "a", db: "a", params: 2},
		{name: "physical replication has no database", msg: startupMsg(3<<16, "user", "a", "database", "d", "replication", "on"), user: "a", db: "", repl: replicationPhysical, params: 1},
		{name: "replication=database", msg: startupMsg(3<<16, "user", "a", "database", "d", "replication", "database"), user: "a", db: "d", repl: replicationLogical, params: 1},
		{name: "replication=0", msg: startupMsg(3<<16, "user", "a", "replication", "0"), user: "a", db: "a", params: 1},
		{name: "bad replication", msg: startupMsg(3<<16, "user", "a", "replication", "maybe"), wantErr: `FATAL: invalid value for parameter "replication": "maybe"`},
		{name: "no user", msg: startupMsg(3<<16, "database", "d"), wantErr: "FATAL: no PostgreSQL user name specified in startup packet"},
		{name: "empty user", msg: startupMsg(3<<16, "user", ""), wantErr: "FATAL: no PostgreSQL user name specified in startup packet"},
		{name: "missing value", msg: append(startupMsg(3<<16, "user", "a")[:4:4], append(binary.BigEndian.AppendUint32(nil, 3<<16), "user\x00a\x00database\x00"...)...), wantErr: "FATAL: invalid startup packet layout: expected terminator as last byte"},
		{name: "trailing bytes", msg: append(startupMsg(3<<16, "user", "a"), 'x'), wantErr: "FATAL: invalid startup packet layout: expected terminator as last byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			si, err := parseStartup(tc.msg[4:])
			if err == nil {
				err = si.normalize()
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if si.user != tc.user || si.database != tc.db || si.replication != tc.repl || len(si.params) != tc.params {
				t.Fatalf("got user=%q db=%q repl=%v params=%v", si.user, si.database, si.replication, si.params)
			}
		})
	}
}

func TestParseBool(t *testing.T) {
	for in, want := range map[string]int{"true": 1, "t": 1, "TRUE": 1, "yes": 1, "on": 1, "1": 1, "false": 0, "f": 0, "no": 0, "off": 0, "0": 0, "o": -1, "": -1, "2": -1, "tr ue": -1, "database": -1} {
		b, ok := parseBool(in)
		got := -1
		if ok {
			got = map[bool]int{true: 1, false: 0}[b]
		}
		if got != want {
			t.Errorf("parseBool(%q) = %d, want %d", in, got, want)
		}
	}
}

// testServer is a Server whose backend is unreachable: negotiation and
// authentication run for real, and an accepted client meets 57P03.
type testServer struct {
	srv    *Server
	ca     *testpki.CA
	client *testpki.Leaf
	roots  *x509.CertPool
	log    *bytes.Buffer
}

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "unit root"})
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.NewClient(pkix.Name{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("server.crt", srvLeaf.CertPEM, 0o644)
	write("server.key", srvLeaf.KeyPEM, 0o600)
	write("root.crt", ca.CertPEM, 0o644)
	write("pg_hba.conf", []byte("hostssl all all all cert\nhostnossl all all all reject\n"), 0o644)
	write("pgcertgate.toml", []byte(`
hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
authentication_timeout = "5s"
[backend]
dsn = "host=127.0.0.1 port=1 sslmode=disable"
connect_timeout = "2s"
`), 0o644)
	rt, err := config.Load(filepath.Join(dir, "pgcertgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	log := &bytes.Buffer{}
	ts := &testServer{srv: New(Options{Runtime: rt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), ca: ca, client: client, roots: ca.Pool(), log: log}
	t.Cleanup(func() { ts.srv.Close() })
	return ts
}

// dial returns the client end of a connection the server is handling.
func (ts *testServer) dial(t testing.TB) net.Conn {
	t.Helper()
	client, server := net.Pipe()
	ts.srv.wg.Add(1)
	ts.srv.startupSlots <- struct{}{}
	go ts.srv.handle(server)
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { client.Close() })
	return client
}

func (ts *testServer) tlsConfig(withCert bool, alpn ...string) *tls.Config {
	cfg := &tls.Config{ServerName: "localhost", RootCAs: ts.roots, NextProtos: alpn}
	if withCert {
		cfg.Certificates = []tls.Certificate{ts.client.TLSCertificate()}
	}
	return cfg
}

// readError reads one ErrorResponse.
func readError(t testing.TB, r io.Reader) *pgproto3.ErrorResponse {
	t.Helper()
	fe := pgproto3.NewFrontend(r, io.Discard)
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("reading server reply: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			return m
		case *pgproto3.NegotiateProtocolVersion:
			continue
		default:
			t.Fatalf("unexpected %T", msg)
		}
	}
}

func expectClosed(t testing.TB, c io.Reader) {
	t.Helper()
	buf := make([]byte, 1)
	n, err := c.Read(buf)
	if n != 0 || err == nil {
		t.Fatalf("expected the connection to close without a reply, read %q %v", buf[:n], err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection left open")
	}
}

func TestNegotiation(t *testing.T) {
	ts := newTestServer(t)

	t.Run("plaintext reaches pg_hba.conf", func(t *testing.T) {
		c := ts.dial(t)
		c.Write(startupMsg(3<<16, "user", "alice"))
		e := readError(t, c)
		if e.Code != "28000" || !strings.HasPrefix(e.Message, "pg_hba.conf rejects connection for host") || !strings.HasSuffix(e.Message, "no encryption") {
			t.Fatalf("got %s %s", e.Code, e.Message)
		}
	})
	t.Run("GSSENCRequest declined", func(t *testing.T) {
		c := ts.dial(t)
		c.Write(special(gssEncRequestCode))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'N' {
			t.Fatalf("got %q %v, want N", b, err)
		}
		c.Write(startupMsg(3<<16, "user", "alice"))
		if e := readError(t, c); e.Code != "28000" {
			t.Fatalf("after N: %s %s", e.Code, e.Message)
		}
	})
	t.Run("plaintext after GSSENCRequest", func(t *testing.T) {
		c := ts.dial(t)
		c.Write(append(special(gssEncRequestCode), startupMsg(3<<16, "user", "alice")...))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'N' {
			t.Fatalf("got %q %v, want N", b, err)
		}
		e := readError(t, c)
		if e.Code != "08P01" || e.Message != "received unencrypted data after GSSAPI encryption request" || e.Detail == "" {
			t.Fatalf("got %s %s (%s)", e.Code, e.Message, e.Detail)
		}
	})
	t.Run("NegotiateProtocolVersion comes before the user check", func(t *testing.T) {
		c := ts.dial(t)
		c.Write(startupMsg(3<<16, "database", "d", "_pq_.x", "1"))
		fe := pgproto3.NewFrontend(c, io.Discard)
		msg, err := fe.Receive()
		if _, ok := msg.(*pgproto3.NegotiateProtocolVersion); err != nil || !ok {
			t.Fatalf("first message %T %v, want NegotiateProtocolVersion", msg, err)
		}
		msg, err = fe.Receive()
		if e, ok := msg.(*pgproto3.ErrorResponse); err != nil || !ok || e.Code != "28000" {
			t.Fatalf("second message %#v %v, want 28000", msg, err)
		}
	})
	t.Run("unsupported protocol", func(t *testing.T) {
		c := ts.dial(t)
		// PostgreSQL answers a protocol 2 client in the old format.
		c.Write(startupMsg(2<<16, "user", "alice"))
		got, _ := io.ReadAll(c)
		if want := "EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.2\n\x00"; string(got) != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		c2 := ts.dial(t)
		c2.Write(startupMsg(4<<16, "user", "alice"))
		e := readError(t, c2)
		if e.Code != "0A000" || e.Message != "unsupported frontend protocol 4.0: server supports 3.0 to 3.2" {
			t.Fatalf("got %s %s", e.Code, e.Message)
		}
	})
	for _, n := range []int32{0, 3, 7, 10005, -1, 1 << 30} {
		t.Run(fmt.Sprint("bad length ", n), func(t *testing.T) {
			c := ts.dial(t)
			c.Write(binary.BigEndian.AppendUint32(nil, uint32(n)))
			expectClosed(t, c)
		})
	}
	t.Run("second SSLRequest", func(t *testing.T) {
		c := ts.dial(t)
		c.Write(special(sslRequestCode))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'S' {
			t.Fatalf("got %q %v", b, err)
		}
		tc := tls.Client(c, ts.tlsConfig(true))
		tc.Write(special(sslRequestCode))
		e := readError(t, tc)
		if e.Code != "0A000" || e.Message != "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.2" {
			t.Fatalf("got %s %s", e.Code, e.Message)
		}
	})
	t.Run("plaintext after SSLRequest (CVE-2021-23214)", func(t *testing.T) {
		c := ts.dial(t)
		// The startup packet rides in the same write as the SSLRequest,
		// so it is buffered before the handshake.
		c.Write(append(special(sslRequestCode), startupMsg(3<<16, "user", "alice")...))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'S' {
			t.Fatalf("got %q %v", b, err)
		}
		tc := tls.Client(c, ts.tlsConfig(true))
		e := readError(t, tc)
		if e.Code != "08P01" || e.Message != "received unencrypted data after SSL request" ||
			e.Detail != "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack." {
			t.Fatalf("got %s %s", e.Code, e.Message)
		}
	})
	t.Run("SSL with certificate reaches the backend", func(t *testing.T) {
		c := ts.dial(t)
		c.Write(special(sslRequestCode))
		io.ReadFull(c, make([]byte, 1))
		tc := tls.Client(c, ts.tlsConfig(true))
		tc.Write(startupMsg(3<<16, "user", "alice"))
		e := readError(t, tc)
		if e.Code != "57P03" {
			t.Fatalf("got %s %s, want 57P03 (backend unreachable)", e.Code, e.Message)
		}
	})
	t.Run("SSL without certificate", func(t *testing.T) {
		c := ts.dial(t)
		c.Write(special(sslRequestCode))
		io.ReadFull(c, make([]byte, 1))
		tc := tls.Client(c, ts.tlsConfig(false))
		tc.Write(startupMsg(3<<16, "user", "alice"))
		e := readError(t, tc)
		if e.Code != "28000" || e.Message != "connection requires a valid client certificate" {
			t.Fatalf("got %s %s", e.Code, e.Message)
		}
	})
	t.Run("direct TLS with ALPN", func(t *testing.T) {
		c := ts.dial(t)
		tc := tls.Client(c, ts.tlsConfig(true, "postgresql"))
		tc.Write(startupMsg(3<<16, "user", "alice"))
		if e := readError(t, tc); e.Code != "57P03" {
			t.Fatalf("got %s %s", e.Code, e.Message)
		}
	})
	t.Run("direct TLS without ALPN is closed", func(t *testing.T) {
		c := ts.dial(t)
		tc := tls.Client(c, ts.tlsConfig(true))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		tc.Write(startupMsg(3<<16, "user", "alice"))
		expectClosed(t, tc)
	})
	t.Run("direct TLS with foreign ALPN", func(t *testing.T) {
		c := ts.dial(t)
		tc := tls.Client(c, ts.tlsConfig(true, "http/1.1"))
		err := tc.Handshake()
		if err == nil || !strings.Contains(err.Error(), "no application protocol") {
			t.Fatalf("handshake: %v, want no_application_protocol alert", err)
		}
	})
	t.Run("protocol 3.2 and _pq_ options", func(t *testing.T) {
		c := ts.dial(t)
		c.Write(startupMsg(3<<16|5, "user", "alice", "_pq_.magic", "1"))
		fe := pgproto3.NewFrontend(c, io.Discard)
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		npv, ok := msg.(*pgproto3.NegotiateProtocolVersion)
		if !ok || npv.NewestMinorProtocol != 3<<16|2 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.magic" {
			t.Fatalf("got %#v", msg)
		}
	})
	t.Run("cancel with unknown key is dropped silently", func(t *testing.T) {
		c := ts.dial(t)
		msg := binary.BigEndian.AppendUint32(nil, 16)
		msg = binary.BigEndian.AppendUint32(msg, cancelRequestCode)
		msg = binary.BigEndian.AppendUint32(msg, 4242)
		c.Write(append(msg, 1, 2, 3, 4))
		expectClosed(t, c)
	})
}

// FuzzStartup feeds arbitrary bytes to the connection handler: it must
// never panic, and must end the connection within the deadline.
func FuzzStartup(f *testing.F) {
	f.Add(startupMsg(3<<16, "user", "alice"))
	f.Add(special(sslRequestCode))
	f.Add(special(gssEncRequestCode))
	f.Add(append(special(gssEncRequestCode), startupMsg(3<<16, "user", "a", "replication", "database")...))
	f.Add(startupMsg(3<<16|2, "user", "a", "_pq_.x", "y"))
	f.Add([]byte{0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0})
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 1, 2, 3, 4})
	ts := newTestServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		defer client.Close()
		done := make(chan struct{})
		ts.srv.wg.Add(1)
		ts.srv.startupSlots <- struct{}{}
		go func() { ts.srv.handle(server); close(done) }()
		_ = client.SetDeadline(time.Now().Add(2 * time.Second))
		go io.Copy(io.Discard, client)
		go func() { client.Write(data); client.Close() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("handler did not finish")
		}
	})
}
