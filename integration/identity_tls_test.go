package integration

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// identPsqlOutcome is what psql (libpq with OpenSSL) reports for one
// connection attempt, reduced to what must agree between PostgreSQL and
// pgcertgate, plus the TLS alert text, which may differ.
type identPsqlOutcome struct {
	outcome string // "ok as <user>", "FATAL <message>", "TLS failure" or "error: <output>"
	alert   string // OpenSSL's alert description, e.g. "unknown ca"
	out     string
}

var identAlertRE = regexp.MustCompile(`(?:sslv3|tlsv1|tlsv13) alert ([a-z ]+)`)

func identPsql(t *testing.T, w *world, tg target, c conn) identPsqlOutcome {
	t.Helper()
	out, err := psql(t, w.conninfo(tg, c), "-c", "select current_user")
	o := identPsqlOutcome{out: strings.TrimSpace(out)}
	if m := identAlertRE.FindStringSubmatch(out); m != nil {
		o.alert = m[1]
	}
	switch {
	case err == nil:
		o.outcome = "ok as " + o.out
	case strings.Contains(out, "FATAL:  "):
		_, msg, _ := strings.Cut(out, "FATAL:  ")
		msg, _, _ = strings.Cut(msg, "\n")
		o.outcome = "FATAL " + msg
	case o.alert != "" || strings.Contains(out, "SSL error") || strings.Contains(out, "SSL SYSCALL error") ||
		strings.Contains(out, "server closed the connection unexpectedly"):
		o.outcome = "TLS failure"
	default:
		o.outcome = "error: " + o.out
	}
	return o
}

// TestIdentPsqlTLSFailures makes libpq (OpenSSL) connect with each kind of
// certificate that fails verification. Unlike pgx, libpq sends its
// certificate whatever CA list the server advertises, so an unknown CA
// reaches verification. Both servers must fail the handshake with the
// same alert, the one the README's table lists.
func TestIdentPsqlTLSFailures(t *testing.T) {
	p := newPKI(t)
	// inter2 has an expired CRL; inter has none at all.
	inter2, err := p.root.NewIntermediate(pkix.Name{CommonName: "pgcertgate test intermediate 2"})
	if err != nil {
		t.Fatal(err)
	}
	if p.clients["inter2-alice"], err = inter2.NewClient(pkix.Name{CommonName: "alice"}); err != nil {
		t.Fatal(err)
	}
	rootCRL, err := p.root.CRL(p.revoked, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expiredCRL, err := inter2.CRL(nil, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, p, worldOptions{
		hba: "hostssl all all 127.0.0.1/32 cert\n",
		files: map[string]string{
			"root.crt": string(append(append(p.root.CertPEM, p.inter.CertPEM...), testpki.CertsPEM(inter2.Cert)...)),
			"root.crl": string(append(rootCRL, expiredCRL...)),
		},
	})
	identSetup(t, w, []string{"alice"}, nil)

	for _, tc := range []struct {
		name, cert string
		pgAlert    string // OpenSSL's alert, as the README's table lists it
	}{
		{"unknown CA", "wrongca", "unknown ca"},
		{"missing CRL for an issuer", "inter-alice", "unknown ca"},
		{"expired certificate", "expired", "certificate expired"},
		{"expired CRL", "inter2-alice", "certificate expired"},
		{"not yet valid", "notyet", "bad certificate"},
		{"wrong purpose (serverAuth only)", "serverauth", "unsupported certificate"},
		{"revoked", "revoked", "certificate revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := conn{user: "alice", database: "postgres", cert: tc.cert}
			pg := identPsql(t, w, direct, c)
			gate := identPsql(t, w, proxy, c)
			t.Logf("%-32s PostgreSQL: %-24q pgcertgate: %q", tc.name, pg.alert, gate.alert)
			if pg.outcome != "TLS failure" || gate.outcome != "TLS failure" {
				t.Errorf("want a TLS failure on both sides:\n  postgres:   %s (%s)\n  pgcertgate: %s (%s)", pg.outcome, pg.out, gate.outcome, gate.out)
			}
			if pg.alert != tc.pgAlert {
				t.Errorf("PostgreSQL sent %q, the README says %q (psql: %s)", pg.alert, tc.pgAlert, pg.out)
			}
			// pgcertgate sends OpenSSL's alert (pgwire/tlsalert.go).
			if gate.alert != pg.alert {
				t.Errorf("pgcertgate sent %q, PostgreSQL %q (psql: %s)", gate.alert, pg.alert, gate.out)
			}
		})
	}
	// The same world still lets a good certificate in through psql.
	for _, tg := range []target{direct, proxy} {
		if o := identPsql(t, w, tg, conn{user: "alice", database: "postgres", cert: "alice"}); o.outcome != "ok as alice" {
			t.Errorf("%s: %s (%s)", tg, o.outcome, o.out)
		}
	}
}

