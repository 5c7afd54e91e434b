package integration

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// identSubject is a client certificate subject built byte by byte.
type identSubject struct {
	name string
	rdns []testpki.RDN
}

// identUnknownNID names the subjects with an attribute type OpenSSL does
// not know, which PostgreSQL refuses after authentication (identNoNID).
var identUnknownNID = map[string]bool{"unknown OID": true}

// identNoNID is what PostgreSQL answers, once authentication has
// succeeded and the database and role exist, to a client whose
// certificate subject or issuer has an attribute type OpenSSL does not
// know: pgstat_bestart's X509_NAME_to_cstring (for pg_stat_ssl) fails.
const identNoNID = "FATAL 22023 could not get NID for ASN1_OBJECT object"

func identPrintable(oid asn1.ObjectIdentifier, s string) testpki.ATV {
	return testpki.ATV{OID: oid, Tag: asn1.TagPrintableString, Value: []byte(s)}
}

var identOIDUnknown = asn1.ObjectIdentifier{1, 2, 3, 4}
var identOIDSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
var identOIDStreet = asn1.ObjectIdentifier{2, 5, 4, 9}

// identOddSubjects are the DNs whose RFC 2253 text PostgreSQL and
// pgcertgate must agree on. Every one parses in Go (those that do not are
// in TestIdentGoUnparsableCertificate).
var identOddSubjects = []identSubject{
	{"multi-valued RDN", []testpki.RDN{
		{identPrintable(testpki.OIDOrganization, "PGDG")},
		{testpki.UTF8(testpki.OIDCommonName, "mv"), testpki.UTF8(testpki.OIDUserID, "mv1")},
	}},
	{"multi-valued RDN, unsorted", []testpki.RDN{
		{testpki.UTF8(testpki.OIDUserID, "u2"), testpki.UTF8(testpki.OIDCommonName, "mv2")},
	}},
	{"UTF-8", testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "josé"))},
	{"BMPString O", testpki.RDNs(
		testpki.ATV{OID: testpki.OIDOrganization, Tag: testpki.TagBMPString, Value: testpki.BMP("漢字")},
		testpki.UTF8(testpki.OIDCommonName, "bmp"))},
	// A BMPString CN is its raw UCS-2 bytes for clientname=CN: U+6F22
	// U+5B57 are the bytes 6F 22 5B 57, the text o"[W.
	{"BMPString CN", testpki.RDNs(testpki.ATV{OID: testpki.OIDCommonName, Tag: testpki.TagBMPString, Value: testpki.BMP("漢字")})},
	// A T61String is read as Latin-1 for the DN, so this prints like the
	// UTF-8 josé; the CN is the single byte E9.
	{"T61String", testpki.RDNs(
		identPrintable(testpki.OIDOrganization, "t61"),
		testpki.ATV{OID: testpki.OIDCommonName, Tag: asn1.TagT61String, Value: []byte("jos\xe9")})},
	{"RFC 2253 specials", testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, `a,b+c"d\e<f>g;h=i`))},
	{"leading #", testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "#hash"))},
	{"inner #", testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "in#ner"))},
	{"leading space", testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, " lead"))},
	{"trailing space", testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "trail "))},
	{"single space", testpki.RDNs(testpki.UTF8(testpki.OIDOrganization, "sp"), testpki.UTF8(testpki.OIDCommonName, " "))},
	{"control character", testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "ctl\x01x"))},
	// PostgreSQL takes the first CN for clientname=CN; Go's
	// Subject.CommonName is the last one.
	{"repeated CN", testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "first"), testpki.UTF8(testpki.OIDCommonName, "second"))},
	{"unknown OID", testpki.RDNs(testpki.UTF8(identOIDUnknown, "x"), testpki.UTF8(testpki.OIDCommonName, "unk"))},
	{"DC, repeated OU, UID", testpki.RDNs(
		testpki.ATV{OID: testpki.OIDDomainComponent, Tag: asn1.TagIA5String, Value: []byte("org")},
		testpki.ATV{OID: testpki.OIDDomainComponent, Tag: asn1.TagIA5String, Value: []byte("example")},
		testpki.UTF8(testpki.OIDOrganizationalUnit, "a"),
		testpki.UTF8(testpki.OIDOrganizationalUnit, "b"),
		testpki.UTF8(testpki.OIDUserID, "uid1"),
		testpki.UTF8(testpki.OIDCommonName, "dc"))},
	{"C ST L O, emailAddress, serialNumber, street", testpki.RDNs(
		identPrintable(testpki.OIDCountry, "US"),
		testpki.UTF8(testpki.OIDProvince, "Some-State"),
		testpki.UTF8(testpki.OIDLocality, "Springfield"),
		identPrintable(identOIDSerialNumber, "12345"),
		testpki.UTF8(identOIDStreet, "1 Main St"),
		testpki.UTF8(testpki.OIDCommonName, "em"),
		testpki.ATV{OID: testpki.OIDEmailAddress, Tag: asn1.TagIA5String, Value: []byte("em@example.com")})},
	{"PostgreSQL's ssltestuser-dn", testpki.RDNs(
		identPrintable(testpki.OIDOrganization, "PGDG"),
		identPrintable(testpki.OIDOrganizationalUnit, "Engineering"),
		identPrintable(testpki.OIDOrganizationalUnit, "Testing"),
		identPrintable(testpki.OIDCommonName, "ssltestuser-dn"))},
}

