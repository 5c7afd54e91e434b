package certauth_test

import (
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestCRLLoadError: NewVerifier's refusal of the CRL file is a
// *CRLLoadError, with be_tls_init's text; a refusal of the CA file is
// not.
func TestCRLLoadError(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "unit root"})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "root.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name string
		cfg  certauth.Config
		crl  bool
		want string
	}{
		{"crl file", certauth.Config{CAFile: caFile, CRLFile: missing}, true,
			`could not load SSL certificate revocation list file "` + missing + `": No such file or directory`},
		{"crl file with dir", certauth.Config{CAFile: caFile, CRLFile: missing, CRLDir: dir}, true,
			`could not load SSL certificate revocation list file "` + missing + `" or directory "` + dir + `": No such file or directory`},
		{"ca file", certauth.Config{CAFile: missing, CRLFile: caFile}, false,
			`could not load root certificate file "` + missing + `": No such file or directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certauth.NewVerifier(tc.cfg)
			if err == nil {
				t.Fatal("loaded")
			}
			if err.Error() != tc.want {
				t.Errorf("error %q, want %q", err, tc.want)
			}
			ce, ok := errors.AsType[*certauth.CRLLoadError](err)
			if ok != tc.crl {
				t.Fatalf("CRLLoadError: %v, want %v", ok, tc.crl)
			}
			if ok && (ce.File != missing || !errors.Is(err, ce.Err)) {
				t.Errorf("CRLLoadError %+v", ce)
			}
		})
	}
}

// TestAuditReason: a refusal's own audit code, else cert_invalid.
func TestAuditReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&certauth.VerifyError{Reason: certauth.OCSPUnavailable}, "ocsp_unavailable"},
		{&certauth.VerifyError{Reason: certauth.CRLStale}, "crl_stale"},
		{&certauth.VerifyError{Reason: certauth.CertRevoked}, "cert_invalid"},
		{errors.New("x"), "cert_invalid"},
	} {
		if got := certauth.AuditReason(tc.err); got != tc.want {
			t.Errorf("AuditReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
