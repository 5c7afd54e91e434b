package pgwire

import "github.com/prometheus/client_golang/prometheus"

// Reasons a running session is ended for its certificate, the values of
// pgcertgate_sessions_ended_total's reason label.
const (
	endedCRLReload = "crl_reload"   // a configured CRL (ssl_crl_file, ssl_crl_dir) revoked it
	endedCRLFetch  = "crl_fetched"  // a fetched CRL (ssl_crl_fetch) revoked it
	endedOCSP      = "ocsp_revoked" // an OCSP recheck (or cached answer) said revoked
	endedExpired   = "cert_expired" // a certificate of its chain passed notAfter
)

// newSessionsEndedCounter counts running sessions ended because their
// client certificate was revoked or expired (revoked_sessions =
// "terminate").
func newSessionsEndedCounter(ns string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sessions_ended_total",
		Help: "Running sessions ended because their client certificate was revoked or expired (revoked_sessions = \"terminate\"), by reason: crl_reload (a configured CRL after a reload), crl_fetched (a fetched CRL), ocsp_revoked (an OCSP recheck), cert_expired (a certificate of the chain passed notAfter)."},
		[]string{"reason"})
	for _, r := range []string{endedCRLReload, endedCRLFetch, endedOCSP, endedExpired} {
		v.WithLabelValues(r)
	}
	return v
}

func (m *Metrics) sessionEndedFor(reason string) { m.revsess.WithLabelValues(reason).Inc() }