// identOpenSSLSubject is `openssl x509 -noout -subject -nameopt RFC2253`:
// OpenSSL's X509_NAME_print_ex with XN_FLAG_RFC2253, the call PostgreSQL
// makes for clientname=DN.
func identOpenSSLSubject(t *testing.T, certPEM []byte) string {
	t.Helper()
	cmd := exec.Command("openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253")
	cmd.Stdin = bytes.NewReader(certPEM)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl x509 (make test installs it as root): %v", err)
	}
	s, ok := strings.CutPrefix(strings.TrimRight(string(out), "\n"), "subject=")
	if !ok {
		t.Fatalf("openssl x509 printed %q", out)
	}
	return s
}

// identAREQuote quotes s for a Spencer ARE: a backslash before every
// character that is not a letter or digit makes it literal.
func identAREQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// identIdentQuote quotes s as one pg_ident.conf token.
func identIdentQuote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func TestIdentOddDNs(t *testing.T) {
	p := newPKI(t)
	var ident strings.Builder
	ident.WriteString("# Generated: for each subject, its exact RFC 2253 text and an anchored regex.\n")
	dns := make([]string, len(identOddSubjects))
	var roles []string
	for i, s := range identOddSubjects {
		der, err := testpki.RawName(s.rdns...)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := p.root.NewClient(pkix.Name{}, testpki.WithRawSubject(der))
		if err != nil {
			t.Fatal(err)
		}
		if leaf.Cert == nil {
			t.Fatalf("%s: Go cannot parse the certificate; it belongs in TestIdentGoUnparsableCertificate", s.name)
		}
		p.clients[fmt.Sprintf("dn%d", i)] = leaf
		dns[i] = identOpenSSLSubject(t, leaf.CertPEM)
		t.Logf("%-45s %s", s.name, dns[i])
		role := fmt.Sprintf("u%d", i)
		roles = append(roles, role)
		fmt.Fprintf(&ident, "dnlit  %s  %s\n", identIdentQuote(dns[i]), role)
		fmt.Fprintf(&ident, "dnre   %s  %s\n", identIdentQuote("/^"+identAREQuote(dns[i])+"$"), role)
	}
	oddCA, err := testpki.RawName(testpki.RDNs(testpki.UTF8(identOIDUnknown, "x"), testpki.UTF8(testpki.OIDCommonName, "odd CA"))...)
	if err != nil {
		t.Fatal(err)
	}
	odd, err := p.root.NewIntermediate(pkix.Name{}, testpki.WithRawSubject(oddCA))
	if err != nil {
		t.Fatal(err)
	}
	if p.clients["odd-issuer"], err = odd.NewClient(pkix.Name{CommonName: "alice"}); err != nil {
		t.Fatal(err)
	}
	// A BMPString CN "abc" is 00 61 00 62 00 63: NUL bytes.
	nulCN, err := testpki.RawName(testpki.RDNs(testpki.ATV{OID: testpki.OIDCommonName, Tag: testpki.TagBMPString, Value: testpki.BMP("abc")})...)
	if err != nil {
		t.Fatal(err)
	}
	if p.clients["bmp-nul"], err = p.root.NewClient(pkix.Name{}, testpki.WithRawSubject(nulCN)); err != nil {
		t.Fatal(err)
	}
	ident.WriteString("dnfail  nobody  nobody\n")
	const hbaText = `hostssl  dnlit   all  127.0.0.1/32  cert clientname=DN map=dnlit
hostssl  dnre    all  127.0.0.1/32  cert clientname=DN map=dnre
hostssl  dnfail  all  127.0.0.1/32  cert clientname=DN map=dnfail
hostssl  dnfull  all  127.0.0.1/32  trust clientcert=verify-full clientname=DN
hostssl  trustca all  127.0.0.1/32  trust clientcert=verify-ca
hostssl  all     all  127.0.0.1/32  cert
`
	// CRL_CHECK_ALL: the odd intermediate needs a CRL of its own.
	crls := identCRLs(t, []*testpki.CA{p.root, p.inter, odd}, p.revoked)
	w := newWorld(t, p, worldOptions{hba: hbaText, ident: ident.String(), files: map[string]string{"root.crl": crls}})
	// Roles named after the CNs PostgreSQL takes (raw bytes, first CN).
	cnRoles := []string{`o"[W`, "first", "second", "josé", `a,b+c"d\e<f>g;h=i`, "#hash", " lead", "trail ", "mv", "unk", "alice", dns[0]}
	identSetup(t, w, append(roles, cnRoles...), []string{"dnlit", "dnre", "dnfail", "dnfull", "trustca"})

	certFailed := func(u string) string { return `FATAL 28000 certificate authentication failed for user "` + u + `"` }
	var cases []identCase
	for i, s := range identOddSubjects {
		cert, role, other := fmt.Sprintf("dn%d", i), roles[i], roles[(i+1)%len(roles)]
		accepted := "ok as " + role
		if identUnknownNID[s.name] {
			accepted = identNoNID
		}
		cases = append(cases,
			identCase{s.name + ": literal DN line", conn{user: role, database: "dnlit", cert: cert}, accepted, nil},
			identCase{s.name + ": literal DN line, other user", conn{user: other, database: "dnlit", cert: cert}, certFailed(other), nil},
			identCase{s.name + ": DN regex", conn{user: role, database: "dnre", cert: cert}, accepted, nil},
			identCase{s.name + ": failing map logs the DN", conn{user: role, database: "dnfail", cert: cert}, certFailed(role),
				[]string{fmt.Sprintf(`no match in usermap "dnfail" for user "%s" authenticated as "%s"`, role, dns[i])}},
		)
	}
	byName := func(name string) string {
		for i, s := range identOddSubjects {
			if s.name == name {
				return fmt.Sprintf("dn%d", i)
			}
		}
		t.Fatalf("no subject %q", name)
		return ""
	}
	cases = append(cases,
		// clientname=CN takes the first CN, as raw bytes.
		identCase{"repeated CN: the first one is the name", conn{user: "first", database: "postgres", cert: byName("repeated CN")}, "ok as first", nil},
		identCase{"repeated CN: the last one is not", conn{user: "second", database: "postgres", cert: byName("repeated CN")}, certFailed("second"),
			[]string{`provided user name (second) and authenticated user name (first) do not match`}},
		identCase{"BMPString CN is its UCS-2 bytes", conn{user: `o"[W`, database: "postgres", cert: byName("BMPString CN")}, `ok as o"[W`, nil},
		identCase{"UTF-8 CN equals the UTF-8 user", conn{user: "josé", database: "postgres", cert: byName("UTF-8")}, "ok as josé", nil},
		identCase{"T61String CN is not the UTF-8 user", conn{user: "josé", database: "postgres", cert: byName("T61String")}, certFailed("josé"),
			[]string{"provided user name (josé) and authenticated user name (jos\xe9) do not match"}},
		identCase{"CN with specials", conn{user: `a,b+c"d\e<f>g;h=i`, database: "postgres", cert: byName("RFC 2253 specials")}, `ok as a,b+c"d\e<f>g;h=i`, nil},
		identCase{"CN with leading #", conn{user: "#hash", database: "postgres", cert: byName("leading #")}, "ok as #hash", nil},
		identCase{"CN with leading space", conn{user: " lead", database: "postgres", cert: byName("leading space")}, "ok as  lead", nil},
		identCase{"CN with trailing space", conn{user: "trail ", database: "postgres", cert: byName("trailing space")}, "ok as trail ", nil},
		identCase{"CN of a multi-valued RDN", conn{user: "mv", database: "postgres", cert: byName("multi-valued RDN")}, "ok as mv", nil},
		// A NUL in the CN drops the connection after the handshake,
		// whatever the line says (CVE-2009-4034), even for clientname=DN.
		identCase{"BMPString CN with NUL bytes", conn{user: "alice", database: "trustca", cert: "bmp-nul"}, "TLS failure",
			[]string{"SSL certificate's common name contains embedded null"}},
		identCase{"BMPString CN with NUL bytes, clientname=DN", conn{user: "u0", database: "dnlit", cert: "bmp-nul"}, "TLS failure", nil},
		// trust clientcert=verify-full clientname=DN: the DN must equal the user.
		identCase{"verify-full DN, user named like the DN", conn{user: dns[0], database: "dnfull", cert: byName("multi-valued RDN")}, "ok as " + dns[0], nil},
		identCase{"verify-full DN, user is not the DN", conn{user: "mv", database: "dnfull", cert: byName("multi-valued RDN")}, `FATAL 28000 "trust" authentication failed for user "mv"`,
			[]string{`provided user name (mv) and authenticated user name (` + dns[0] + `) do not match`,
				`certificate validation (clientcert=verify-full) failed for user "mv": DN mismatch`}},
		// An unknown attribute type: refused after the database and role
		// checks, whatever the name check said; in the issuer's name too.
		identCase{"unknown OID, unknown database", conn{user: "unk", database: "nosuchdb", cert: byName("unknown OID")}, `FATAL 3D000 database "nosuchdb" does not exist`, nil},
		identCase{"unknown OID, unknown role", conn{user: "nosuchrole", database: "dnfull", cert: byName("unknown OID")}, `FATAL 28000 "trust" authentication failed for user "nosuchrole"`, nil},
		identCase{"unknown OID, unknown role, no name check", conn{user: "nosuchrole", database: "trustca", cert: byName("unknown OID")}, `FATAL 28000 role "nosuchrole" does not exist`, nil},
		identCase{"unknown OID, name accepted", conn{user: "unk", database: "postgres", cert: byName("unknown OID")}, identNoNID,
			[]string{"could not get NID for ASN1_OBJECT object"}},
		identCase{"unknown OID in the issuer's name", conn{user: "alice", database: "postgres", cert: "odd-issuer"}, identNoNID, nil},
		identCase{"unknown OID, no name check", conn{user: "alice", database: "trustca", cert: "odd-issuer"}, identNoNID, nil},
	)
	t.Logf("differential: %d cases agree with PostgreSQL", identRun(t, w, cases))
}

// identCRLs returns a current PEM CRL from each CA, revoking revoked.
func identCRLs(t *testing.T, cas []*testpki.CA, revoked []*x509.Certificate) string {
	t.Helper()
	var out []byte
	for _, ca := range cas {
		crl, err := ca.CRL(revoked, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, crl...)
	}
	return string(out)
}
