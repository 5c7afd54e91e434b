package certauth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func pemVerifier(t testing.TB, depth *int, certs ...*node) *Verifier {
	t.Helper()
	v, err := NewVerifier(Config{CAFile: "test set", CAPEM: pemCert(certs...), VerifyDepth: depth})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func certsOf(chain []*node) []*x509.Certificate {
	var out []*x509.Certificate
	for _, n := range chain {
		out = append(out, n.cert)
	}
	return out
}

// TestVerifyDepth checks ssl_verify_depth against OpenSSL's verify depth:
// the number of intermediates allowed, with the error at depth+1 whether
// the intermediates come from the client or from the store, and the
// default of 100 where PostgreSQL leaves it. With openssl on PATH each
// verdict is also compared with `openssl verify -verify_depth`.
func TestVerifyDepth(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	i1 := issue(t, "i1", root, nil, true)
	i2 := issue(t, "i2", i1, nil, true)
	leaf0 := issue(t, "leaf0", root, nil, false)
	leaf1 := issue(t, "leaf1", i1, nil, false)
	leaf2 := issue(t, "leaf2", i2, nil, false)
	depth := func(n int) *int { return &n }
	for _, tc := range []struct {
		name      string
		depth     *int
		store     []*node
		chain     []*node
		want      Reason
		wantDepth int
	}{
		{"default, two intermediates", nil, []*node{root}, []*node{leaf2, i2, i1}, 0, 0},
		{"0, no intermediate", depth(0), []*node{root}, []*node{leaf0}, 0, 0},
		{"0, one sent", depth(0), []*node{root}, []*node{leaf1, i1}, CertChainTooLong, 1},
		{"0, one held", depth(0), []*node{root, i1}, []*node{leaf1}, CertChainTooLong, 1},
		{"1, one sent", depth(1), []*node{root}, []*node{leaf1, i1}, 0, 0},
		{"1, two sent", depth(1), []*node{root}, []*node{leaf2, i2, i1}, CertChainTooLong, 2},
		{"1, two held", depth(1), []*node{root, i1, i2}, []*node{leaf2}, CertChainTooLong, 2},
		{"2, two sent", depth(2), []*node{root}, []*node{leaf2, i2, i1}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := pemVerifier(t, tc.depth, tc.store...)
			_, err := v.VerifyCertificates(certsOf(tc.chain), testNow)
			r, d := outcome(err)
			if r != tc.want || d != tc.wantDepth {
				t.Fatalf("got %v at depth %d (%v), want %v at depth %d", r, d, err, tc.want, tc.wantDepth)
			}
			if err != nil && (err.(*VerifyError).Reason.PolicyCode() != "chain_too_deep" || err.(*VerifyError).Alert() != AlertUnknownCA) {
				t.Errorf("audit code %q, alert %d", err.(*VerifyError).Reason.PolicyCode(), err.(*VerifyError).Alert())
			}
			if _, err := exec.LookPath("openssl"); err != nil {
				return
			}
			dir := t.TempDir()
			write := func(name string, ns ...*node) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, pemCert(ns...), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			args := []string{"verify", "-purpose", "sslclient", "-attime", strconv.FormatInt(testNow.Unix(), 10), "-CAfile", write("ca.pem", tc.store...)}
			if tc.depth != nil {
				args = append(args, "-verify_depth", strconv.Itoa(*tc.depth))
			}
			if len(tc.chain) > 1 {
				args = append(args, "-untrusted", write("untrusted.pem", tc.chain[1:]...))
			}
			out, _ := exec.Command("openssl", append(args, write("leaf.pem", tc.chain[0]))...).CombinedOutput()
			wantR, wantD := Reason(0), 0
			if m := opensslErrRE.FindStringSubmatch(string(out)); m != nil {
				n, _ := strconv.Atoi(m[1])
				wantD, _ = strconv.Atoi(m[2])
				wantR = Reason(n)
			} else if !strings.Contains(string(out), ": OK") {
				t.Fatalf("openssl: %s", out)
			}
			if r != wantR || d != wantD {
				t.Errorf("openssl says %v at depth %d:\n%s", wantR, wantD, out)
			}
		})
	}
}

