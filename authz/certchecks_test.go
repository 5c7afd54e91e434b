package authz_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// certWorld is TestAuthorize's certificate world for CA sets, key usage
// and pins. Its certificates are deterministic (Ed25519 keys from the
// name, fixed serials and validity), so a pin printed once stays right:
//
//	ca name=A [parent=B [cross=I]]       a root, or an intermediate under B;
//	                                     with cross, B certifies I's name and
//	                                     key again (a cross-certificate)
//	revoked [CA|cert[=CODE]…]            what the server's revocation check
//	                                     (OCSP, fetched CRLs) refuses: revoked
//	                                     by a CRL, or with CODE the refusal
//	                                     of that audit code (ocsp_unavailable:
//	                                     ssl_ocsp = "require" and the
//	                                     responder down)
//	cert name=N issuer=A cn=CN [eku=none|server|client|any] [ku=none|agreement] [variant=K]
//	                                     a client certificate; prints its pin
//	trust [keyusage=require] [depth=N]   the handshake's CA sets, one per
//	SET CA [CA…]                         input line, in order (ssl_ca_file,
//	                                     @NAME, or a clientca= file's path)
//
// authorize's cert=name:N[,send:CA…] presents certificate N (and the
// intermediates named), verified as the handshake would; a refusal there
// is printed as "handshake refuses". Every chain that a line's set
// builds anew goes through the world's revocation check, printed as
// "revocation check".
type certWorld struct {
	root    *testpki.CA
	cas     map[string]*wcert
	certs   map[string]*wcert
	trust   *certauth.Trust
	revoked map[string]certauth.Reason
	asked   []string
}

// wcert is a certificate of the world with its key.
type wcert struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
}

// worldNow is inside every world certificate's validity.
var worldNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func newCertWorld(_ *testing.T, root *testpki.CA) *certWorld {
	return &certWorld{root: root, cas: map[string]*wcert{}, certs: map[string]*wcert{}}
}

// apply puts the world's trust into a snapshot: ssl_ca_file is configured
// when the trust has that set.
func (w *certWorld) apply(s *authz.Snapshot) {
	if w.trust == nil {
		return
	}
	s.Trust = w.trust
	s.CAConfigured = w.trust.Set(certauth.DefaultSet) != nil
	s.Now = func() time.Time { return worldNow }
}

func seedKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("certworld " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func (w *certWorld) make(t *testing.T, name string, tmpl *x509.Certificate, parent *wcert) *wcert {
	t.Helper()
	key := seedKey(name)
	h := sha256.Sum256([]byte(name))
	tmpl.SerialNumber = new(big.Int).SetBytes(h[:8])
	tmpl.NotBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	tmpl.NotAfter = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	tmpl.BasicConstraintsValid = true
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
	return &wcert{cert: c, key: key}
}

func (w *certWorld) directive(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "ca":
		var name, parent string
		d.ScanArgs(t, "name", &name)
		if d.HasArg("parent") {
			d.ScanArgs(t, "parent", &parent)
		}
		subject, seed := name, name
		if d.HasArg("cross") {
			d.ScanArgs(t, "cross", &subject)
			seed = subject
		}
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "CA " + subject}, IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		w.cas[name] = w.make(t, "ca "+seed, tmpl, w.cas[parent])
		return ""
	case "revoked":
		w.revoked = map[string]certauth.Reason{}
		for _, arg := range d.CmdArgs {
			if w.cas[arg.Key] == nil && w.certs[arg.Key] == nil {
				t.Fatalf("revoked: no CA or certificate %q", arg.Key)
			}
			r := certauth.CertRevoked
			if len(arg.Vals) > 0 {
				var ok bool
				if r, ok = revocationReasons[arg.Vals[0]]; !ok {
					t.Fatalf("revoked: unknown refusal %q", arg.Vals[0])
				}
			}
			w.revoked[arg.Key] = r
		}
		return ""
	case "cert":
		var name, issuer, cn string
		d.ScanArgs(t, "name", &name)
		d.ScanArgs(t, "issuer", &issuer)
		d.ScanArgs(t, "cn", &cn)
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		seed := "cert " + name
		for _, arg := range d.CmdArgs {
			v := ""
			if len(arg.Vals) > 0 {
				v = arg.Vals[0]
			}
			switch arg.Key {
			case "name", "issuer", "cn":
			case "eku":
				tmpl.ExtKeyUsage = map[string][]x509.ExtKeyUsage{"none": nil, "server": {x509.ExtKeyUsageServerAuth},
					"client": {x509.ExtKeyUsageClientAuth}, "any": {x509.ExtKeyUsageAny}}[v]
			case "ku":
				tmpl.KeyUsage = map[string]x509.KeyUsage{"none": 0, "agreement": x509.KeyUsageKeyAgreement}[v]
			case "variant":
				seed += " variant " + v
			default:
				t.Fatalf("cert: unknown argument %q", arg.Key)
			}
		}
		ca := w.cas[issuer]
		if ca == nil {
			t.Fatalf("cert: no CA %q", issuer)
		}
		c := w.make(t, seed, tmpl, ca)
		w.certs[name] = c
		return fmt.Sprintf("sha256:%x\n", sha256.Sum256(c.cert.Raw))
	case "trust":
		policy := certauth.KeyUsageOpenSSL
		if d.HasArg("keyusage") {
			var v string
			d.ScanArgs(t, "keyusage", &v)
			policy, _ = certauth.ParseKeyUsagePolicy(v)
		}
		var depth *int
		if d.HasArg("depth") {
			var n int
			d.ScanArgs(t, "depth", &n)
			depth = &n
		}
		var sets []*certauth.CASet
		for _, l := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			f := strings.Fields(l)
			var pemText []byte
			for _, ca := range f[1:] {
				c := w.cas[ca]
				if c == nil {
					t.Fatalf("trust: no CA %q", ca)
				}
				pemText = append(pemText, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})...)
			}
			v, err := certauth.NewVerifier(certauth.Config{CAFile: f[0], CAPEM: pemText, VerifyDepth: depth})
			if err != nil {
				t.Fatal(err)
			}
			sets = append(sets, certauth.NewCASet(f[0], v))
		}
		w.trust = certauth.NewTrust(policy, sets...)
		return ""
	}
	t.Fatalf("unknown directive %q", d.Cmd)
	return ""
}

