package pgwire

import (
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestCASetExpiryMetrics: each CA set of the configuration in force
// reports its first CA certificate to expire (an intermediate before its
// root, an expired one too) and the nextUpdate of its CRLs, per issuer;
// a set without CRLs reports none. A reload's sets replace the old ones.
func TestCASetExpiryMetrics(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(days int) time.Time { return base.AddDate(0, 0, days) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "metrics root"}, testpki.WithValidity(at(-10), at(900)))
	must(err)
	inter, err := root.NewIntermediate(pkix.Name{CommonName: "metrics issuing"}, testpki.WithValidity(at(-10), at(400)))
	must(err)
	n, err := testpki.NewRootCA(pkix.Name{CommonName: "CA N"}, testpki.WithValidity(at(-10), at(700)))
	must(err)
	old, err := testpki.NewRootCA(pkix.Name{CommonName: "CA old"}, testpki.WithValidity(at(-10), at(-1)))
	must(err)
	rootCRL, err := root.CRL(nil, at(-1), at(7))
	must(err)
	rootCRLLater, err := root.CRL(nil, at(0), at(8))
	must(err)
	interCRL, err := inter.CRL(nil, at(-1), at(3))
	must(err)
	dir := t.TempDir()
	crlFile := filepath.Join(dir, "crl.pem")
	must(os.WriteFile(crlFile, append(append(rootCRL, rootCRLLater...), interCRL...), 0o600))

	set := func(name string, pemText []byte, crl string) *certauth.CASet {
		t.Helper()
		v, err := certauth.NewVerifier(certauth.Config{CAFile: name, CAPEM: pemText, CRLFile: crl})
		must(err)
		return certauth.NewCASet(name, v)
	}
	dn := func(ca *testpki.CA) string {
		s, err := certauth.FormatDN(ca.Cert.RawSubject)
		must(err)
		return s
	}
	trust := certauth.NewTrust(certauth.KeyUsageOpenSSL,
		set(certauth.DefaultSet, append(append([]byte{}, root.CertPEM...), inter.CertPEM...), crlFile),
		set("@n", n.CertPEM, ""),
		set("/etc/pgcertgate/old.pem", append(append([]byte{}, n.CertPEM...), old.CertPEM...), ""))
	st := &state{rt: &config.Runtime{Config: &config.Config{}, ClientCAs: trust}}
	m := newMetrics(func() *state { return st })

	want := fmt.Sprintf(`# HELP pgcertgate_ca_set_not_after_timestamp_seconds %s
# TYPE pgcertgate_ca_set_not_after_timestamp_seconds gauge
pgcertgate_ca_set_not_after_timestamp_seconds{set="ssl_ca_file"} %d
pgcertgate_ca_set_not_after_timestamp_seconds{set="@n"} %d
pgcertgate_ca_set_not_after_timestamp_seconds{set="/etc/pgcertgate/old.pem"} %d
# HELP pgcertgate_ca_set_crl_next_update_timestamp_seconds %s
# TYPE pgcertgate_ca_set_crl_next_update_timestamp_seconds gauge
pgcertgate_ca_set_crl_next_update_timestamp_seconds{issuer=%q,set="ssl_ca_file"} %d
pgcertgate_ca_set_crl_next_update_timestamp_seconds{issuer=%q,set="ssl_ca_file"} %d
`, caSetNotAfterHelp, at(400).Unix(), at(700).Unix(), at(-1).Unix(),
		caSetCRLNextHelp, dn(root), at(8).Unix(), dn(inter), at(3).Unix())
	names := []string{"pgcertgate_ca_set_not_after_timestamp_seconds", "pgcertgate_ca_set_crl_next_update_timestamp_seconds"}
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// A reload to a configuration with ssl_ca_file alone, without CRLs.
	st = &state{rt: &config.Runtime{Config: &config.Config{}, ClientCAs: certauth.NewTrust(certauth.KeyUsageOpenSSL, set(certauth.DefaultSet, n.CertPEM, ""))}}
	want = fmt.Sprintf(`# HELP pgcertgate_ca_set_not_after_timestamp_seconds %s
# TYPE pgcertgate_ca_set_not_after_timestamp_seconds gauge
pgcertgate_ca_set_not_after_timestamp_seconds{set="ssl_ca_file"} %d
`, caSetNotAfterHelp, at(700).Unix())
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// No client CA at all: no series.
	st = &state{rt: &config.Runtime{Config: &config.Config{}}}
	if n := testutil.CollectAndCount(m, names...); n != 0 {
		t.Fatalf("%d series without client CAs", n)
	}
}

// TestCASetExpiryMetricsCRLDir: a set's crl_dir counts in its CRL gauge,
// next to its crl_file, and ssl_crl_dir's gauge keeps counting while the
// set's directory is read too.
func TestCASetExpiryMetricsCRLDir(t *testing.T) {
	base := time.Now().Truncate(time.Second)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := testpki.NewRootCA(pkix.Name{CommonName: "CA D"})
	must(err)
	r, err := testpki.NewRootCA(pkix.Name{CommonName: "CA R"})
	must(err)
	dCRL, err := d.CRL(nil, base.Add(-time.Hour), base.Add(72*time.Hour))
	must(err)
	rCRL, err := r.CRL(nil, base.Add(-time.Hour), base.Add(24*time.Hour))
	must(err)
	hashed := func(dir string, ca *testpki.CA, data []byte) {
		t.Helper()
		h, err := certauth.NameHash(ca.Cert.RawSubject)
		must(err)
		must(os.WriteFile(filepath.Join(dir, certauth.HashedCRLName(h, 0)), data, 0o600))
	}
	setDir, sslDir := t.TempDir(), t.TempDir()
	hashed(setDir, d, dCRL)
	hashed(sslDir, r, rCRL)
	dn := func(ca *testpki.CA) string {
		s, err := certauth.FormatDN(ca.Cert.RawSubject)
		must(err)
		return s
	}
	vd, err := certauth.NewVerifier(certauth.Config{CAFile: "@d", CAPEM: d.CertPEM, CRLDir: setDir})
	must(err)
	vr, err := certauth.NewVerifier(certauth.Config{CAFile: "ssl_ca", CAPEM: r.CertPEM, CRLDir: sslDir})
	must(err)
	trust := certauth.NewTrust(certauth.KeyUsageOpenSSL, certauth.NewCASet(certauth.DefaultSet, vr), certauth.NewCASet("@d", vd))
	st := &state{rt: &config.Runtime{Config: &config.Config{SSLCRLDir: sslDir}, ClientCAs: trust, Verifier: vr}}
	m := newMetrics(func() *state { return st })
	want := fmt.Sprintf(`# HELP pgcertgate_ca_set_crl_next_update_timestamp_seconds %s
# TYPE pgcertgate_ca_set_crl_next_update_timestamp_seconds gauge
pgcertgate_ca_set_crl_next_update_timestamp_seconds{issuer=%q,set="@d"} %d
pgcertgate_ca_set_crl_next_update_timestamp_seconds{issuer=%q,set="ssl_ca_file"} %d
`, caSetCRLNextHelp, dn(d), base.Add(72*time.Hour).Unix(), dn(r), base.Add(24*time.Hour).Unix())
	// Twice: the second scrape reads from the cache both directories
	// share.
	for range 2 {
		if err := testutil.CollectAndCompare(m, strings.NewReader(want), "pgcertgate_ca_set_crl_next_update_timestamp_seconds"); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.crlDir) != 2 {
		t.Fatalf("cached %d CRL files, want 2", len(m.crlDir))
	}
}
