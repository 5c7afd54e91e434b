package certauth

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// The fuzz target checks responses about one fixed certificate, so that
// the committed corpus (responses signed by its fixed issuer) stays
// meaningful: testdata/ocsp holds the issuer, the leaf and a delegated
// responder, written with the corpus by TestWriteOCSPFuzzCorpus -update.
var ocspFuzzDir = filepath.Join("testdata", "ocsp")

func loadOCSPFuzzCerts(tb testing.TB) (leaf, issuer *x509.Certificate) {
	read := func(name string) *x509.Certificate {
		data, err := os.ReadFile(filepath.Join(ocspFuzzDir, name))
		if err != nil {
			tb.Fatal(err)
		}
		b, _ := pem.Decode(data)
		if b == nil {
			tb.Fatalf("%s: no PEM", name)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	return read("leaf.pem"), read("issuer.pem")
}

// FuzzOCSPResponse feeds arbitrary bytes to VerifyOCSPResponse as the
// answer about the fixed leaf. It must never panic, must decide the same
// way twice, and whatever it accepts must meet the rules it promises: a
// known status and current times. (A forged signature cannot be found by
// mutation, so every mutation of a corpus response inside its signed part
// must be refused; the corpus seeds both kinds.)
func FuzzOCSPResponse(f *testing.F) {
	leaf, issuer := loadOCSPFuzzCerts(f)
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		ans, err := VerifyOCSPResponse(der, leaf, issuer, testNow, time.Hour)
		ans2, err2 := VerifyOCSPResponse(der, leaf, issuer, testNow, time.Hour)
		if (err == nil) != (err2 == nil) || (err == nil && *ans != *ans2) {
			t.Fatalf("not deterministic: %v/%v vs %v/%v", ans, err, ans2, err2)
		}
		if err != nil {
			return
		}
		if len(der) > MaxOCSPResponseSize {
			t.Fatalf("accepted %d bytes", len(der))
		}
		switch ans.Status {
		case OCSPStatusGood, OCSPStatusRevoked, OCSPStatusUnknown:
		default:
			t.Fatalf("status %v", ans.Status)
		}
		if ans.ThisUpdate.After(testNow.Add(OCSPClockSkew)) {
			t.Fatalf("thisUpdate %v in the future", ans.ThisUpdate)
		}
		if !ans.NextUpdate.IsZero() && ans.NextUpdate.Before(testNow.Add(-OCSPClockSkew)) {
			t.Fatalf("stale: nextUpdate %v", ans.NextUpdate)
		}
		if ans.NextUpdate.IsZero() && ans.ThisUpdate.Before(testNow.Add(-time.Hour)) {
			t.Fatalf("old without nextUpdate: %v", ans.ThisUpdate)
		}
	})
}

// TestWriteOCSPFuzzCorpus regenerates testdata/ocsp and the FuzzOCSPResponse
// seed corpus when run with -update.
func TestWriteOCSPFuzzCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate the OCSP certificates and seed corpus")
	}
	p := newOCSPPKI(t)
	if err := os.MkdirAll(ocspFuzzDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]*node{"issuer.pem": p.root, "leaf.pem": p.leaf} {
		if err := os.WriteFile(filepath.Join(ocspFuzzDir, name), pemCert(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	good := makeOCSP(t, p.root, p.leaf, ocspSpec{})
	seeds := map[string][]byte{
		"good":                good,
		"revoked":             makeOCSP(t, p.root, p.leaf, ocspSpec{status: ocsp.Revoked}),
		"unknown":             makeOCSP(t, p.root, p.leaf, ocspSpec{status: ocsp.Unknown}),
		"delegated":           makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.responder}),
		"delegated-no-eku":    makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.noEKU}),
		"wrong-key":           makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.other, noEmbed: true}),
		"other-serial":        makeOCSP(t, p.root, p.leaf, ocspSpec{serial: p.responder.cert.SerialNumber}),
		"other-issuer-certid": makeOCSP(t, p.root, p.leaf, ocspSpec{certIDOf: p.other}),
		"stale":               makeOCSP(t, p.root, p.leaf, ocspSpec{this: testNow.Add(-48 * time.Hour), next: testNow.Add(-24 * time.Hour)}),
		"no-next-update":      makeOCSP(t, p.root, p.leaf, ocspSpec{noNext: true, this: testNow.Add(-time.Minute)}),
		"try-later":           ocsp.TryLaterErrorResponse,
		"truncated":           good[:len(good)/2],
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOCSPResponse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, der := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", der)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOCSPFuzzCorpus runs the committed seeds through the checks they
// were made for, so that a corpus out of step with the certificates
// (regenerated one without the other) is noticed.
func TestOCSPFuzzCorpus(t *testing.T) {
	leaf, issuer := loadOCSPFuzzCerts(t)
	for name, want := range map[string]OCSPStatus{
		"good": OCSPStatusGood, "revoked": OCSPStatusRevoked, "unknown": OCSPStatusUnknown,
		"delegated": OCSPStatusGood, "no-next-update": OCSPStatusGood,
		"delegated-no-eku": 0, "wrong-key": 0, "other-serial": 0, "other-issuer-certid": 0, "stale": 0, "try-later": 0, "truncated": 0,
	} {
		data, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzOCSPResponse", name))
		if err != nil {
			t.Fatal(err)
		}
		var der []byte
		if _, err := fmt.Sscanf(string(data), "go test fuzz v1\n[]byte(%q)\n", &der); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ans, err := VerifyOCSPResponse(der, leaf, issuer, testNow, time.Hour)
		switch {
		case want == 0 && err == nil:
			t.Errorf("%s: accepted as %v", name, ans.Status)
		case want != 0 && err != nil:
			t.Errorf("%s: %v", name, err)
		case want != 0 && ans.Status != want:
			t.Errorf("%s: %v, want %v", name, ans.Status, want)
		}
	}
}
