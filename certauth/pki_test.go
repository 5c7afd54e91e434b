package certauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"sync/atomic"
	"testing"
	"time"
)

// A small PKI for verifier tests. Times are relative to testNow so that
// `openssl verify -attime` sees the same clock.
var testNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

var serialCounter atomic.Int64

type node struct {
	cert *x509.Certificate
	der  []byte
	key  crypto.Signer
}

type certOpt func(*x509.Certificate)

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func skidOf(t testing.TB, k crypto.Signer) []byte {
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Alg asn1.RawValue
		Key asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		t.Fatal(err)
	}
	h := sha1.Sum(info.Key.Bytes)
	return h[:]
}

// issue creates a certificate for cn signed by parent (self-signed when
// parent is nil). key may be nil for a fresh key.
func issue(t testing.TB, cn string, parent *node, key crypto.Signer, ca bool, opts ...certOpt) *node {
	t.Helper()
	if key == nil {
		key = newKey(t)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serialCounter.Add(1) + 1000),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    testNow.Add(-24 * time.Hour),
		NotAfter:     testNow.Add(365 * 24 * time.Hour),
		SubjectKeyId: skidOf(t, key),
	}
	if ca {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	for _, o := range opts {
		o(tmpl)
	}
	parentCert, signer := tmpl, key
	if parent != nil {
		parentCert, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &node{cert: c, der: der, key: key}
}

func withValidity(from, to time.Time) certOpt {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = from, to }
}

func withEKU(u ...x509.ExtKeyUsage) certOpt {
	return func(c *x509.Certificate) { c.ExtKeyUsage = u }
}

func withKU(u x509.KeyUsage) certOpt { return func(c *x509.Certificate) { c.KeyUsage = u } }

func withExt(oid asn1.ObjectIdentifier, critical bool, value []byte) certOpt {
	return func(c *x509.Certificate) {
		c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: oid, Critical: critical, Value: value})
	}
}

func withCRLDP(urls ...string) certOpt {
	return func(c *x509.Certificate) { c.CRLDistributionPoints = urls }
}

// crlSpec describes a CRL to issue.
type crlSpec struct {
	revoked   []*node
	reason    int // reason code for every entry; 0 = none
	this      time.Time
	next      time.Time
	extra     []pkix.Extension
	signer    *node // sign with this node's key but issuer's name (bad signature)
	crlNumber int64
}

func makeCRL(t testing.TB, issuer *node, s crlSpec) []byte {
	t.Helper()
	if s.this.IsZero() {
		s.this = testNow.Add(-time.Hour)
	}
	if s.next.IsZero() {
		s.next = testNow.Add(7 * 24 * time.Hour)
	}
	var entries []x509.RevocationListEntry
	for _, r := range s.revoked {
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   r.cert.SerialNumber,
			RevocationTime: testNow.Add(-2 * time.Hour),
			ReasonCode:     s.reason,
		})
	}
	n := s.crlNumber
	if n == 0 {
		n = serialCounter.Add(1)
	}
	tmpl := &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    big.NewInt(n),
		ThisUpdate:                s.this,
		NextUpdate:                s.next,
		ExtraExtensions:           s.extra,
	}
	signer := issuer.key
	if s.signer != nil {
		signer = s.signer.key
	}
	// Go refuses to sign a CRL for an issuer without cRLSign; OpenSSL
	// checks that at verification, which is what some tests want to see.
	ic := *issuer.cert
	ic.KeyUsage |= x509.KeyUsageCRLSign
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, &ic, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemCert(ns ...*node) []byte {
	var out []byte
	for _, n := range ns {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.der})...)
	}
	return out
}

func pemCRL(ders ...[]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: d})...)
	}
	return out
}