// TestIdentGoUnparsableCertificate: Go's x509 parser refuses some
// certificates OpenSSL accepts (README, "Go's x509 parser refuses …").
// PostgreSQL goes on to pg_hba.conf with them; pgcertgate cannot read
// them, so the client fails the TLS handshake (alert decode_error). This
// records both.
func TestIdentGoUnparsableCertificate(t *testing.T) {
	p := newPKI(t)
	for name, rdns := range map[string][]testpki.RDN{
		// '@' is outside PrintableString's character set.
		"printable-at": testpki.RDNs(identPrintable(testpki.OIDCommonName, "a@b")),
		"ia5-high":     testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "ia5"), testpki.ATV{OID: testpki.OIDOrganization, Tag: asn1.TagIA5String, Value: []byte("caf\xe9")}),
		"universal":    testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "ucs4"), testpki.ATV{OID: testpki.OIDOrganization, Tag: testpki.TagUniversalString, Value: testpki.UCS4("org")}),
	} {
		der, err := testpki.RawName(rdns...)
		if err != nil {
			t.Fatal(err)
		}
		l, err := p.root.NewClient(pkix.Name{}, testpki.WithRawSubject(der))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x509.ParseCertificate(l.DER); err == nil {
			t.Fatalf("%s: Go parses this certificate; pick another", name)
		}
		p.clients[name] = l
	}
	w := newWorld(t, p, worldOptions{hba: "hostssl certdb all 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust clientcert=verify-ca\n"})
	identSetup(t, w, []string{"a@b", "alice"}, []string{"certdb"})
	for _, tc := range []struct {
		name string
		conn conn
		pg   string
	}{
		{"PrintableString with @, cert line", conn{user: "a@b", database: "certdb", cert: "printable-at"}, "ok as a@b"},
		{"IA5String with a byte >= 0x80", conn{user: "alice", database: "postgres", cert: "ia5-high"}, "ok as alice"},
		{"UniversalString", conn{user: "alice", database: "postgres", cert: "universal"}, "ok as alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := identPsql(t, w, direct, tc.conn)
			gate := identPsql(t, w, proxy, tc.conn)
			t.Logf("%-36s PostgreSQL: %-12s pgcertgate: %s (alert %q)", tc.name, pg.outcome, gate.outcome, gate.alert)
			if pg.outcome != tc.pg {
				t.Errorf("PostgreSQL: got %q, want %q (%s)", pg.outcome, tc.pg, pg.out)
			}
			// crypto/tls answers a certificate it cannot parse with
			// decode_error.
			if gate.outcome != "TLS failure" || gate.alert != "decode error" {
				t.Errorf("pgcertgate: got %s, alert %q; want a TLS failure with decode error (%s)", gate.outcome, gate.alert, gate.out)
			}
		})
	}
	if !strings.Contains(w.logBuf.String(), "failed to parse client certificate") {
		t.Errorf("pgcertgate's log does not say why the handshake failed")
	}
}
