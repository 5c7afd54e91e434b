package main

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestExplainRebuiltChain: a line whose CA set builds a chain the
// handshake did not check (the client's issuing CA, cross-certified by
// the set's root) is accepted by explain, which asks no responder, with a
// note that the server asks OCSP and the fetched CRLs at connect time.
func TestExplainRebuiltChain(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	x, err := testpki.NewRootCA(pkix.Name{CommonName: "CA X"})
	must(err)
	xi, err := x.NewIntermediate(pkix.Name{CommonName: "CA X issuing"})
	must(err)
	b, err := testpki.NewRootCA(pkix.Name{CommonName: "CA B"})
	must(err)
	// B certifies X issuing's name and key again.
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(4242), Subject: xi.Cert.Subject, SubjectKeyId: xi.Cert.SubjectKeyId,
		NotBefore: xi.Cert.NotBefore, NotAfter: xi.Cert.NotAfter, IsCA: true, BasicConstraintsValid: true,
		MaxPathLen: -1, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, b.Cert, xi.Key.Public(), b.Key)
	must(err)
	xb, err := x509.ParseCertificate(der)
	must(err)
	server, err := x.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	must(err)
	must(server.WriteFiles(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")))
	alice, err := xi.NewClient(pkix.Name{CommonName: "alice"})
	must(err)
	for name, body := range map[string][]byte{
		"alice.crt":   testpki.CertsPEM(alice.Cert), // the leaf alone
		"x.crt":       append(append([]byte{}, x.CertPEM...), xi.CertPEM...),
		"b.crt":       append(append([]byte{}, b.CertPEM...), testpki.CertsPEM(xb)...),
		"pg_hba.conf": []byte("hostssl b all 127.0.0.1/32 cert clientca=@b\n"),
		"pgcertgate.toml": []byte(`hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "x.crt"
ssl_ocsp = "require"
[backend]
dsn = "host=/nonexistent port=5432"
[client_ca.b]
file = "b.crt"
`),
	} {
		must(os.WriteFile(filepath.Join(dir, name), body, 0o644))
	}
	c := &testConfig{dir: dir, toml: filepath.Join(dir, "pgcertgate.toml")}
	out, errOut, code := c.explain(t, "--user", "alice", "--database", "b", "--cert", "$DIR/alice.crt")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d (stderr: %s); output:\n%s", code, errOut, out)
	}
	for _, want := range []string{
		"check clientca: ok: the chain verifies to CA set @b, which the line requires (the handshake's first match was ssl_ca_file)\n",
		"note: CA set @b builds a chain the handshake did not check; OCSP and fetched CRLs, when configured, are asked about it at connect time\n",
		"verdict: ACCEPT",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
