package certauth

import (
	"crypto/x509"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

func parseRaw(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("Go refuses the test certificate: %v", err)
	}
	return c
}

func TestCommonName(t *testing.T) {
	for _, tc := range []struct {
		name    string
		subject []byte
		cn      string
		ok      bool
		err     error
		goCN    string // what Go's Subject.CommonName says, to document the difference
	}{
		{"utf8", rdnSeq(t, rdn(a(oCN, utf8s("alice")))), "alice", true, nil, "alice"},
		{"first of two", rdnSeq(t, rdn(a(oCN, utf8s("first"))), rdn(a(oO, utf8s("o"))), rdn(a(oCN, utf8s("last")))), "first", true, nil, "last"},
		{"first inside a multi-valued RDN", rdnSeq(t, rdn(a(oUID, utf8s("u")), a(oCN, utf8s("one")), a(oCN, utf8s("two")))), "one", true, nil, "two"},
		{"bmp raw bytes", rdnSeq(t, rdn(a(oCN, bmpStr("abc")))), "", true, ErrCommonNameNull, "abc"},
		{"bmp non-latin has no NUL", rdnSeq(t, rdn(a(oCN, bmp(0x65e5, 0x672c)))), "\x65\xe5\x67\x2c", true, nil, "日本"},
		{"t61 latin-1 bytes", rdnSeq(t, rdn(a(oCN, t61("jos\xe9")))), "jos\xe9", true, nil, "josé"},
		{"utf8 bytes", rdnSeq(t, rdn(a(oCN, utf8s("josé")))), "josé", true, nil, "josé"},
		{"printable", rdnSeq(t, rdn(a(oCN, printable("Bob Smith")))), "Bob Smith", true, nil, "Bob Smith"},
		{"embedded NUL", rdnSeq(t, rdn(a(oCN, utf8s("adm\x00in")))), "", true, ErrCommonNameNull, "adm\x00in"},
		{"empty", rdnSeq(t, rdn(a(oCN, utf8s("")))), "", true, nil, ""},
		{"no CN", rdnSeq(t, rdn(a(oO, utf8s("org")))), "", false, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseRaw(t, rawCert(t, rawCertOpts{subject: tc.subject}))
			cn, ok, err := CommonName(c)
			if cn != tc.cn || ok != tc.ok || err != tc.err {
				t.Fatalf("CommonName = %q, %v, %v; want %q, %v, %v", cn, ok, err, tc.cn, tc.ok, tc.err)
			}
			if c.Subject.CommonName != tc.goCN {
				t.Errorf("Go's Subject.CommonName = %q, expected %q", c.Subject.CommonName, tc.goCN)
			}
		})
	}
}

func TestDistinguishedName(t *testing.T) {
	c := parseRaw(t, rawCert(t, rawCertOpts{subject: rdnSeq(t,
		rdn(a(oO, utf8s("PGDG"))), rdn(a(oOU, utf8s("Engineering"))), rdn(a(oOU, utf8s("Testing"))), rdn(a(oCN, utf8s("ssltestuser-dn"))))}))
	dn, err := DistinguishedName(c)
	if err != nil || dn != "CN=ssltestuser-dn,OU=Testing,OU=Engineering,O=PGDG" {
		t.Fatalf("DistinguishedName = %q, %v", dn, err)
	}
	c = parseRaw(t, rawCert(t, rawCertOpts{subject: rdnSeq(t, rdn(a(oCN, utf8s("jos\u00e9\x00x"))))}))
	if dn, err := DistinguishedName(c); err != nil || dn != `CN=jos\C3\A9\00x` {
		t.Fatalf("DistinguishedName = %q, %v", dn, err)
	}
}

