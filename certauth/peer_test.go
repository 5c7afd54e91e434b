package certauth_test

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"net/url"
	"reflect"
	"testing"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestPeer: one value answers every question later steps ask of the
// client certificate, with the same answers as the single-purpose
// functions it is built from.
func TestPeer(t *testing.T) {
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "root", Organization: []string{"PGDG"}})
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://example.org/app")
	unknownSubject, err := testpki.RawName(testpki.RDNs(testpki.UTF8(asn1.ObjectIdentifier{1, 2, 3, 4}, "x"), testpki.UTF8(asn1.ObjectIdentifier{2, 5, 4, 3}, "odd"))...)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		subject   pkix.Name
		opts      []testpki.Option
		cn, dn    string
		hasCN     bool
		uri       []string
		email     []string
		unknown   bool
		dnErr     bool
		identityN map[certauth.IdentitySource]int
	}{
		{name: "plain", subject: pkix.Name{CommonName: "alice", Organization: []string{"PGDG"}},
			cn: "alice", hasCN: true, dn: "CN=alice,O=PGDG",
			identityN: map[certauth.IdentitySource]int{certauth.IdentityCN: 1, certauth.IdentityDN: 1, certauth.IdentitySANURI: 0}},
		{name: "SANs, no CN", subject: pkix.Name{Organization: []string{"PGDG"}},
			opts: []testpki.Option{testpki.WithURISANs(spiffe), testpki.WithEmailSANs("a@example.com", "b@example.com")},
			dn:   "O=PGDG", uri: []string{"spiffe://example.org/app"}, email: []string{"a@example.com", "b@example.com"},
			identityN: map[certauth.IdentitySource]int{certauth.IdentityCN: 0, certauth.IdentityDN: 1, certauth.IdentitySANURI: 1, certauth.IdentitySANEmail: 2}},
		{name: "unknown attribute", opts: []testpki.Option{testpki.WithRawSubject(unknownSubject)},
			cn: "odd", hasCN: true, dn: "CN=odd,1.2.3.4=#0C0178", unknown: true,
			identityN: map[certauth.IdentitySource]int{certauth.IdentityCN: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := root.NewClient(tc.subject, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			p := certauth.NewPeer([]*x509.Certificate{leaf.Cert})
			if p.CN != tc.cn || p.HasCN != tc.hasCN || p.CNErr != nil {
				t.Errorf("CN = %q %v %v, want %q %v", p.CN, p.HasCN, p.CNErr, tc.cn, tc.hasCN)
			}
			if p.Subject != tc.dn {
				t.Errorf("Subject = %q, want %q", p.Subject, tc.dn)
			}
			if p.Issuer != "CN=root,O=PGDG" {
				t.Errorf("Issuer = %q", p.Issuer)
			}
			if !reflect.DeepEqual(p.SANURI, tc.uri) || !reflect.DeepEqual(p.SANEmail, tc.email) {
				t.Errorf("SANs = %q %q, want %q %q", p.SANURI, p.SANEmail, tc.uri, tc.email)
			}
			if p.UnknownAttribute != tc.unknown {
				t.Errorf("UnknownAttribute = %v, want %v", p.UnknownAttribute, tc.unknown)
			}
			sum := sha256.Sum256(leaf.Cert.Raw)
			if p.Fingerprint() != hex.EncodeToString(sum[:]) {
				t.Errorf("Fingerprint = %s", p.Fingerprint())
			}
			for src, n := range tc.identityN {
				ids, err := p.Identities(src)
				if err != nil || len(ids) != n {
					t.Errorf("Identities(%s) = %q, %v; want %d", src, ids, err, n)
				}
			}
			if p.Verified {
				t.Error("a new Peer is not verified")
			}
			p.VerifiedBy([]*x509.Certificate{leaf.Cert, root.Cert})
			if !p.Verified || len(p.Chain) != 2 {
				t.Error("VerifiedBy did not record the chain")
			}
		})
	}
	if certauth.NewPeer(nil) != nil {
		t.Error("NewPeer(nil) is not nil")
	}
}
