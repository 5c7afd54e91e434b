package integration

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// crossCert certifies ca's name and key again, under root: a
// cross-certificate that names cdp as its CRL distribution point.
func crossCert(t *testing.T, root, ca *testpki.CA, serial int64, cdp string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               ca.Cert.Subject,
		SubjectKeyId:          ca.Cert.SubjectKeyId,
		NotBefore:             ca.Cert.NotBefore,
		NotAfter:              ca.Cert.NotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            -1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		CRLDistributionPoints: []string{cdp},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, ca.Key.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCASetRevocationOfRebuiltChain: ssl_crl_fetch (and ssl_ocsp, which
// runs in the same check) apply to every chain that admits a connection.
//
// "cross issuing" (ix) is certified by root X, and cross-certified under
// the same name and key by B (ib, revoked by B) and by C (ic, not
// revoked). The client sends its leaf alone. The handshake verifies it
// through the first set of the union that knows its issuer, @x, and
// checks that chain (ix names no distribution point). The line for
// database b requires @b, whose chain runs through ib: that chain must be
// checked too before b admits anyone. The line for c requires @c, whose
// chain through ic is checked and passes.
//
// An intermediate held only in a line's set (ih, in @h, revoked by H) is
// in the handshake's chain already, and refused there.
func TestCASetRevocationOfRebuiltChain(t *testing.T) {
	p := newPKI(t)
	roots := map[string]*testpki.CA{}
	for _, n := range []string{"X", "B", "C", "H"} {
		ca, err := testpki.NewRootCA(pkix.Name{CommonName: "CA " + n, Organization: []string{n + " corp"}})
		if err != nil {
			t.Fatal(err)
		}
		roots[n] = ca
	}
	ix, err := roots["X"].NewIntermediate(pkix.Name{CommonName: "cross issuing"})
	if err != nil {
		t.Fatal(err)
	}
	crls := newCRLServer(t)
	base := crls.srv.URL
	ib := crossCert(t, roots["B"], ix, 4242, base+"/b.crl")
	ic := crossCert(t, roots["C"], ix, 4343, base+"/c.crl")
	ih, err := roots["H"].NewIntermediate(pkix.Name{CommonName: "held issuing"}, testpki.WithCRLDistributionPoints(base+"/h.crl"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for path, c := range map[string]struct {
		root    *testpki.CA
		revoked []*x509.Certificate
	}{
		"/b.crl": {roots["B"], []*x509.Certificate{ib}},
		"/c.crl": {roots["C"], nil},
		"/h.crl": {roots["H"], []*x509.Certificate{ih.Cert}},
	} {
		crl, err := c.root.CRL(c.revoked, now.Add(-time.Minute), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		crls.setPath(path, crl)
	}
	for name, ca := range map[string]*testpki.CA{"cross-alice": ix, "held-alice": ih} {
		leaf, err := ca.NewClient(pkix.Name{CommonName: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		// The leaf alone: each set completes the chain with the
		// issuing certificate it holds.
		leaf.Chain = leaf.Chain[len(leaf.Chain)-1:]
		p.clients[name] = leaf
	}
	tables := fmt.Sprintf("[client_ca.x]\npem = '''\n%s%s'''\n[client_ca.b]\npem = '''\n%s%s'''\n[client_ca.c]\npem = '''\n%s%s'''\n[client_ca.h]\npem = '''\n%s%s'''\n",
		roots["X"].CertPEM, ix.CertPEM, roots["B"].CertPEM, testpki.CertsPEM(ib),
		roots["C"].CertPEM, testpki.CertsPEM(ic), roots["H"].CertPEM, ih.CertPEM)
	w := newWorld(t, p, worldOptions{
		hba:       "hostssl all all 127.0.0.1/32 cert\n",
		noCRL:     true,
		extraTOML: revocationTOML("ssl_crl_fetch = true") + tables,
	})
	identSetup(t, w, []string{"alice"}, []string{"x", "b", "c", "h"})
	// The last line would admit anyone: a refusal must not fall
	// through to it.
	w.writeFile("pg_hba.conf", `hostssl x   all 127.0.0.1/32 cert clientca=@x
hostssl b   all 127.0.0.1/32 cert clientca=@b
hostssl c   all 127.0.0.1/32 cert clientca=@c
hostssl h   all 127.0.0.1/32 cert clientca=@h
hostssl all all 127.0.0.1/32 trust
`)
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatalf("loading the configuration: %v", err)
	}
	w.proxy.Reload(rt)

	certFailed := `FATAL 28000 certificate authentication failed for user "alice"`
	for _, tc := range []struct {
		name, database, cert, want string
		logged                     []string
	}{
		{"through ix to X, the handshake's chain", "x", "cross-alice", "ok as alice",
			[]string{"revocation=good", "ca_set_required=@x ca_set_verified=@x", "verdict=accept"}},
		{"through ib, revoked by B, to B", "b", "cross-alice", certFailed,
			[]string{"revocation=good", "ca_set_revocation=crl_revoked", "ca_set_required=@b", "verdict=reject"}},
		{"through ic to C", "c", "cross-alice", "ok as alice",
			[]string{"ca_set_revocation=good", "ca_set_required=@c ca_set_verified=@c", "verdict=accept"}},
		{"through ih, held in @h and revoked by H", "h", "held-alice", "TLS failure",
			[]string{"revocation=crl_revoked", "verdict=reject"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(w.logBuf.String())
			if got := w.attempt(proxy, conn{user: "alice", database: tc.database, cert: tc.cert}).String(); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			w.waitForLog(t, before, append([]string{"cert_serial=" + p.clients[tc.cert].Cert.SerialNumber.String() + " "}, tc.logged...)...)
			if log := w.logBuf.String()[before:]; tc.want != "ok as alice" && strings.Contains(log, "verdict=accept") {
				t.Errorf("the refused login was accepted: %s", log)
			}
		})
	}
}

// TestCASetRevocationConfiguredCRLs: under ssl_ocsp = "prefer", a
// certificate that no OCSP responder answers for is logged as checked
// when configured CRLs covered it, and as unchecked otherwise. Only the
// CRLs of the set that verified the chain cover it: ssl_crl_file is
// ssl_ca_file's, and says nothing about a chain that @n (no CRLs)
// verified.
func TestCASetRevocationConfiguredCRLs(t *testing.T) {
	p := newPKI(t)
	n, err := testpki.NewRootCA(pkix.Name{CommonName: "CA N", Organization: []string{"N corp"}})
	if err != nil {
		t.Fatal(err)
	}
	down := closedURL(t)
	if p.clients["n-alice"], err = n.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithOCSPServer(down)); err != nil {
		t.Fatal(err)
	}
	if p.clients["root-alice"], err = p.root.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithOCSPServer(down)); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, p, worldOptions{
		hba:       "hostssl all all 127.0.0.1/32 cert\n",
		extraTOML: revocationTOML(`ssl_ocsp = "prefer"`+"\n"+`ssl_ocsp_timeout = "1s"`) + fmt.Sprintf("[client_ca.n]\npem = '''\n%s'''\n", n.CertPEM),
	})
	identSetup(t, w, []string{"alice"}, []string{"n"})
	w.writeFile("pg_hba.conf", `hostssl n   all 127.0.0.1/32 cert clientca=@n
hostssl all all 127.0.0.1/32 cert
`)
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatalf("loading the configuration: %v", err)
	}
	w.proxy.Reload(rt)
	for _, tc := range []struct{ name, database, cert, logged string }{
		{"ssl_ca_file's chain, which ssl_crl_file covers", "postgres", "root-alice", "revocation=good"},
		{"@n's chain, which no CRL covers", "n", "n-alice", "revocation=unchecked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(w.logBuf.String())
			if got := w.attempt(proxy, conn{user: "alice", database: tc.database, cert: tc.cert}).String(); got != "ok as alice" {
				t.Fatalf("got %q", got)
			}
			w.waitForLog(t, before, "cert_serial="+p.clients[tc.cert].Cert.SerialNumber.String()+" ", tc.logged, "verdict=accept")
		})
	}
}
