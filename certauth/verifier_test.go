package certauth

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewVerifierErrors(t *testing.T) {
	dir := t.TempDir()
	root := issue(t, "root", nil, nil, true)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := write("ca.pem", pemCert(root))
	empty := write("empty.pem", nil)
	crlOnly := write("crlonly.pem", pemCRL(makeCRL(t, root, crlSpec{})))
	garbage := write("garbage.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	text := write("text.pem", []byte("just some text\n"))
	badCRL := write("badcrl.pem", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no CA", Config{}, "client certificates can only be checked if a root certificate store is available"},
		{"missing CA", Config{CAFile: missing}, `could not load root certificate file "` + missing + `": No such file or directory`},
		{"empty CA", Config{CAFile: empty}, `could not load root certificate file "` + empty + `": no certificate or crl found`},
		{"CRL-only CA", Config{CAFile: crlOnly}, `could not load root certificate file "` + crlOnly + `": no start line`},
		{"text CA", Config{CAFile: text}, `could not load root certificate file "` + text + `": no certificate or crl found`},
		{"garbage CA", Config{CAFile: garbage}, `could not load root certificate file "` + garbage + `": x509:`},
		{"missing CRL file", Config{CAFile: ca, CRLFile: missing}, `could not load SSL certificate revocation list file "` + missing + `": No such file or directory`},
		{"empty CRL file", Config{CAFile: ca, CRLFile: empty}, `could not load SSL certificate revocation list file "` + empty + `": no certificate or crl found`},
		{"bad CRL file", Config{CAFile: ca, CRLFile: badCRL}, `could not load SSL certificate revocation list file "` + badCRL + `": x509:`},
		{"bad CRL file with dir", Config{CAFile: ca, CRLFile: badCRL, CRLDir: dir}, `could not load SSL certificate revocation list file "` + badCRL + `" or directory "` + dir + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.cfg)
			if err == nil || v != nil {
				t.Fatalf("NewVerifier succeeded")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix %q", err, tc.want)
			}
		})
	}
	// A missing CRL directory is accepted, as OpenSSL accepts it; every
	// verification then fails for want of a CRL.
	v, err := NewVerifier(Config{CAFile: ca, CRLDir: missing})
	if err != nil {
		t.Fatal(err)
	}
	leaf := issue(t, "leaf", root, nil, false)
	if _, err := v.Verify(rawChain([]*node{leaf}), testNow); !isReason(err, UnableToGetCRL) {
		t.Fatalf("Verify with missing CRL dir: %v", err)
	}
}

func isReason(err error, r Reason) bool {
	var ve *VerifyError
	return errors.As(err, &ve) && ve.Reason == r
}

