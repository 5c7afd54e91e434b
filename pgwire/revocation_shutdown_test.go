package pgwire

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestRevocationCheckEndsWithServer: an OCSP request that the handshake
// is waiting on ends when the server closes, not at ssl_ocsp_timeout:
// Close returns at once instead of waiting for a responder that never
// answers.
func TestRevocationCheckEndsWithServer(t *testing.T) {
	dir := t.TempDir()
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	responder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(responder.Close)
	t.Cleanup(func() { close(release) })

	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "unit root"})
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := ca.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithOCSPServer(responder.URL))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"server.crt":  srvLeaf.CertPEM,
		"server.key":  srvLeaf.KeyPEM,
		"root.crt":    ca.CertPEM,
		"pg_hba.conf": []byte("hostssl all all all cert\n"),
		"pgcertgate.toml": []byte(`
hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
ssl_ocsp = "require"
ssl_ocsp_timeout = "20s"
authentication_timeout = "30s"
[backend]
dsn = "host=127.0.0.1 port=1 sslmode=disable"
`),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := config.Load(filepath.Join(dir, "pgcertgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Runtime: rt, Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	handshake := make(chan error, 1)
	go func() {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			handshake <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(40 * time.Second))
		tc := tls.Client(conn, &tls.Config{
			ServerName:   "localhost",
			RootCAs:      ca.Pool(),
			Certificates: []tls.Certificate{alice.TLSCertificate()},
			NextProtos:   []string{"postgresql"},
		})
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3: the server's verdict arrives with the first read.
			_, err = tc.Read(make([]byte, 1))
		}
		handshake <- err
	}()
	select {
	case <-asked:
	case err := <-handshake:
		t.Fatalf("handshake ended before the OCSP request: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the handshake's OCSP request never came")
	}

	start := time.Now()
	srv.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %s: the OCSP request outlived the server", d)
	}
	if err := <-handshake; err == nil {
		t.Fatal("handshake succeeded")
	}
	<-served
}