// peer is authorize's cert= argument: a named certificate of the world,
// verified against the trust as the handshake verifies it, or the
// harness's own subject-and-SAN certificate from root.
func (w *certWorld) peer(t *testing.T, specs []string, _ *authz.Snapshot) (*certauth.Peer, string) {
	var presented []*x509.Certificate
	for _, spec := range specs {
		kind, v, _ := strings.Cut(spec, ":")
		switch kind {
		case "name":
			c := w.certs[v]
			if c == nil {
				t.Fatalf("cert: no certificate %q", v)
			}
			presented = append([]*x509.Certificate{c.cert}, presented...)
		case "send":
			c := w.cas[v]
			if c == nil {
				t.Fatalf("cert: no CA %q", v)
			}
			presented = append(presented, c.cert)
		}
	}
	if presented == nil {
		return peer(t, w.root, specs), ""
	}
	if w.trust == nil {
		t.Fatalf("cert=name: needs a trust directive first")
	}
	chain, set, err := w.trust.Verify(presented, worldNow)
	if err != nil {
		ve := err.(*certauth.VerifyError)
		code := ve.Reason.PolicyCode()
		if code == "" {
			code = "cert_invalid"
		}
		return nil, fmt.Sprintf("handshake refuses: %s: %v\n", code, err)
	}
	p := certauth.NewPeer(presented)
	p.VerifiedIn(chain, set.Name)
	return p, ""
}

// revocation is the requests' authz.RevocationCheck: it records the chain
// it is asked about and refuses one holding a certificate the revoked
// directive named, as the server's check refuses one that OCSP or a
// fetched CRL says is revoked.
func (w *certWorld) revocation(_ context.Context, chain []*x509.Certificate, set *certauth.CASet) error {
	var names []string
	var refusal *certauth.VerifyError
	for i, c := range chain {
		name := w.nameOf(c)
		names = append(names, name)
		r, ok := w.revoked[name]
		if ok && refusal == nil && i < len(chain)-1 {
			refusal = &certauth.VerifyError{Reason: r, Depth: i}
			switch r {
			case certauth.CertRevoked:
				refusal.Err = fmt.Errorf("%s is listed in its issuer's CRL", name)
			case certauth.OCSPUnavailable:
				refusal.Err = fmt.Errorf("no answer from %s's OCSP responder (ssl_ocsp = \"require\")", name)
			}
		}
	}
	verdict := "good"
	if refusal != nil {
		verdict = "revoked"
		if code := refusal.Reason.RevocationCode(); code != "" {
			verdict = code
		}
	}
	w.asked = append(w.asked, fmt.Sprintf("revocation check of %s's chain %s: %s", set.Name, strings.Join(names, " < "), verdict))
	if refusal == nil {
		return nil
	}
	return refusal
}

// revocationReasons are the refusals the revoked directive can give by
// audit code.
var revocationReasons = map[string]certauth.Reason{
	"ocsp_unavailable": certauth.OCSPUnavailable,
	"ocsp_revoked":     certauth.OCSPRevoked,
	"crl_unavailable":  certauth.CRLUnavailable,
}

// nameOf names a certificate of the world: exactly the same DER.
func (w *certWorld) nameOf(c *x509.Certificate) string {
	for _, m := range []map[string]*wcert{w.cas, w.certs} {
		for n, wc := range m {
			if wc.cert.Equal(c) {
				return n
			}
		}
	}
	return c.Subject.String()
}

// checks prints the line's certificate checks.
func (w *certWorld) checks(d *authz.Decision) string {
	var b strings.Builder
	for _, a := range w.asked {
		fmt.Fprintln(&b, a)
	}
	w.asked = nil
	for _, c := range d.Checks {
		if c.OK {
			fmt.Fprintf(&b, "check %s ok: %s\n", c.Name, c.Detail)
		} else {
			fmt.Fprintf(&b, "check %s refused %s: %s\n", c.Name, c.Reason, c.Detail)
		}
	}
	if d.CASetRequired != "" {
		fmt.Fprintf(&b, "ca set required %s verified %s\n", d.CASetRequired, d.CASetVerified)
	}
	return b.String()
}