// TestCRLDirOnDemand drops CRL files into ssl_crl_dir after NewVerifier and
// checks that the next Verify uses them, as a PostgreSQL backend (a fresh
// fork of a postmaster that never read the directory) would.
func TestCRLDirOnDemand(t *testing.T) {
	dir := t.TempDir()
	root := issue(t, "root", nil, nil, true)
	inter := issue(t, "inter", root, nil, true)
	leaf := issue(t, "leaf", inter, nil, false)
	ca := filepath.Join(dir, "ca.pem")
	crlDir := filepath.Join(dir, "crl")
	if err := os.WriteFile(ca, pemCert(root), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(crlDir, 0o700); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(Config{CAFile: ca, CRLDir: crlDir})
	if err != nil {
		t.Fatal(err)
	}
	chain := rawChain([]*node{leaf, inter})
	drop := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(crlDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, want Reason, depth int) {
		t.Helper()
		_, err := v.Verify(chain, testNow)
		r, d := outcome(err)
		if r != want || d != depth {
			t.Fatalf("%s: got %v at depth %d (%v), want %v at depth %d", step, r, d, err, want, depth)
		}
	}
	check("empty directory", UnableToGetCRL, 0)
	drop(crlName(t, inter, 0), pemCRL(makeCRL(t, inter, crlSpec{})))
	check("inter CRL only", UnableToGetCRL, 1)
	drop(crlName(t, root, 0), pemCRL(makeCRL(t, root, crlSpec{})))
	check("both CRLs", 0, 0)
	drop(crlName(t, inter, 1), pemCRL(makeCRL(t, inter, crlSpec{revoked: []*node{leaf}, this: testNow.Add(-time.Minute)})))
	check("newer revoking CRL in .r1", CertRevoked, 0)
	// Replacing a file in place also applies (OpenSSL would cache it within
	// one process, but each PostgreSQL connection is a new process).
	drop(crlName(t, inter, 1), pemCRL(makeCRL(t, inter, crlSpec{this: testNow.Add(-30 * time.Second)})))
	check("replaced .r1", 0, 0)
	// A .r0 holding another issuer's CRL does not stop the probe...
	other := issue(t, "other", nil, nil, true)
	drop(crlName(t, inter, 0), pemCRL(makeCRL(t, other, crlSpec{})))
	drop(crlName(t, inter, 1), pemCRL(makeCRL(t, inter, crlSpec{revoked: []*node{leaf}})))
	check("unrelated .r0, revoking .r1", CertRevoked, 0)
	// ...but one that cannot be read does (PostgreSQL 15 answers unknown_ca
	// when .r0 is unreadable and .r1 is good).
	if err := os.Remove(filepath.Join(crlDir, crlName(t, inter, 0))); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(crlDir, crlName(t, inter, 0)), 0o700); err != nil {
		t.Fatal(err)
	}
	drop(crlName(t, inter, 1), pemCRL(makeCRL(t, inter, crlSpec{})))
	check("unreadable .r0, good .r1", UnableToGetCRL, 0)
	if err := os.Remove(filepath.Join(crlDir, crlName(t, inter, 0))); err != nil {
		t.Fatal(err)
	}
	drop(crlName(t, inter, 0), pemCRL(makeCRL(t, inter, crlSpec{})))

	// Concurrent verifications while the directory is read.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(chain, testNow); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// TestCRLHashMatchesOpenSSL checks NameHash on CRL issuers against
// `openssl crl -noout -hash`, the name OpenSSL's hashed-directory lookup
// looks for.
func TestCRLHashMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not on PATH: make test installs it (Debian openssl) as root")
	}
	dir := t.TempDir()
	for _, cn := range []string{"root", "Mixed  Case   CA", "  padded ", "josé"} {
		ca := issue(t, cn, nil, nil, true)
		p := filepath.Join(dir, "crl.pem")
		if err := os.WriteFile(p, pemCRL(makeCRL(t, ca, crlSpec{})), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "crl", "-in", p, "-noout", "-hash").Output()
		if err != nil {
			t.Fatal(err)
		}
		h, err := NameHash(ca.cert.RawSubject)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprintf("%08x", h), strings.TrimSpace(string(out)); got != want {
			t.Errorf("%q: NameHash %s, openssl crl -hash %s", cn, got, want)
		}
	}
}

func TestRootsAndIntermediates(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	inter := issue(t, "inter", root, nil, true)
	root2 := issue(t, "root2", nil, nil, true)
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pemCert(inter, root, root2), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(Config{CAFile: p})
	if err != nil {
		t.Fatal(err)
	}
	r, i := v.Roots(), v.Intermediates()
	if len(r) != 2 || !r[0].Equal(root.cert) || !r[1].Equal(root2.cert) {
		t.Errorf("Roots = %d certificates", len(r))
	}
	if len(i) != 1 || !i[0].Equal(inter.cert) {
		t.Errorf("Intermediates = %d certificates", len(i))
	}
}

func TestReasonAlerts(t *testing.T) {
	for _, tc := range []struct {
		r     Reason
		alert uint8
	}{
		{UnableToGetIssuerCertLocally, AlertUnknownCA},
		{UnableToGetIssuerCert, AlertUnknownCA},
		{DepthZeroSelfSigned, AlertUnknownCA},
		{InvalidCA, AlertUnknownCA},
		{UnableToGetCRL, AlertUnknownCA},
		{CertHasExpired, AlertCertificateExpired},
		{CRLHasExpired, AlertCertificateExpired},
		{CertNotYetValid, AlertBadCertificate},
		{CRLNotYetValid, AlertBadCertificate},
		{CertRevoked, AlertCertificateRevoked},
		{InvalidPurpose, AlertUnsupportedCertificate},
		{CertSignatureFailure, AlertDecryptError},
		{UnhandledCriticalExtension, AlertCertificateUnknown},
	} {
		if got := tc.r.Alert(); got != tc.alert {
			t.Errorf("%v: alert %d, want %d", tc.r, got, tc.alert)
		}
		e := &VerifyError{Reason: tc.r}
		if e.Alert() != tc.alert {
			t.Errorf("VerifyError.Alert mismatch for %v", tc.r)
		}
	}
}

func TestVerifyNoCertificate(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pemCert(root), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(Config{CAFile: p})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(nil, testNow); !isReason(err, NoCertificate) {
		t.Fatalf("Verify(nil) = %v", err)
	}
	if _, err := v.Verify([][]byte{{0x30, 0x00}}, testNow); !isReason(err, Unparseable) {
		t.Fatalf("Verify(garbage) = %v", err)
	}
}