// TestTrustVerify covers the handshake's union of CA sets: the first set
// that verifies wins and is named; with none, the error is one from a set
// that knew the issuer, else the first set's.
func TestTrustVerify(t *testing.T) {
	rootA := issue(t, "A", nil, nil, true)
	rootB := issue(t, "B", nil, nil, true)
	interA := issue(t, "A inter", rootA, nil, true)
	other := issue(t, "other", nil, nil, true)
	leafA := issue(t, "alice", rootA, nil, false)
	leafInter := issue(t, "alice", interA, nil, false)
	leafB := issue(t, "bob", rootB, nil, false)
	leafOther := issue(t, "eve", other, nil, false)
	expiredA := issue(t, "old", rootA, nil, false, withValidity(testNow.Add(-48*time.Hour), testNow.Add(-time.Hour)))

	setDefault := NewCASet(DefaultSet, pemVerifier(t, nil, rootA))
	setA := NewCASet("@a", pemVerifier(t, nil, rootA, interA))
	setB := NewCASet("@b", pemVerifier(t, nil, rootB))
	trust := NewTrust(KeyUsageOpenSSL, setDefault, setB, setA)
	for _, tc := range []struct {
		name  string
		chain []*node
		set   string
		want  Reason
	}{
		{"A's leaf: the first set", []*node{leafA}, DefaultSet, 0},
		{"B's leaf", []*node{leafB}, "@b", 0},
		{"intermediate held in @a only", []*node{leafInter}, "@a", 0},
		{"intermediate sent: the first set", []*node{leafInter, interA}, DefaultSet, 0},
		{"unknown CA: the first set's error", []*node{leafOther}, "", UnableToGetIssuerCertLocally},
		{"expired: the error of a set that knew the issuer", []*node{expiredA}, "", CertHasExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain, set, err := trust.Verify(certsOf(tc.chain), testNow)
			if r, _ := outcome(err); r != tc.want {
				t.Fatalf("got %v (%v), want %v", r, err, tc.want)
			}
			if err == nil && (set.Name != tc.set || !chain[0].Equal(tc.chain[0].cert)) {
				t.Errorf("verified by %q, want %q", set.Name, tc.set)
			}
		})
	}
	if got := trust.Set("@b"); got != setB || trust.Set("@c") != nil {
		t.Errorf("Set lookup")
	}
	if n := len(trust.Names().Subjects()); n != 3 {
		t.Errorf("CertificateRequest names %d certificates, want 3 (A, its intermediate, B; A once)", n)
	}
	if _, _, err := NewTrust(KeyUsageOpenSSL).Verify(certsOf([]*node{leafA}), testNow); err == nil {
		t.Errorf("an empty union verified a chain")
	}
}

// TestKeyUsagePolicy: "require" adds to OpenSSL's purpose check, which
// keeps its verdict (and its reason) where it refuses first.
func TestKeyUsagePolicy(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	for _, tc := range []struct {
		name    string
		opts    []certOpt
		openssl Reason // the verifier's own verdict
		require string // CheckKeyUsage's complaint under "require"
	}{
		{"clientAuth and digitalSignature", []certOpt{withEKU(x509.ExtKeyUsageClientAuth)}, 0, ""},
		{"clientAuth among others", []certOpt{withEKU(x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)}, 0, ""},
		{"no EKU", nil, 0, "the certificate has no extendedKeyUsage; clientAuth is required"},
		{"serverAuth only", []certOpt{withEKU(x509.ExtKeyUsageServerAuth)}, InvalidPurpose, "the certificate's extendedKeyUsage does not include clientAuth"},
		{"anyExtendedKeyUsage", []certOpt{withEKU(x509.ExtKeyUsageAny)}, InvalidPurpose, "the certificate's extendedKeyUsage does not include clientAuth"},
		{"keyAgreement only", []certOpt{withEKU(x509.ExtKeyUsageClientAuth), withKU(x509.KeyUsageKeyAgreement)}, 0, "the certificate's keyUsage does not include digitalSignature"},
		{"no keyUsage at all", []certOpt{withEKU(x509.ExtKeyUsageClientAuth), withKU(0)}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := issue(t, "alice", root, nil, false, tc.opts...)
			v := pemVerifier(t, nil, root)
			_, err := v.VerifyCertificates(certsOf([]*node{leaf}), testNow)
			if r, _ := outcome(err); r != tc.openssl {
				t.Fatalf("OpenSSL purpose: %v, want %v", err, tc.openssl)
			}
			if err := CheckKeyUsage(KeyUsageOpenSSL, leaf.cert); err != nil {
				t.Errorf("openssl policy: %v", err)
			}
			err = CheckKeyUsage(KeyUsageRequire, leaf.cert)
			got := ""
			if ve, ok := errors.AsType[*VerifyError](err); ok {
				got = ve.Err.Error()
				if ve.Reason != KeyUsageRefused || ve.Alert() != AlertUnsupportedCertificate || ve.Reason.PolicyCode() != "key_usage" {
					t.Errorf("reason %v, alert %d, code %q", ve.Reason, ve.Alert(), ve.Reason.PolicyCode())
				}
			}
			if got != tc.require {
				t.Errorf("require: %q, want %q", got, tc.require)
			}
			// In the union, OpenSSL's verdict comes first.
			_, _, err = NewTrust(KeyUsageRequire, NewCASet(DefaultSet, v)).Verify(certsOf([]*node{leaf}), testNow)
			want := tc.openssl
			if want == 0 && tc.require != "" {
				want = KeyUsageRefused
			}
			if r, _ := outcome(err); r != want {
				t.Errorf("union with require: %v, want %v", err, want)
			}
		})
	}
	if KeyUsageRefused.String() != "certificate key usage does not allow client authentication" {
		t.Errorf("text %q", KeyUsageRefused.String())
	}
	for _, s := range []string{"openssl", "require"} {
		if p, ok := ParseKeyUsagePolicy(s); !ok || p.String() != s {
			t.Errorf("ParseKeyUsagePolicy(%q)", s)
		}
	}
	if _, ok := ParseKeyUsagePolicy("strict"); ok {
		t.Errorf("strict accepted")
	}
}

