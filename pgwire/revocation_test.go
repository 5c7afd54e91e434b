package pgwire

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// TestRevocationReasons: a refusal by OCSP or a fetched CRL carries its
// own audit reason and metric label; a fetched CRL's revocation is a
// certificate revocation like a configured CRL's.
func TestRevocationReasons(t *testing.T) {
	for _, tc := range []struct {
		r            certauth.Reason
		audit, cause string
	}{
		{certauth.OCSPRevoked, "ocsp_revoked", "ocsp_revoked"},
		{certauth.OCSPUnknown, "ocsp_unknown", "ocsp_unknown"},
		{certauth.OCSPUnavailable, "ocsp_unavailable", "ocsp_unavailable"},
		{certauth.OCSPBadResponse, "ocsp_bad_response", "ocsp_bad_response"},
		{certauth.CRLStale, "crl_stale", "crl_stale"},
		{certauth.CRLUnavailable, "crl_unavailable", "crl_unavailable"},
		{certauth.CertRevoked, "cert_invalid", "cert_certificate_revoked"},
	} {
		err := &certauth.VerifyError{Reason: tc.r}
		if got := tlsAuditReason(err); got != tc.audit {
			t.Errorf("%v: audit reason %q, want %q", tc.r, got, tc.audit)
		}
		if got := tlsFailureCause(err); got != tc.cause {
			t.Errorf("%v: cause %q, want %q", tc.r, got, tc.cause)
		}
	}
}

func TestRevocationMetrics(t *testing.T) {
	m := newRevocationMetrics()
	m.Checked("cache", "good")
	m.Checked("cache", "good")
	m.Checked("ocsp", "revoked")
	m.OCSPRoundTrip(3 * time.Millisecond)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	want := `
# HELP pgcertgate_revocation_checks_total Revocation checks of one certificate, by source (ocsp: a responder request, cache: a cached OCSP answer, crl: a fetched CRL) and result (good, revoked, unknown, unavailable, bad_response, stale).
# TYPE pgcertgate_revocation_checks_total counter
pgcertgate_revocation_checks_total{result="good",source="cache"} 2
pgcertgate_revocation_checks_total{result="revoked",source="ocsp"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "pgcertgate_revocation_checks_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.rtt); n != 1 {
		t.Fatalf("round-trip histogram: %d series", n)
	}
}
