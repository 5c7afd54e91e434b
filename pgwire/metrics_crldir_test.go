package pgwire

import (
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestCRLDirExpiryV1: the expiry gauge reads an ssl_crl_dir CRL written
// by `openssl ca -gencrl` (X.509 v1), and only the file names OpenSSL's
// hashed-directory lookup reads.
func TestCRLDirExpiryV1(t *testing.T) {
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "metrics root"})
	if err != nil {
		t.Fatal(err)
	}
	next := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	crl, err := root.OpenSSLCRL(nil, time.Now().Add(-time.Hour), next)
	if err != nil {
		t.Fatal(err)
	}
	later, err := root.OpenSSLCRL(nil, time.Now().Add(-time.Hour), next.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	h, err := certauth.NameHash(root.Cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		certauth.HashedCRLName(h, 0): crl,
		// Names the lookup never reads: not counted.
		certauth.HashedCRLName(h, 0) + ".pem":    later,
		"crl.pem":                                later,
		certauth.HashedCRLName(h, 0)[:10] + "01": later,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dn, err := certauth.FormatDN(root.Cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	got := newMetrics(nil).crlDirExpiry(dir)
	if !got[dn].Equal(next) || len(got) != 1 {
		t.Fatalf("crlDirExpiry = %v, want %s: %v", got, dn, next)
	}
}
