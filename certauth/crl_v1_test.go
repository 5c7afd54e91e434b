package certauth

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// opensslV1CRL has `openssl ca -gencrl` issue a CRL for issuer revoking
// revoked, as a CA without crl_extensions or a crlnumber file does: an
// X.509 v1 CRL. Zero times mean makeCRL's defaults. It returns the DER.
func opensslV1CRL(t testing.TB, issuer *node, revoked []*node, this, next time.Time) []byte {
	t.Helper()
	if this.IsZero() {
		this = testNow.Add(-time.Hour)
	}
	if next.IsZero() {
		next = testNow.Add(7 * 24 * time.Hour)
	}
	key, err := x509.MarshalPKCS8PrivateKey(issuer.key)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for _, n := range revoked {
		certs = append(certs, n.cert)
	}
	out, err := testpki.OpenSSLCRL(pemCert(issuer), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), certs, this, next)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(out)
	if v, exts := crlShape(t, b.Bytes); v != -1 || exts {
		t.Fatalf("openssl ca -gencrl wrote a CRL with version field %d, extensions %v; the test wants a v1 CRL", v, exts)
	}
	return b.Bytes
}

// crlShape reads, with encoding/asn1 rather than the code under test, a
// CRL's version field (-1 when absent) and whether it has crlExtensions.
func crlShape(t testing.TB, der []byte) (version int, hasExts bool) {
	t.Helper()
	var outer struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	version = -1
	for rest := outer.TBS.Bytes; len(rest) > 0; {
		var f asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			t.Fatal(err)
		}
		switch {
		case f.Class == asn1.ClassUniversal && f.Tag == asn1.TagInteger:
			if _, err := asn1.Unmarshal(f.FullBytes, &version); err != nil {
				t.Fatal(err)
			}
		case f.Class == asn1.ClassContextSpecific && f.Tag == 0:
			hasExts = true
		}
	}
	return version, hasExts
}

// reshapeCRL rewrites a CRL made by makeCRL (v2, with crlNumber and AKID
// extensions) into another shape and signs it again with issuer's key:
// version is the version field to write (-1 for none, as in v1), and
// keepExts keeps the crlExtensions. It makes the shapes `openssl ca`
// never writes but OpenSSL reads: a v1 CRL with extensions, an explicit
// v1 version field, an unknown version.
func reshapeCRL(t testing.TB, issuer *node, der []byte, version int, keepExts bool) []byte {
	t.Helper()
	var outer struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var tbs []byte
	if version >= 0 {
		v, err := asn1.Marshal(version)
		if err != nil {
			t.Fatal(err)
		}
		tbs = append(tbs, v...)
	}
	for rest := outer.TBS.Bytes; len(rest) > 0; {
		var f asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			t.Fatal(err)
		}
		switch {
		case f.Class == asn1.ClassUniversal && f.Tag == asn1.TagInteger:
			continue
		case f.Class == asn1.ClassContextSpecific && f.Tag == 0 && !keepExts:
			continue
		}
		tbs = append(tbs, f.FullBytes...)
	}
	tbsDER, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: tbs})
	if err != nil {
		t.Fatal(err)
	}
	// makeCRL signs with ECDSA P-256 and SHA-256; so does this.
	h := sha256.Sum256(tbsDER)
	sig, err := issuer.key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: tbsDER}, outer.Alg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// crlMaker issues a CRL from issuer revoking revoked, valid from this to
// next (zero: makeCRL's defaults).
type crlMaker func(t testing.TB, issuer *node, revoked []*node, this, next time.Time) []byte

// crlVersion makes CRLs of one version: make issues one, forge one that
// names issuer but is signed by other's key.
type crlVersion struct {
	name  string
	make  crlMaker
	forge func(t testing.TB, issuer, other *node) []byte
}

var crlVersions = []crlVersion{
	{
		name: "v1",
		make: opensslV1CRL,
		// other must have issuer's name: openssl ca signs with the key of
		// the certificate it is given. A v1 CRL has no AKID to tell the two
		// apart, so the name alone selects it.
		forge: func(t testing.TB, issuer, other *node) []byte {
			return opensslV1CRL(t, other, nil, time.Time{}, time.Time{})
		},
	},
	{
		name: "v2",
		make: func(t testing.TB, issuer *node, revoked []*node, this, next time.Time) []byte {
			return makeCRL(t, issuer, crlSpec{revoked: revoked, this: this, next: next})
		},
		// issuer's name and AKID, other's signature.
		forge: func(t testing.TB, issuer, other *node) []byte { return makeCRL(t, issuer, crlSpec{signer: other}) },
	},
}

