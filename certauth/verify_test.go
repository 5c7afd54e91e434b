package certauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scenario is one verification case: the files PostgreSQL would be given,
// the chain the client sends, and the expected outcome (Reason 0 = OK).
type scenario struct {
	name    string
	ca      []byte
	chain   []*node
	crlFile []byte
	crlDir  map[string][]byte // file name → content; nil = no ssl_crl_dir
	want    Reason
	depth   int
	// noOpenSSL skips the differential comparison, with the reason.
	noOpenSSL string
}

func crlName(t testing.TB, issuer *node, k int) string {
	h, err := NameHash(issuer.cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%08x.r%d", h, k)
}

func certName(t testing.TB, n *node, k int) string {
	h, err := NameHash(n.cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%08x.%d", h, k)
}

var (
	oidNSCertType = asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 1}
	oidUnknownExt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7}
	oidIDP        = asn1.ObjectIdentifier{2, 5, 29, 28}
)

func scenarios(t testing.TB) []scenario {
	day := 24 * time.Hour
	root := issue(t, "root", nil, nil, true)
	root2 := issue(t, "other-root", nil, nil, true)
	inter := issue(t, "inter", root, nil, true)
	leaf := issue(t, "leaf", inter, nil, false)
	leafRoot := issue(t, "leaf-root", root, nil, false)
	expired := issue(t, "expired", inter, nil, false, withValidity(testNow.Add(-10*day), testNow.Add(-day)))
	future := issue(t, "future", inter, nil, false, withValidity(testNow.Add(day), testNow.Add(10*day)))
	interExpired := issue(t, "inter-expired", root, nil, true, withValidity(testNow.Add(-10*day), testNow.Add(-day)))
	leafOfExpired := issue(t, "leaf-of-expired", interExpired, nil, false)
	srvOnly := issue(t, "server-only", inter, nil, false, withEKU(x509.ExtKeyUsageServerAuth))
	anyEKU := issue(t, "any-eku", inter, nil, false, withEKU(x509.ExtKeyUsageAny))
	clientEKU := issue(t, "client-eku", inter, nil, false, withEKU(x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth))
	kuEnc := issue(t, "ku-keyencipherment", inter, nil, false, withKU(x509.KeyUsageKeyEncipherment))
	kuAgree := issue(t, "ku-keyagreement", inter, nil, false, withKU(x509.KeyUsageKeyAgreement))
	nsServer := issue(t, "ns-server", inter, nil, false, withExt(oidNSCertType, false, []byte{0x03, 0x02, 0x06, 0x40}))
	nsClient := issue(t, "ns-client", inter, nil, false, withExt(oidNSCertType, false, []byte{0x03, 0x02, 0x07, 0x80}))
	interSrv := issue(t, "inter-server-eku", root, nil, true, withEKU(x509.ExtKeyUsageServerAuth))
	leafOfSrv := issue(t, "leaf-of-inter-server-eku", interSrv, nil, false)
	interClient := issue(t, "inter-client-eku", root, nil, true, withEKU(x509.ExtKeyUsageClientAuth))
	leafOfClient := issue(t, "leaf-of-inter-client-eku", interClient, nil, false)
	notCA := issue(t, "not-a-ca", root, nil, false, func(c *x509.Certificate) { c.BasicConstraintsValid = true; c.KeyUsage |= x509.KeyUsageCertSign })
	leafOfNotCA := issue(t, "leaf-of-not-a-ca", notCA, nil, false)
	noCertSign := issue(t, "inter-no-certsign", root, nil, true, withKU(x509.KeyUsageDigitalSignature|x509.KeyUsageCRLSign))
	leafOfNoCertSign := issue(t, "leaf-of-inter-no-certsign", noCertSign, nil, false)
	selfSigned := issue(t, "self-signed-client", nil, nil, false)
	critical := issue(t, "critical-ext", inter, nil, false, withExt(oidUnknownExt, true, []byte{0x05, 0x00}))
	nonCritical := issue(t, "noncritical-ext", inter, nil, false, withExt(oidUnknownExt, false, []byte{0x05, 0x00}))
	pl0 := issue(t, "inter-pathlen0", root, nil, true, func(c *x509.Certificate) { c.MaxPathLenZero = true })
	sub := issue(t, "sub-inter", pl0, nil, true)
	leafOfSub := issue(t, "leaf-of-sub", sub, nil, false)
	rootSrv := issue(t, "root-server-eku", nil, nil, true, withEKU(x509.ExtKeyUsageServerAuth))
	leafOfRootSrv := issue(t, "leaf-of-root-server-eku", rootSrv, nil, false)
	rootNoCRLSign := issue(t, "root-no-crlsign", nil, nil, true, withKU(x509.KeyUsageCertSign))
	leafOfNoCRLSign := issue(t, "leaf-of-root-no-crlsign", rootNoCRLSign, nil, false)
	impostor := issue(t, "root", nil, nil, true) // same name as root, other key
	leafDP := issue(t, "leaf-crldp", inter, nil, false, withCRLDP("http://crl.example/inter.crl"))
	leafExpiredRevoked := issue(t, "expired-and-revoked", inter, nil, false, withValidity(testNow.Add(-10*day), testNow.Add(-day)))

	ncInter := issue(t, "nc-inter", root, nil, true, func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"example.org"} })
	ncOK := issue(t, "nc-ok", ncInter, nil, false, func(c *x509.Certificate) { c.DNSNames = []string{"db.example.org"} })
	ncBad := issue(t, "nc-bad", ncInter, nil, false, func(c *x509.Certificate) { c.DNSNames = []string{"db.evil.com"} })

	rootCRL := makeCRL(t, root, crlSpec{})
	interCRL := makeCRL(t, inter, crlSpec{})
	interCRLRevLeaf := makeCRL(t, inter, crlSpec{revoked: []*node{leaf, leafExpiredRevoked}})
	interCRLRevNewer := makeCRL(t, inter, crlSpec{revoked: []*node{leaf}, this: testNow.Add(-time.Minute)})
	interCRLNewer := makeCRL(t, inter, crlSpec{this: testNow.Add(-time.Minute)})
	interCRLRemove := makeCRL(t, inter, crlSpec{revoked: []*node{leaf}, reason: 8})
	rootCRLRevRoot := makeCRL(t, root, crlSpec{revoked: []*node{root}})
	rootCRLRevInter := makeCRL(t, root, crlSpec{revoked: []*node{inter}})
	interCRLExpired := makeCRL(t, inter, crlSpec{this: testNow.Add(-10 * day), next: testNow.Add(-day)})
	interCRLFuture := makeCRL(t, inter, crlSpec{this: testNow.Add(day), next: testNow.Add(10 * day)})
	interCRLBadSig := makeCRL(t, inter, crlSpec{signer: leaf})
	interCRLCritical := makeCRL(t, inter, crlSpec{extra: []pkix.Extension{{Id: oidUnknownExt, Critical: true, Value: []byte{0x05, 0x00}}}})
	// IDP onlyContainsCACerts: does not cover an end-entity certificate.
	interCRLOnlyCA := makeCRL(t, inter, crlSpec{extra: []pkix.Extension{{Id: oidIDP, Critical: true, Value: []byte{0x30, 0x03, 0x82, 0x01, 0xff}}}})
	rootNoCRLSignCRL := makeCRL(t, rootNoCRLSign, crlSpec{})
	impostorCRL := makeCRL(t, impostor, crlSpec{})
	root2CRL := makeCRL(t, root2, crlSpec{})

	caRoot := pemCert(root)
	return []scenario{
		{name: "root-direct", ca: caRoot, chain: []*node{leafRoot}},
		{name: "intermediate-sent-by-client", ca: caRoot, chain: []*node{leaf, inter}},
		{name: "intermediate-in-ca-file", ca: pemCert(root, inter), chain: []*node{leaf}},
		{name: "intermediate-in-ca-file-root-first", ca: pemCert(inter, root), chain: []*node{leaf}},
		{name: "intermediate-as-anchor", ca: pemCert(inter), chain: []*node{leaf}, want: UnableToGetIssuerCert, depth: 1},
		{name: "intermediate-as-anchor-also-sent", ca: pemCert(inter), chain: []*node{leaf, inter}, want: UnableToGetIssuerCert, depth: 1},
		{name: "missing-intermediate", ca: caRoot, chain: []*node{leaf}, want: UnableToGetIssuerCertLocally},
		{name: "wrong-ca", ca: pemCert(root2), chain: []*node{leaf, inter}, want: UnableToGetIssuerCertLocally, depth: 1},
		{name: "client-sends-root-not-in-ca", ca: pemCert(root2), chain: []*node{leaf, inter, root}, want: SelfSignedCertInChain, depth: 2},
		{name: "self-signed-client", ca: caRoot, chain: []*node{selfSigned}, want: DepthZeroSelfSigned},
		{name: "self-signed-client-in-ca-file", ca: pemCert(root, selfSigned), chain: []*node{selfSigned}},
		{name: "same-name-impostor-root", ca: pemCert(impostor), chain: []*node{leaf, inter}, want: UnableToGetIssuerCertLocally, depth: 1},
		{name: "expired-leaf", ca: caRoot, chain: []*node{expired, inter}, want: CertHasExpired},
		{name: "not-yet-valid-leaf", ca: caRoot, chain: []*node{future, inter}, want: CertNotYetValid},
		{name: "expired-intermediate", ca: caRoot, chain: []*node{leafOfExpired, interExpired}, want: CertHasExpired, depth: 1},
		{name: "eku-server-only", ca: caRoot, chain: []*node{srvOnly, inter}, want: InvalidPurpose},
		{name: "eku-any", ca: caRoot, chain: []*node{anyEKU, inter}, want: InvalidPurpose},
		{name: "eku-client", ca: caRoot, chain: []*node{clientEKU, inter}},
		{name: "ku-keyencipherment-only", ca: caRoot, chain: []*node{kuEnc, inter}, want: InvalidPurpose},
		{name: "ku-keyagreement", ca: caRoot, chain: []*node{kuAgree, inter}},
		{name: "nscerttype-server", ca: caRoot, chain: []*node{nsServer, inter}, want: InvalidPurpose},
		{name: "nscerttype-client", ca: caRoot, chain: []*node{nsClient, inter}},
		{name: "intermediate-eku-server", ca: caRoot, chain: []*node{leafOfSrv, interSrv}, want: InvalidPurpose, depth: 1},
		{name: "intermediate-eku-client", ca: caRoot, chain: []*node{leafOfClient, interClient}},
		{name: "root-eku-server", ca: pemCert(rootSrv), chain: []*node{leafOfRootSrv}, want: InvalidPurpose, depth: 1},
		{name: "issuer-not-ca", ca: caRoot, chain: []*node{leafOfNotCA, notCA}, want: InvalidCA, depth: 1},
		{name: "issuer-keyusage-no-certsign", ca: caRoot, chain: []*node{leafOfNoCertSign, noCertSign}, want: InvalidCA, depth: 1},
		{name: "critical-unknown-extension", ca: caRoot, chain: []*node{critical, inter}, want: UnhandledCriticalExtension},
		{name: "noncritical-unknown-extension", ca: caRoot, chain: []*node{nonCritical, inter}},
		{name: "pathlen-exceeded", ca: caRoot, chain: []*node{leafOfSub, sub, pl0}, want: PathLengthExceeded, depth: 2},

		{name: "name-constraints-ok", ca: caRoot, chain: []*node{ncOK, ncInter}},
		{name: "name-constraints-violated", ca: caRoot, chain: []*node{ncBad, ncInter}, want: PermittedViolation},

		{name: "crl-file-ok", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRL)},
		{name: "crl-file-no-root-crl", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(interCRL), want: UnableToGetCRL, depth: 1},
		{name: "crl-file-missing-issuer-crl", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL), want: UnableToGetCRL},
		{name: "crl-file-revoked", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLRevLeaf), want: CertRevoked},
		{name: "crl-file-revoked-and-expired", ca: caRoot, chain: []*node{leafExpiredRevoked, inter}, crlFile: pemCRL(rootCRL, interCRLRevLeaf), want: CertRevoked},
		{name: "crl-file-intermediate-revoked", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRLRevInter, interCRL), want: CertRevoked, depth: 1},
		{name: "crl-file-remove-from-crl", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLRemove)},
		{name: "crl-expired", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLExpired), want: CRLHasExpired},
		{name: "crl-not-yet-valid", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLFuture), want: CRLNotYetValid},
		{name: "crl-expired-and-current", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLExpired, interCRL)},
		{name: "crl-bad-signature", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLBadSig), want: CRLSignatureFailure},
		{name: "crl-critical-extension", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLCritical), want: UnhandledCriticalCRLExtension},
		{name: "crl-idp-only-ca", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLOnlyCA), want: DifferentCRLScope},
		{name: "crl-issuer-no-crlsign", ca: pemCert(rootNoCRLSign), chain: []*node{leafOfNoCRLSign}, crlFile: pemCRL(rootNoCRLSignCRL), want: KeyUsageNoCRLSign, depth: 0},
		{name: "crl-from-impostor", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(impostorCRL, interCRL), want: UnableToGetCRL, depth: 1},
		{name: "crl-leaf-with-crldp", ca: caRoot, chain: []*node{leafDP, inter}, crlFile: pemCRL(rootCRL, interCRL)},
		{name: "crl-unrelated-only", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(root2CRL), want: UnableToGetCRL},

		{name: "crl-dir-ok", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL), crlName(t, inter, 0): pemCRL(interCRL)}},
		{name: "crl-dir-revoked", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL), crlName(t, inter, 0): pemCRL(interCRLRevLeaf)}, want: CertRevoked},
		// Equally good CRLs: the newer thisUpdate wins, else the first loaded.
		{name: "crl-dir-same-time-r0-wins", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL), crlName(t, inter, 0): pemCRL(interCRL), crlName(t, inter, 1): pemCRL(interCRLRevLeaf)}},
		{name: "crl-dir-newer-r1-wins", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL), crlName(t, inter, 0): pemCRL(interCRL), crlName(t, inter, 1): pemCRL(interCRLRevNewer)}, want: CertRevoked},
		{name: "crl-dir-older-r1-loses", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL), crlName(t, inter, 0): pemCRL(interCRLNewer), crlName(t, inter, 1): pemCRL(interCRLRevLeaf)}},
		{name: "crl-dir-r1-without-r0", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL), crlName(t, inter, 1): pemCRL(interCRL)}, want: UnableToGetCRL},
		{name: "crl-dir-missing-issuer-crl", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL)}, want: UnableToGetCRL},
		{name: "crl-dir-empty", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{}, want: UnableToGetCRL},
		{name: "crl-dir-revoked-in-r0", ca: caRoot, chain: []*node{leaf, inter}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL), crlName(t, inter, 0): pemCRL(interCRLRevLeaf), crlName(t, inter, 1): pemCRL(interCRL)}, want: CertRevoked},
		{name: "crl-file-revoked-second", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRL, interCRLRevLeaf)},
		{name: "crl-file-revoked-first", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL, interCRLRevLeaf, interCRL), want: CertRevoked},
		{name: "root-revoked-in-own-crl", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRLRevRoot, interCRL), want: CertRevoked, depth: 2},
		{name: "root-only-chain-one-crl", ca: caRoot, chain: []*node{leafRoot}, crlFile: pemCRL(rootCRL)},
		{name: "crl-dir-and-file", ca: caRoot, chain: []*node{leaf, inter}, crlFile: pemCRL(rootCRL), crlDir: map[string][]byte{crlName(t, inter, 0): pemCRL(interCRL)}},
		{name: "crl-dir-holds-intermediate", ca: caRoot, chain: []*node{leaf}, crlDir: map[string][]byte{crlName(t, root, 0): pemCRL(rootCRL), crlName(t, inter, 0): pemCRL(interCRL), certName(t, inter, 0): pemCert(inter)}},
	}
}