// TestSetProblems: a set's duplicates and non-CA certificates are errors,
// an expired or not yet valid CA a warning.
func TestSetProblems(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	old := issue(t, "old", nil, nil, true, withValidity(testNow.Add(-48*time.Hour), testNow.Add(-time.Hour)))
	later := issue(t, "later", nil, nil, true, withValidity(testNow.Add(time.Hour), testNow.Add(48*time.Hour)))
	leaf := issue(t, "alice", root, nil, false)
	v := pemVerifier(t, nil, root, old, later, root, leaf)
	errs, warnings := v.SetProblems(testNow)
	wantErrs := []string{
		`certificate 4 (subject "CN=root") duplicates certificate 1`,
		`certificate 5 (subject "CN=alice") is not a CA certificate (it needs basicConstraints CA:TRUE); a client certificate is pinned with clientname=SHA256 instead`,
	}
	wantWarnings := []string{
		fmt.Sprintf(`certificate 2 (subject "CN=old") expired at %s: chains through it fail with "certificate has expired"`, old.cert.NotAfter.UTC().Format(time.RFC3339)),
		fmt.Sprintf(`certificate 3 (subject "CN=later") is not valid before %s: chains through it fail with "certificate is not yet valid" until then`, later.cert.NotBefore.UTC().Format(time.RFC3339)),
	}
	if strings.Join(errs, "\n") != strings.Join(wantErrs, "\n") {
		t.Errorf("errors:\n%s\nwant\n%s", strings.Join(errs, "\n"), strings.Join(wantErrs, "\n"))
	}
	if strings.Join(warnings, "\n") != strings.Join(wantWarnings, "\n") {
		t.Errorf("warnings:\n%s\nwant\n%s", strings.Join(warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
}

// TestInlineCAPEM: CAPEM stands in for CAFile, and its errors name it.
func TestInlineCAPEM(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	v, err := NewVerifier(Config{CAFile: "ssl_ca", CAPEM: pemCert(root)})
	if err != nil || len(v.Roots()) != 1 {
		t.Fatalf("%v", err)
	}
	_, err = NewVerifier(Config{CAFile: "ssl_ca", CAPEM: []byte("nothing")})
	if err == nil || err.Error() != "could not load root certificates from ssl_ca: no certificate or crl found" {
		t.Errorf("error %v", err)
	}
}

// TestPeerPin: clientname=SHA256's identity is the pin of the leaf.
func TestPeerPin(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	leaf := issue(t, "alice", root, nil, false)
	p := NewPeer([]*x509.Certificate{leaf.cert, root.cert})
	ids, err := p.Identities(IdentitySHA256)
	if err != nil || len(ids) != 1 || ids[0] != "sha256:"+p.Fingerprint() || len(ids[0]) != 7+64 {
		t.Fatalf("identities %q, %v", ids, err)
	}
	if IdentitySHA256.String() != "SHA256" || len(p.Presented) != 2 {
		t.Errorf("String %q, presented %d", IdentitySHA256, len(p.Presented))
	}
	p.VerifiedIn([]*x509.Certificate{leaf.cert, root.cert}, "@a")
	if !p.Verified || p.CASet != "@a" || len(p.Presented) != 2 {
		t.Errorf("VerifiedIn: %+v", p)
	}
}

// BenchmarkTrustVerify is the handshake's verification cost: the client's
// CA as the only set (a stock configuration), as the last of four sets
// (three lines with a clientca= set of their own, ssl_ca_file unrelated),
// and the second verification a line's own set makes when the handshake's
// first match was another set.
func BenchmarkTrustVerify(b *testing.B) {
	root := issue(b, "root", nil, nil, true)
	leaf := issue(b, "alice", root, nil, false, withEKU(x509.ExtKeyUsageClientAuth))
	chain := certsOf([]*node{leaf})
	clientSet := NewCASet("@c", pemVerifier(b, nil, root))
	var sets []*CASet
	for _, n := range []string{DefaultSet, "@a", "@b"} {
		sets = append(sets, NewCASet(n, pemVerifier(b, nil, issue(b, "unrelated "+n, nil, nil, true))))
	}
	for _, tc := range []struct {
		name  string
		trust *Trust
		again *CASet
	}{
		{"one set", NewTrust(KeyUsageOpenSSL, NewCASet(DefaultSet, clientSet.v)), nil},
		{"last of four sets", NewTrust(KeyUsageOpenSSL, append(sets, clientSet)...), nil},
		{"one set and a second verification", NewTrust(KeyUsageOpenSSL, NewCASet(DefaultSet, clientSet.v)), clientSet},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := tc.trust.Verify(chain, testNow); err != nil {
					b.Fatal(err)
				}
				if tc.again != nil {
					if _, err := tc.again.Verify(chain, testNow); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