// TestCRLVersions runs the same revocation cases with v1 CRLs written by
// `openssl ca -gencrl` and with v2 CRLs: OpenSSL gives both the same
// verdicts (a v1 CRL is a v2 CRL without extensions), and so must Verify.
// Each v1 case is also checked against `openssl verify`.
func TestCRLVersions(t *testing.T) {
	day := 24 * time.Hour
	root := issue(t, "root", nil, nil, true)
	root2 := issue(t, "other-root", nil, nil, true)
	inter := issue(t, "inter", root, nil, true)
	leaf := issue(t, "leaf", inter, nil, false)
	leaf2 := issue(t, "leaf2", inter, nil, false)
	// Same name as inter, another key: its CRLs carry inter's name and a
	// signature inter's key does not verify.
	impostor := issue(t, "inter", root, nil, true)
	chain := []*node{leaf, inter}
	caRoot := pemCert(root)

	type tcase struct {
		name  string
		chain []*node
		// crls makes the CRLs of ssl_crl_file, dir the files of
		// ssl_crl_dir by name, ca the ssl_ca_file (nil: the root alone),
		// with CRLs of version v.
		crls  func(t testing.TB, v crlVersion) [][]byte
		dir   func(t testing.TB, v crlVersion) map[string][][]byte
		ca    func(t testing.TB, v crlVersion) []byte
		want  Reason
		depth int
	}
	ok := func(t testing.TB, v crlVersion, n *node) []byte { return v.make(t, n, nil, time.Time{}, time.Time{}) }
	cases := []tcase{
		{name: "file-not-revoked", chain: chain, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{ok(t, v, root), v.make(t, inter, []*node{leaf2}, time.Time{}, time.Time{})}
		}},
		{name: "file-leaf-revoked", chain: chain, want: CertRevoked, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{ok(t, v, root), v.make(t, inter, []*node{leaf2, leaf}, time.Time{}, time.Time{})}
		}},
		{name: "file-intermediate-revoked", chain: chain, want: CertRevoked, depth: 1, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{v.make(t, root, []*node{inter}, time.Time{}, time.Time{}), ok(t, v, inter)}
		}},
		{name: "file-root-revoked-by-itself", chain: chain, want: CertRevoked, depth: 2, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{v.make(t, root, []*node{root}, time.Time{}, time.Time{}), ok(t, v, inter)}
		}},
		{name: "file-bad-signature", chain: chain, want: CRLSignatureFailure, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{ok(t, v, root), v.forge(t, inter, impostor)}
		}},
		{name: "file-expired", chain: chain, want: CRLHasExpired, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{ok(t, v, root), v.make(t, inter, nil, testNow.Add(-10*day), testNow.Add(-day))}
		}},
		{name: "file-not-yet-valid", chain: chain, want: CRLNotYetValid, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{ok(t, v, root), v.make(t, inter, nil, testNow.Add(day), testNow.Add(10*day))}
		}},
		{name: "file-expired-and-current", chain: chain, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{ok(t, v, root), v.make(t, inter, nil, testNow.Add(-10*day), testNow.Add(-day)), ok(t, v, inter)}
		}},
		{name: "file-no-crl-for-intermediate", chain: chain, want: UnableToGetCRL, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{ok(t, v, root)}
		}},
		{name: "file-other-issuer-only", chain: chain, want: UnableToGetCRL, crls: func(t testing.TB, v crlVersion) [][]byte {
			return [][]byte{ok(t, v, root2)}
		}},
		{name: "dir-not-revoked", chain: chain, dir: func(t testing.TB, v crlVersion) map[string][][]byte {
			return map[string][][]byte{crlName(t, root, 0): {ok(t, v, root)}, crlName(t, inter, 0): {ok(t, v, inter)}}
		}},
		{name: "dir-leaf-revoked", chain: chain, want: CertRevoked, dir: func(t testing.TB, v crlVersion) map[string][][]byte {
			return map[string][][]byte{crlName(t, root, 0): {ok(t, v, root)}, crlName(t, inter, 0): {v.make(t, inter, []*node{leaf}, time.Time{}, time.Time{})}}
		}},
		{name: "dir-newer-r1-revokes", chain: chain, want: CertRevoked, dir: func(t testing.TB, v crlVersion) map[string][][]byte {
			return map[string][][]byte{
				crlName(t, root, 0):  {ok(t, v, root)},
				crlName(t, inter, 0): {ok(t, v, inter)},
				crlName(t, inter, 1): {v.make(t, inter, []*node{leaf}, testNow.Add(-time.Minute), time.Time{})},
			}
		}},
		{name: "dir-bad-signature", chain: chain, want: CRLSignatureFailure, dir: func(t testing.TB, v crlVersion) map[string][][]byte {
			return map[string][][]byte{crlName(t, root, 0): {ok(t, v, root)}, crlName(t, inter, 0): {v.forge(t, inter, impostor)}}
		}},
		{name: "dir-expired", chain: chain, want: CRLHasExpired, dir: func(t testing.TB, v crlVersion) map[string][][]byte {
			return map[string][][]byte{crlName(t, root, 0): {ok(t, v, root)}, crlName(t, inter, 0): {v.make(t, inter, nil, testNow.Add(-10*day), testNow.Add(-day))}}
		}},
		{name: "dir-r1-without-r0", chain: chain, want: UnableToGetCRL, dir: func(t testing.TB, v crlVersion) map[string][][]byte {
			return map[string][][]byte{crlName(t, root, 0): {ok(t, v, root)}, crlName(t, inter, 1): {ok(t, v, inter)}}
		}},
		// The CA file's CRLs count once CRL checking is on.
		{name: "ca-file-holds-the-crls", chain: chain, dir: func(testing.TB, crlVersion) map[string][][]byte { return map[string][][]byte{} },
			ca: func(t testing.TB, v crlVersion) []byte {
				return append(append([]byte{}, caRoot...), pemCRL(ok(t, v, root), ok(t, v, inter))...)
			}},
	}
	for _, tc := range cases {
		for _, ver := range crlVersions {
			t.Run(tc.name+"/"+ver.name, func(t *testing.T) {
				s := scenario{name: tc.name, ca: caRoot, chain: tc.chain, want: tc.want, depth: tc.depth}
				if tc.ca != nil {
					s.ca = tc.ca(t, ver)
				}
				if tc.crls != nil {
					s.crlFile = pemCRL(tc.crls(t, ver)...)
				}
				if tc.dir != nil {
					s.crlDir = map[string][]byte{}
					for name, ders := range tc.dir(t, ver) {
						s.crlDir[name] = pemCRL(ders...)
					}
				}
				cfg := writeScenario(t, t.TempDir(), s)
				v, err := NewVerifier(cfg)
				if err != nil {
					t.Fatal(err)
				}
				_, err = v.Verify(rawChain(s.chain), testNow)
				if r, d := outcome(err); r != s.want || d != s.depth {
					t.Fatalf("Verify: got %v at depth %d (%v); want %v at depth %d", r, d, err, s.want, s.depth)
				}
				if ver.name == "v1" {
					checkScenarioWithOpenSSL(t, s)
				}
			})
		}
	}
}