func TestSANs(t *testing.T) {
	u1, _ := url.Parse("spiffe://prod.example.org/ns/web/sa/app")
	u2, _ := url.Parse("https://example.org/x")
	leaf := issue(t, "leaf", nil, nil, false, func(c *x509.Certificate) {
		c.EmailAddresses = []string{"b@example.org", "a@example.org"}
		c.DNSNames = []string{"z.example.org", "a.example.org"}
		c.URIs = []*url.URL{u1, u2}
	})
	for _, tc := range []struct {
		kind SANKind
		want []string
	}{
		{SANEmail, []string{"b@example.org", "a@example.org"}},
		{SANDNS, []string{"z.example.org", "a.example.org"}},
		{SANURI, []string{"spiffe://prod.example.org/ns/web/sa/app", "https://example.org/x"}},
		{SANKind(0), nil},
	} {
		if got := SANs(leaf.cert, tc.kind); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SANs(%v) = %q, want %q", tc.kind, got, tc.want)
		}
	}
	bare := issue(t, "bare", nil, nil, false)
	if got := SANs(bare.cert, SANURI); got != nil {
		t.Errorf("SANs without extension = %q", got)
	}
	if SANEmail.String() != "SAN-email" || SANDNS.String() != "SAN-DNS" || SANURI.String() != "SAN-URI" {
		t.Error("SANKind.String")
	}
}

// TestGoParserRefusals records certificates that OpenSSL 3.0 accepts (and
// PostgreSQL would authenticate with) but Go's x509.ParseCertificate
// refuses, so a client presenting one cannot log in through pgcertgate.
// Each case asserts Go's refusal; when openssl is on PATH it also asserts
// that OpenSSL parses the certificate.
func TestGoParserRefusals(t *testing.T) {
	cn := func(v []byte) []byte { return rdnSeq(t, rdn(a(oCN, v))) }
	san := func(gn ...[]byte) []byte {
		return der(0x30, oidDER(t, extSubjectAltName), der(0x04, der(0x30, gn...)))
	}
	for _, tc := range []struct {
		name string
		opts rawCertOpts
	}{
		{"PrintableString with characters outside its set (@ _ ; < > \" \\ # NUL)", rawCertOpts{subject: cn(printable("a@b_c"))}},
		{"PrintableString with a byte >= 0x80", rawCertOpts{subject: cn(printable("caf\xe9"))}},
		{"IA5String with a byte >= 0x80", rawCertOpts{subject: cn(ia5("caf\xe9"))}},
		{"NumericString with letters", rawCertOpts{subject: rdnSeq(t, rdn(a(oSerial, numeric("12ab"))))}},
		{"UniversalString value", rawCertOpts{subject: cn(univStr("abc"))}},
		{"BMPString with a noncharacter (U+FFFE)", rawCertOpts{subject: cn(bmp('a', 0xfffe))}},
		{"BIT STRING value", rawCertOpts{subject: cn(rawValue("03 02 00 41"))}},
		{"SEQUENCE value", rawCertOpts{subject: cn(rawValue("30 03 0c 01 41"))}},
		{"ObjectDescriptor (tag 7) value", rawCertOpts{subject: cn(rawValue("07 02 41 42"))}},
		{"attribute OID with an arc >= 2^31", rawCertOpts{subject: rdnSeq(t, rdn(a("1.2.3.4294967296", utf8s("v"))))}},
		{"SAN rfc822Name with a byte >= 0x80", rawCertOpts{subject: cn(utf8s("s")), extensions: san(str(0x81, "jos\xe9@example.org"))}},
		{"SAN dNSName with a byte >= 0x80", rawCertOpts{subject: cn(utf8s("s")), extensions: san(str(0x82, "caf\xe9.example.org"))}},
		{"SAN URI that net/url cannot parse", rawCertOpts{subject: cn(utf8s("s")), extensions: san(str(0x86, "spiffe://example.org/%zz"))}},
		{"negative serial number", rawCertOpts{serial: []byte{0xff}, subject: cn(utf8s("neg"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := rawCert(t, tc.opts)
			if _, err := x509.ParseCertificate(der); err == nil {
				t.Fatalf("Go now accepts this certificate: update the README list")
			} else {
				t.Logf("Go: %v", err)
			}
			if _, err := exec.LookPath("openssl"); err != nil {
				return
			}
			p := filepath.Join(t.TempDir(), "c.der")
			if err := os.WriteFile(p, der, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("openssl", "x509", "-inform", "DER", "-in", p, "-noout", "-subject", "-nameopt", "RFC2253").CombinedOutput(); err != nil {
				t.Fatalf("openssl refuses it too: %v\n%s", err, out)
			} else {
				t.Logf("OpenSSL: %s", out)
			}
			// FormatDN itself works on such names.
			if _, err := FormatDN(tc.opts.subject); err != nil {
				t.Errorf("FormatDN: %v", err)
			}
		})
	}
}
