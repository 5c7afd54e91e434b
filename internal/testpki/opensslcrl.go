package testpki

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// OpenSSLCRL is [CA.CRL] written by OpenSSL itself: `openssl ca -revoke`
// for each certificate, then `openssl ca -gencrl`. Its configuration has
// no crl_extensions and no crlnumber file, so OpenSSL writes an X.509 v1
// CRL, with no version field and no extensions: what PostgreSQL's own SSL
// test suite ships, and what many CAs publish. Go's
// x509.CreateRevocationList only writes v2 CRLs. The openssl binary must be
// on PATH.
func (ca *CA) OpenSSLCRL(revoked []*x509.Certificate, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	return OpenSSLCRL(ca.CertPEM, ca.KeyPEM, revoked, thisUpdate, nextUpdate)
}

// OpenSSLCRL is [CA.OpenSSLCRL] for a CA given as its PEM certificate and
// PEM private key (any form OpenSSL reads). The CRL's issuer is the
// certificate's subject; it is signed with the key, SHA-256.
func OpenSSLCRL(caCertPEM, caKeyPEM []byte, revoked []*x509.Certificate, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	dir, err := os.MkdirTemp("", "testpki-ca-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := func(name string) string { return filepath.Join(dir, name) }
	conf := fmt.Sprintf(`[ ca ]
default_ca = testpki_ca

[ testpki_ca ]
database = %s
certificate = %s
private_key = %s
default_md = sha256
default_crl_days = 1
unique_subject = no
`, path("index.txt"), path("ca.crt"), path("ca.key"))
	for name, data := range map[string][]byte{
		"openssl.cnf": []byte(conf),
		"index.txt":   nil,
		"ca.crt":      caCertPEM,
		"ca.key":      caKeyPEM,
	} {
		if err := os.WriteFile(path(name), data, 0o600); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "openssl", append([]string{"ca", "-batch", "-config", path("openssl.cnf")}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("testpki: openssl ca %v: %w\n%s", args, err, out)
		}
		return nil
	}
	for i, c := range revoked {
		if c == nil {
			return nil, errors.New("testpki: OpenSSLCRL: nil certificate")
		}
		name := path(fmt.Sprintf("revoked%d.crt", i))
		if err := os.WriteFile(name, certPEM(c.Raw), 0o600); err != nil {
			return nil, err
		}
		// A certificate the database does not know is added, then revoked.
		if err := run("-revoke", name); err != nil {
			return nil, err
		}
	}
	// GeneralizedTime input; OpenSSL writes UTCTime for years before 2050,
	// as RFC 5280 wants.
	const layout = "20060102150405Z"
	if err := run("-gencrl", "-out", path("crl.pem"),
		"-crl_lastupdate", thisUpdate.UTC().Format(layout),
		"-crl_nextupdate", nextUpdate.UTC().Format(layout)); err != nil {
		return nil, err
	}
	out, err := os.ReadFile(path("crl.pem"))
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(out); b == nil || b.Type != "X509 CRL" {
		return nil, fmt.Errorf("testpki: openssl ca -gencrl wrote no PEM CRL:\n%s", out)
	}
	return out, nil
}