// TestCRLShapes covers the CRL shapes `openssl ca` does not write but
// OpenSSL 3.0 reads, each checked against `openssl verify`: OpenSSL takes
// the extensions of a CRL whatever its version says, so a v1 CRL with a
// critical extension it does not handle is unusable, and one scoped by an
// issuingDistributionPoint is scoped; ignoring them would accept what
// PostgreSQL refuses.
func TestCRLShapes(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	inter := issue(t, "inter", root, nil, true)
	leaf := issue(t, "leaf", inter, nil, false)
	chain := []*node{leaf, inter}
	rootCRL := opensslV1CRL(t, root, nil, time.Time{}, time.Time{})
	critical := []pkix.Extension{{Id: oidUnknownExt, Critical: true, Value: []byte{0x05, 0x00}}}
	onlyCA := []pkix.Extension{{Id: oidIDP, Critical: true, Value: []byte{0x30, 0x03, 0x82, 0x01, 0xff}}}
	cases := []struct {
		name    string
		crl     []byte
		version int // the version field written; -1 none
		exts    bool
		want    Reason
	}{
		{name: "v1-explicit-version-0", crl: reshapeCRL(t, inter, makeCRL(t, inter, crlSpec{}), 0, false), version: 0},
		{name: "v1-explicit-version-0-revoked", crl: reshapeCRL(t, inter, makeCRL(t, inter, crlSpec{revoked: []*node{leaf}}), 0, false), version: 0, want: CertRevoked},
		{name: "v1-with-extensions", crl: reshapeCRL(t, inter, makeCRL(t, inter, crlSpec{}), -1, true), version: -1, exts: true},
		{name: "v1-with-critical-extension", crl: reshapeCRL(t, inter, makeCRL(t, inter, crlSpec{extra: critical}), -1, true), version: -1, exts: true, want: UnhandledCriticalCRLExtension},
		{name: "v1-with-idp-only-ca", crl: reshapeCRL(t, inter, makeCRL(t, inter, crlSpec{extra: onlyCA}), -1, true), version: -1, exts: true, want: DifferentCRLScope},
		// A reason code is an entry extension; removeFromCRL un-revokes.
		{name: "v1-entry-remove-from-crl", crl: reshapeCRL(t, inter, makeCRL(t, inter, crlSpec{revoked: []*node{leaf}, reason: reasonRemoveFromCRL}), -1, false), version: -1},
		{name: "v1-entry-key-compromise", crl: reshapeCRL(t, inter, makeCRL(t, inter, crlSpec{revoked: []*node{leaf}, reason: 1}), -1, false), version: -1, want: CertRevoked},
		{name: "v1-resigned-by-another-key", crl: reshapeCRL(t, root, makeCRL(t, inter, crlSpec{}), -1, false), version: -1, want: CRLSignatureFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if v, exts := crlShape(t, tc.crl); v != tc.version || exts != tc.exts {
				t.Fatalf("test CRL has version field %d, extensions %v; want %d, %v", v, exts, tc.version, tc.exts)
			}
			s := scenario{name: tc.name, ca: pemCert(root), chain: chain, crlFile: pemCRL(rootCRL, tc.crl), want: tc.want}
			cfg := writeScenario(t, t.TempDir(), s)
			v, err := NewVerifier(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(rawChain(chain), testNow)
			if r, d := outcome(err); r != tc.want || d != 0 {
				t.Fatalf("Verify: got %v at depth %d (%v); want %v", r, d, err, tc.want)
			}
			checkScenarioWithOpenSSL(t, s)
		})
	}
}