// runScenario writes the scenario's files under dir and returns the Config.
func writeScenario(t *testing.T, dir string, s scenario) Config {
	t.Helper()
	cfg := Config{CAFile: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(cfg.CAFile, s.ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if s.crlFile != nil {
		cfg.CRLFile = filepath.Join(dir, "crl.pem")
		if err := os.WriteFile(cfg.CRLFile, s.crlFile, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if s.crlDir != nil {
		cfg.CRLDir = filepath.Join(dir, "crldir")
		if err := os.Mkdir(cfg.CRLDir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, data := range s.crlDir {
			if err := os.WriteFile(filepath.Join(cfg.CRLDir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return cfg
}

func rawChain(chain []*node) [][]byte {
	var out [][]byte
	for _, n := range chain {
		out = append(out, n.der)
	}
	return out
}

// outcome reduces a Verify result to the reason and depth.
func outcome(err error) (Reason, int) {
	if err == nil {
		return 0, 0
	}
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Reason, ve.Depth
	}
	return -1, 0
}

func TestVerifyScenarios(t *testing.T) {
	for _, s := range scenarios(t) {
		t.Run(s.name, func(t *testing.T) {
			cfg := writeScenario(t, t.TempDir(), s)
			v, err := NewVerifier(cfg)
			if err != nil {
				t.Fatal(err)
			}
			chain, err := v.Verify(rawChain(s.chain), testNow)
			r, d := outcome(err)
			if r != s.want || d != s.depth {
				t.Fatalf("Verify: got %v (%d) at depth %d, err %v; want %v (%d) at depth %d", r, int(r), d, err, s.want, int(s.want), s.depth)
			}
			if err == nil {
				if len(chain) < 1 || !chain[0].Equal(s.chain[0].cert) {
					t.Fatalf("chain does not start with the leaf")
				}
				if top := chain[len(chain)-1]; top.CheckSignatureFrom(top) != nil && len(chain) > 1 {
					t.Fatalf("chain does not end at a self-signed root")
				}
			}
		})
	}
}

var opensslErrRE = regexp.MustCompile(`(?m)^error (\d+) at (\d+) depth lookup: (.*)$`)

// TestVerifyDifferential runs every scenario through `openssl verify` with
// the flags PostgreSQL's be_tls_init amounts to (see opensslVerify) and
// compares the first error (PostgreSQL's verify_cb stops at the first),
// its depth and its text with Verify's.
func TestVerifyDifferential(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not on PATH: make test installs it (Debian openssl) as root")
	}
	for _, s := range scenarios(t) {
		t.Run(s.name, func(t *testing.T) {
			if s.noOpenSSL != "" {
				t.Skip(s.noOpenSSL)
			}
			checkScenarioWithOpenSSL(t, s)
		})
	}
}

// checkScenarioWithOpenSSL writes s's files, and requires Verify to give
// the verdict `openssl verify` gives for them.
func checkScenarioWithOpenSSL(t *testing.T, s scenario) {
	t.Helper()
	dir := t.TempDir()
	cfg := writeScenario(t, dir, s)
	leaf := filepath.Join(dir, "leaf.pem")
	if err := os.WriteFile(leaf, pemCert(s.chain[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	untrusted := ""
	if len(s.chain) > 1 {
		untrusted = filepath.Join(dir, "untrusted.pem")
		if err := os.WriteFile(untrusted, pemCert(s.chain[1:]...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wantR, wantD, wantText, out := opensslVerify(t, cfg, leaf, untrusted, testNow)
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(rawChain(s.chain), testNow)
	r, d := outcome(err)
	if r != wantR || d != wantD {
		t.Fatalf("Verify: %v (%d) at depth %d (%v)\n%s", r, int(r), d, err, out)
	}
	if wantText != "" && r.String() != wantText {
		t.Errorf("Reason text %q, openssl says %q", r.String(), wantText)
	}
}

// opensslVerify runs `openssl verify` on the certificate file leaf, with
// the certificates of the file untrusted ("" for none) as the rest of the
// client's chain, at time at, with the flags PostgreSQL's be_tls_init
// amounts to: cfg's CA file; with a CRL file or directory, -crl_check
// -crl_check_all; the server-side sslclient purpose. It returns the first
// error's reason, depth and text (reason 0 when the chain verifies) and,
// for failure messages, the command and its output.
func opensslVerify(t *testing.T, cfg Config, leaf, untrusted string, at time.Time) (Reason, int, string, string) {
	t.Helper()
	args := []string{"verify", "-purpose", "sslclient", "-attime", strconv.FormatInt(at.Unix(), 10), "-CAfile", cfg.CAFile}
	if untrusted != "" {
		args = append(args, "-untrusted", untrusted)
	}
	if cfg.CRLFile != "" {
		args = append(args, "-CRLfile", cfg.CRLFile)
	}
	if cfg.CRLDir != "" {
		args = append(args, "-CApath", cfg.CRLDir)
	}
	if cfg.CRLFile != "" || cfg.CRLDir != "" {
		args = append(args, "-crl_check", "-crl_check_all")
	}
	out, runErr := exec.Command("openssl", append(args, leaf)...).CombinedOutput()
	report := fmt.Sprintf("openssl %s %s:\n%s", strings.Join(args, " "), leaf, out)
	if m := opensslErrRE.FindStringSubmatch(string(out)); m != nil {
		n, _ := strconv.Atoi(m[1])
		d, _ := strconv.Atoi(m[2])
		return Reason(n), d, m[3], report
	}
	if runErr != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", runErr, report)
	}
	return 0, 0, "", report
}
