package certauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestFetchedCRL(t *testing.T) {
	root := issue(t, "cdp root", nil, nil, true)
	inter := issue(t, "cdp intermediate", root, nil, true, withCRLDP("http://crl.example/root.crl"))
	leaf := issue(t, "alice", inter, nil, false, withCRLDP("http://crl.example/inter.crl"))
	revoked := issue(t, "mallory", inter, nil, false, withCRLDP("http://crl.example/inter.crl"))
	noCRLSign := issue(t, "no cRLSign", root, nil, true, withKU(x509.KeyUsageCertSign))
	noSignLeaf := issue(t, "carol", noCRLSign, nil, false)
	other := issue(t, "other", nil, nil, true)
	chain := []*x509.Certificate{leaf.cert, inter.cert, root.cert}
	revChain := []*x509.Certificate{revoked.cert, inter.cert, root.cert}

	crl := makeCRL(t, inter, crlSpec{revoked: []*node{revoked}})
	for _, tc := range []struct {
		name  string
		data  []byte
		chain []*x509.Certificate
		depth int
		want  Reason // 0: not revoked
		parse bool   // parsing fails
	}{
		{name: "DER, not revoked", data: crl, chain: chain},
		{name: "PEM, not revoked", data: pemCRL(crl), chain: chain},
		{name: "PEM after another block", data: append(pemCert(root), pemCRL(crl)...), chain: chain},
		{name: "revoked", data: crl, chain: revChain, want: CertRevoked},
		{name: "removeFromCRL does not revoke", data: makeCRL(t, inter, crlSpec{revoked: []*node{revoked}, reason: reasonRemoveFromCRL}), chain: revChain},
		{name: "out of date is the caller's to judge", data: makeCRL(t, inter, crlSpec{this: testNow.Add(-48 * time.Hour), next: testNow.Add(-24 * time.Hour)}), chain: chain},
		{name: "bad signature", data: makeCRL(t, inter, crlSpec{revoked: []*node{revoked}, signer: other}), chain: chain, want: CRLSignatureFailure},
		{name: "bad signature hides a revocation", data: makeCRL(t, inter, crlSpec{revoked: []*node{revoked}, signer: other}), chain: revChain, want: CRLSignatureFailure},
		{name: "another issuer's CRL", data: makeCRL(t, root, crlSpec{}), chain: chain, want: UnableToGetCRL},
		{name: "intermediate checked with root's CRL", data: makeCRL(t, root, crlSpec{}), chain: chain, depth: 1},
		{name: "issuer without cRLSign", data: makeCRL(t, noCRLSign, crlSpec{}), chain: []*x509.Certificate{noSignLeaf.cert, noCRLSign.cert, root.cert}, want: KeyUsageNoCRLSign},
		{name: "critical unknown extension", data: makeCRL(t, inter, crlSpec{extra: criticalExt()}), chain: chain, want: UnhandledCriticalCRLExtension},
		{name: "garbage", data: []byte("not a CRL"), parse: true},
		{name: "PEM without CRL", data: pemCert(root), parse: true},
		{name: "truncated", data: crl[:len(crl)-10], parse: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseFetchedCRL(tc.data)
			if tc.parse {
				if err == nil {
					t.Fatal("parsed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Twice: the second check uses the remembered signature.
			for range 2 {
				err = c.Check(tc.chain, tc.depth)
				var got Reason
				if ve, ok := errors.AsType[*VerifyError](err); ok {
					got = ve.Reason
					if ve.Depth != tc.depth {
						t.Errorf("depth %d, want %d", ve.Depth, tc.depth)
					}
				} else if err != nil {
					t.Fatalf("not a VerifyError: %v", err)
				}
				if got != tc.want {
					t.Fatalf("got %v (%v), want %v", got, err, tc.want)
				}
			}
		})
	}
}

func criticalExt() []pkix.Extension {
	return []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}
}

func TestFetchedCRLVerifyIssuer(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	other := issue(t, "other", nil, nil, true)
	c, err := ParseFetchedCRL(makeCRL(t, root, crlSpec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyIssuer(root.cert); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyIssuer(other.cert); err == nil {
		t.Fatal("verified with another CA")
	}
	forged, err := ParseFetchedCRL(makeCRL(t, root, crlSpec{signer: other}))
	if err != nil {
		t.Fatal(err)
	}
	if err := forged.VerifyIssuer(root.cert); err == nil {
		t.Fatal("forged CRL verified")
	}
}

func TestHTTPURLs(t *testing.T) {
	c := issue(t, "x", nil, nil, false, withCRLDP("ldap://dir/cn=crl", "http://a/crl", "https://b/crl", "http://user:pw@c/crl", "http:///nohost", "file:///etc/crl", "http://d/crl"),
		func(c *x509.Certificate) { c.OCSPServer = []string{"https://ocsp.example", "http://ocsp.example/"} })
	if got, want := HTTPDistributionPoints(c.cert), []string{"http://a/crl", "http://d/crl"}; !reflect.DeepEqual(got, want) {
		t.Errorf("distribution points %q, want %q", got, want)
	}
	if got := OCSPResponderURL(c.cert); got != "http://ocsp.example/" {
		t.Errorf("responder %q", got)
	}
}