// TestCRLUnknownVersion: a version field other than v1 (0) or v2 (1) is
// refused when the file loads. OpenSSL 3.0 reads such a CRL ("Version
// unknown") and uses it like any other; no CA writes one, RFC 5280 allows
// none, and refusing it keeps the proxy from starting rather than guessing
// what a future version would mean.
func TestCRLUnknownVersion(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	crl := filepath.Join(dir, "crl.pem")
	if err := os.WriteFile(ca, pemCert(root), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crl, pemCRL(reshapeCRL(t, root, makeCRL(t, root, crlSpec{}), 2, true)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewVerifier(Config{CAFile: ca, CRLFile: crl})
	want := `could not load SSL certificate revocation list file "` + crl + `": x509: unsupported crl version: 2`
	if err == nil || err.Error() != want {
		t.Fatalf("NewVerifier: %v\nwant %s", err, want)
	}
}

// TestCRLv1Load: a v1 CRL loads from ssl_crl_file, from ssl_ca_file, and
// from an ssl_crl_dir file (the expiry metric's reader), and its
// nextUpdate is reported.
func TestCRLv1Load(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	next := testNow.Add(72 * time.Hour).Truncate(time.Second)
	crl := pemCRL(opensslV1CRL(t, root, nil, time.Time{}, next))
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dn, err := FormatDN(root.cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"ssl_crl_file": {CAFile: write("ca.pem", pemCert(root)), CRLFile: write("crl.pem", crl)},
		"ssl_ca_file":  {CAFile: write("ca+crl.pem", append(pemCert(root), crl...))},
	} {
		v, err := NewVerifier(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := v.CRLNextUpdates()[dn]; !got.Equal(next) {
			t.Errorf("%s: CRLNextUpdates()[%q] = %v, want %v", name, dn, got, next)
		}
	}
	if got := CRLFileNextUpdates(crl)[dn]; !got.Equal(next) {
		t.Errorf("CRLFileNextUpdates()[%q] = %v, want %v", dn, got, next)
	}
}

// TestParseCRL: the parser keeps the CRL's own encoding for the signature
// check, whatever it had to change for Go's parser, and refuses what is
// not a CRL.
func TestParseCRL(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	leaf := issue(t, "leaf", root, nil, false)
	v1 := opensslV1CRL(t, root, []*node{leaf}, time.Time{}, time.Time{})
	v2 := makeCRL(t, root, crlSpec{revoked: []*node{leaf}})
	v0 := reshapeCRL(t, root, v2, 0, false)
	for name, der := range map[string][]byte{"v1": v1, "v2": v2, "explicit-v1": v0} {
		t.Run(name, func(t *testing.T) {
			rl, err := parseCRL(der)
			if err != nil {
				t.Fatal(err)
			}
			var outer struct {
				TBS asn1.RawValue
				Alg asn1.RawValue
				Sig asn1.BitString
			}
			if _, err := asn1.Unmarshal(der, &outer); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rl.Raw, der) || !bytes.Equal(rl.RawTBSRevocationList, outer.TBS.FullBytes) {
				t.Fatal("Raw or RawTBSRevocationList is not the CRL's own encoding")
			}
			if err := root.cert.CheckSignature(rl.SignatureAlgorithm, rl.RawTBSRevocationList, rl.Signature); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rl.RawIssuer, root.cert.RawSubject) {
				t.Fatal("issuer")
			}
			if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.cert.SerialNumber) != 0 {
				t.Fatalf("revoked entries %+v", rl.RevokedCertificateEntries)
			}
		})
	}
	for name, der := range map[string][]byte{
		"empty":             nil,
		"truncated-v1":      v1[:len(v1)-1],
		"no-fields":         reshapeTBS(t, v1, func([]byte) []byte { return nil }),
		"version-only":      reshapeTBS(t, v1, func([]byte) []byte { return []byte{0x02, 0x01, 0x00} }),
		"explicit-v1-twice": reshapeTBS(t, v1, func(tbs []byte) []byte { return append([]byte{0x02, 0x01, 0x00, 0x02, 0x01, 0x00}, tbs...) }),
		"negative-version":  reshapeTBS(t, v1, func(tbs []byte) []byte { return append([]byte{0x02, 0x01, 0xff}, tbs...) }),
	} {
		t.Run(name, func(t *testing.T) {
			if rl, err := parseCRL(der); err == nil {
				t.Fatalf("parsed: %+v", rl)
			}
		})
	}
}

