package testpki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a root → intermediate hierarchy with a server and a client leaf
// under the intermediate, shared by the tests below.
type pki struct {
	root, inter    *CA
	server, client *Leaf
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	root, err := NewRootCA(pkix.Name{CommonName: "Test Root CA", Organization: []string{"PGDG"}})
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate(pkix.Name{CommonName: "Test Intermediate CA"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := inter.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	client, err := inter.NewClient(pkix.Name{CommonName: "ssltestuser", OrganizationalUnit: []string{"Testing"}})
	if err != nil {
		t.Fatal(err)
	}
	return &pki{root, inter, server, client}
}

func TestGoVerify(t *testing.T) {
	p := newPKI(t)
	inters := x509.NewCertPool()
	for _, c := range p.client.Intermediates() {
		inters.AddCert(c)
	}
	for _, tc := range []struct {
		leaf *Leaf
		eku  x509.ExtKeyUsage
	}{
		{p.client, x509.ExtKeyUsageClientAuth},
		{p.server, x509.ExtKeyUsageServerAuth},
	} {
		chains, err := tc.leaf.Cert.Verify(x509.VerifyOptions{
			Roots:         p.root.Pool(),
			Intermediates: inters,
			KeyUsages:     []x509.ExtKeyUsage{tc.eku},
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.leaf.Cert.Subject, err)
		}
		if got := len(chains[0]); got != 3 {
			t.Errorf("%s: chain length %d, want 3", tc.leaf.Cert.Subject, got)
		}
	}
	if err := p.server.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	// The wrong purpose must fail, as PostgreSQL's does for a server
	// certificate presented as a client certificate.
	_, err := p.server.Cert.Verify(x509.VerifyOptions{
		Roots: p.root.Pool(), Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err == nil {
		t.Error("server certificate verified for clientAuth")
	}
	if !p.client.Cert.SerialNumber.IsInt64() || p.client.Cert.SerialNumber.Int64() != 2 {
		t.Errorf("client serial %v, want 2 (intermediate's sequential serials)", p.client.Cert.SerialNumber)
	}
}

func TestCRL(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	crlPEM, err := p.inter.CRL([]*x509.Certificate{p.client.Cert}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(crlPEM)
	if block == nil || block.Type != "X509 CRL" || len(rest) != 0 {
		t.Fatalf("CRL PEM: %q", crlPEM)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(p.inter.Cert); err != nil {
		t.Fatal(err)
	}
	if n := len(crl.RevokedCertificateEntries); n != 1 ||
		crl.RevokedCertificateEntries[0].SerialNumber.Cmp(p.client.Cert.SerialNumber) != 0 {
		t.Fatalf("revoked entries %+v, want serial %v", crl.RevokedCertificateEntries, p.client.Cert.SerialNumber)
	}
	second, err := p.inter.CRL(nil, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode(second)
	crl2, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if crl2.Number.Cmp(big.NewInt(2)) != 0 || len(crl2.RevokedCertificateEntries) != 0 {
		t.Errorf("second CRL: number %v, %d entries; want 2, 0", crl2.Number, len(crl2.RevokedCertificateEntries))
	}
}

func TestKeys(t *testing.T) {
	p := newPKI(t)
	if _, ok := p.client.Key.(*ecdsa.PrivateKey); !ok {
		t.Errorf("default key is %T, want ECDSA", p.client.Key)
	}
	rsaLeaf, err := p.root.NewClient(pkix.Name{CommonName: "rsa"}, WithRSA(2048))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := rsaLeaf.Key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Fatalf("WithRSA(2048) key is %T", rsaLeaf.Key)
	}
	for _, tc := range []struct {
		pem  []byte
		want string
	}{
		{p.client.KeyPEM, "PRIVATE KEY"},
		{p.client.KeyPEMTraditional, "EC PRIVATE KEY"},
		{rsaLeaf.KeyPEM, "PRIVATE KEY"},
		{rsaLeaf.KeyPEMTraditional, "RSA PRIVATE KEY"},
	} {
		block, _ := pem.Decode(tc.pem)
		if block == nil || block.Type != tc.want {
			t.Errorf("PEM type %v, want %q", block, tc.want)
		}
	}
	if p.client.TLSCertificate().Leaf != p.client.Cert {
		t.Error("TLSCertificate().Leaf is not the leaf")
	}
	if n := len(p.client.TLSCertificate().Certificate); n != 2 {
		t.Errorf("TLSCertificate has %d certificates, want leaf + intermediate", n)
	}
}

func TestRawName(t *testing.T) {
	der, err := RawName(
		RDN{{OID: OIDCountry, Tag: asn1.TagPrintableString, Value: []byte("US")}},
		RDN{UTF8(OIDCommonName, "a"), {OID: OIDUserID, Tag: asn1.TagUTF8String, Value: []byte("b")}},
		RDN{{OID: OIDCommonName, Tag: TagBMPString, Value: BMP("é")}},
	)
	if err != nil {
		t.Fatal(err)
	}
	var name pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &name); err != nil || len(rest) != 0 {
		t.Fatalf("unmarshal: %v, %d trailing bytes", err, len(rest))
	}
	if len(name) != 3 || len(name[1]) != 2 || name[2][0].Value != "é" {
		t.Fatalf("round trip: %v", name)
	}
	if _, err := RawName(RDN{}); err == nil {
		t.Error("empty RDN accepted")
	}
	if _, err := RawName(RDN{{OID: OIDCommonName, Tag: 31}}); err == nil {
		t.Error("tag 31 accepted")
	}
	if got, want := UCS4("a€"), []byte{0, 0, 0, 'a', 0, 0, 0x20, 0xac}; !bytes.Equal(got, want) {
		t.Errorf("UCS4 = %x, want %x", got, want)
	}
}

func TestUnparseableLeaf(t *testing.T) {
	root, err := NewRootCA(pkix.Name{CommonName: "root"})
	if err != nil {
		t.Fatal(err)
	}
	der, err := RawName(RDNs(ATV{OID: OIDCommonName, Tag: TagUniversalString, Value: UCS4("x")})...)
	if err != nil {
		t.Fatal(err)
	}
	l, err := root.NewClient(pkix.Name{}, WithRawSubject(der))
	if err != nil {
		t.Fatal(err)
	}
	if l.Cert != nil || len(l.DER) == 0 {
		t.Fatalf("Cert = %v, %d DER bytes; want nil Cert and DER set", l.Cert, len(l.DER))
	}
	if tc := l.TLSCertificate(); len(tc.Certificate) != 1 || tc.PrivateKey == nil {
		t.Errorf("TLSCertificate: %+v", tc)
	}
	if _, err := root.NewIntermediate(pkix.Name{}, WithRawSubject(der)); err == nil {
		t.Error("CA with unparseable subject accepted")
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	if err := WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Rewriting must tighten the mode, which os.WriteFile alone does not.
	if err := WriteFile(path, []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
}

// openssl runs the openssl CLI in dir, skipping the test when it is absent.
func openssl(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSSL checks what PostgreSQL will see, using OpenSSL itself: chains,
// purposes, validity, CRLs and key formats.
func TestOpenSSL(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	now := time.Now()
	expired, err := p.inter.NewClient(pkix.Name{CommonName: "expired"}, WithValidity(now.Add(-48*time.Hour), now.Add(-24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	noEKU, err := p.inter.NewClient(pkix.Name{CommonName: "any"}, WithEKU())
	if err != nil {
		t.Fatal(err)
	}
	rootCRL, err := p.root.CRL(nil, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	interCRL, err := p.inter.CRL([]*x509.Certificate{p.client.Cert}, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "root.crt", p.root.CertPEM)
	write(t, dir, "inter.crt", p.inter.CertPEM)
	write(t, dir, "client.crt", p.client.CertPEM)
	write(t, dir, "client-chain.crt", p.client.ChainPEM())
	write(t, dir, "server.crt", p.server.CertPEM)
	write(t, dir, "expired.crt", expired.CertPEM)
	write(t, dir, "noeku.crt", noEKU.CertPEM)
	write(t, dir, "crls.pem", append(append([]byte(nil), rootCRL...), interCRL...))
	write(t, dir, "client.key", p.client.KeyPEM)
	write(t, dir, "client-ec.key", p.client.KeyPEMTraditional)

	for _, tc := range []struct {
		name string
		args []string
		want string // substring of the output
		ok   bool
	}{
		{"client chain", []string{"verify", "-CAfile", "root.crt", "-untrusted", "inter.crt", "-purpose", "sslclient", "client.crt"}, "client.crt: OK", true},
		{"server chain", []string{"verify", "-CAfile", "root.crt", "-untrusted", "inter.crt", "-purpose", "sslserver", "server.crt"}, "server.crt: OK", true},
		{"leaf only", []string{"verify", "-CAfile", "root.crt", "client.crt"}, "unable to get local issuer certificate", false},
		{"wrong purpose", []string{"verify", "-CAfile", "root.crt", "-untrusted", "inter.crt", "-purpose", "sslclient", "server.crt"}, "unsuitable certificate purpose", false},
		{"no EKU is any purpose", []string{"verify", "-CAfile", "root.crt", "-untrusted", "inter.crt", "-purpose", "sslclient", "noeku.crt"}, "noeku.crt: OK", true},
		{"expired", []string{"verify", "-CAfile", "root.crt", "-untrusted", "inter.crt", "expired.crt"}, "certificate has expired", false},
		{"revoked", []string{"verify", "-crl_check_all", "-CRLfile", "crls.pem", "-CAfile", "root.crt", "-untrusted", "inter.crt", "client.crt"}, "certificate revoked", false},
		{"not revoked", []string{"verify", "-crl_check_all", "-CRLfile", "crls.pem", "-CAfile", "root.crt", "-untrusted", "inter.crt", "server.crt"}, "server.crt: OK", true},
		{"chain file", []string{"crl2pkcs7", "-nocrl", "-certfile", "client-chain.crt"}, "BEGIN PKCS7", true},
		{"PKCS#8 key", []string{"pkey", "-in", "client.key", "-noout", "-text"}, "NIST CURVE: P-256", true},
		{"SEC1 key", []string{"pkey", "-in", "client-ec.key", "-noout", "-text"}, "NIST CURVE: P-256", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := openssl(t, dir, tc.args...)
			if (err == nil) != tc.ok || !strings.Contains(out, tc.want) {
				t.Errorf("openssl %s: err=%v, output:\n%s\nwant ok=%v and %q", strings.Join(tc.args, " "), err, out, tc.ok, tc.want)
			}
		})
	}
	// The key must belong to the certificate.
	pub1, err := openssl(t, dir, "pkey", "-in", "client.key", "-pubout")
	if err != nil {
		t.Fatal(err)
	}
	pub2, err := openssl(t, dir, "x509", "-in", "client.crt", "-noout", "-pubkey")
	if err != nil {
		t.Fatal(err)
	}
	if pub1 != pub2 {
		t.Errorf("key does not match certificate:\n%s\n%s", pub1, pub2)
	}
}

// TestOpenSSLRawSubject checks that odd subjects reach OpenSSL as written,
// in the RFC 2253 form PostgreSQL uses for clientname=DN.
func TestOpenSSLRawSubject(t *testing.T) {
	root, err := NewRootCA(pkix.Name{CommonName: "root"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rdns []RDN
		want string
	}{
		{"order kept", RDNs(
			ATV{OID: OIDCountry, Tag: asn1.TagPrintableString, Value: []byte("US")},
			UTF8(OIDOrganization, "PGDG"),
			UTF8(OIDCommonName, "first"),
			UTF8(OIDCommonName, "second"),
		), "CN=second,CN=first,O=PGDG,C=US"},
		// OpenSSL prints every ATV in reverse encoded order, including
		// those inside one multi-valued RDN, and keeps the encoded order
		// of a SET that is not sorted as DER requires.
		{"multi-valued", []RDN{{UTF8(OIDCommonName, "a"), UTF8(OIDUserID, "b")}}, "UID=b+CN=a"},
		{"multi-valued unsorted", []RDN{{UTF8(OIDUserID, "b"), UTF8(OIDCommonName, "a")}}, "CN=a+UID=b"},
		{"multi-valued in a name", []RDN{{UTF8(OIDOrganization, "o")}, {UTF8(OIDCommonName, "a"), UTF8(OIDUserID, "b")}}, "UID=b+CN=a,O=o"},
		{"BMPString", RDNs(ATV{OID: OIDCommonName, Tag: TagBMPString, Value: BMP("josé")}), `CN=jos\C3\A9`},
		{"T61String", RDNs(ATV{OID: OIDCommonName, Tag: asn1.TagT61String, Value: []byte("jos\xe9")}), `CN=jos\C3\A9`},
		{"UniversalString", RDNs(ATV{OID: OIDCommonName, Tag: TagUniversalString, Value: UCS4("x")}), "CN=x"},
		{"unknown OID", RDNs(UTF8(asn1.ObjectIdentifier{1, 2, 3, 4}, "v")), "1.2.3.4=#0C0176"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := RawName(tc.rdns...)
			if err != nil {
				t.Fatal(err)
			}
			l, err := root.NewClient(pkix.Name{}, WithRawSubject(der))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			write(t, dir, "c.crt", l.CertPEM)
			out, err := openssl(t, dir, "x509", "-in", "c.crt", "-noout", "-subject", "-nameopt", "RFC2253")
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got := strings.TrimPrefix(out, "subject="); got != tc.want {
				t.Errorf("subject %q, want %q", got, tc.want)
			}
		})
	}
}