// reshapeTBS rewrites the content of a CRL's TBSCertList with f, leaving
// the signature as it was (the results are malformed, not re-signed).
func reshapeTBS(t testing.TB, der []byte, f func(tbs []byte) []byte) []byte {
	t.Helper()
	var outer struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	content := f(append([]byte{}, outer.TBS.Bytes...))
	tbs := appendTLV(nil, 0x30, content)
	alg := outer.Alg.FullBytes
	sig, err := asn1.Marshal(outer.Sig)
	if err != nil {
		t.Fatal(err)
	}
	return appendTLV(nil, 0x30, append(append(tbs, alg...), sig...))
}

// FuzzParseCRL: no input panics the parser; whatever it accepts keeps its
// own encoding as Raw and its TBSCertList as RawTBSRevocationList; and
// whatever Go's parser accepts as it stands, parseCRL reads the same way.
func FuzzParseCRL(f *testing.F) {
	root := issue(f, "root", nil, nil, true)
	leaf := issue(f, "leaf", root, nil, false)
	v2 := makeCRL(f, root, crlSpec{revoked: []*node{leaf}})
	f.Add(v2)
	f.Add(reshapeCRL(f, root, v2, -1, false))
	f.Add(reshapeCRL(f, root, v2, -1, true))
	f.Add(reshapeCRL(f, root, v2, 0, true))
	f.Fuzz(func(t *testing.T, der []byte) {
		rl, err := parseCRL(der)
		goRL, goErr := x509.ParseRevocationList(der)
		if goErr == nil {
			if err != nil {
				t.Fatalf("Go parses it, parseCRL does not: %v", err)
			}
			if !bytes.Equal(rl.RawTBSRevocationList, goRL.RawTBSRevocationList) || !bytes.Equal(rl.RawIssuer, goRL.RawIssuer) ||
				len(rl.RevokedCertificateEntries) != len(goRL.RevokedCertificateEntries) || len(rl.Extensions) != len(goRL.Extensions) {
				t.Fatal("parseCRL reads a CRL Go accepts differently")
			}
		}
		if err != nil {
			return
		}
		if !bytes.HasPrefix(der, rl.Raw) || !bytes.Contains(rl.Raw, rl.RawTBSRevocationList) {
			t.Fatal("Raw or RawTBSRevocationList is not taken from the input")
		}
	})
}
