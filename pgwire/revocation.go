package pgwire

import (
	"context"
	"crypto/x509"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/revocation"
)

// revocationPolicy is ssl_ocsp and ssl_crl_fetch with their limits, as
// the configuration sets them, built once per loaded configuration
// (ConfiguredCRL is then set per chain: revocationCheck). The
// load has validated ssl_ocsp; should it not parse, the policy is the
// strictest, never off.
func revocationPolicy(cfg *config.Config) revocation.Policy {
	mode, err := revocation.ParseMode(cfg.SSLOCSP)
	if err != nil {
		mode = revocation.Require
	}
	return revocation.Policy{
		OCSP:          mode,
		Responder:     cfg.SSLOCSPResponder,
		CRLFetch:      cfg.SSLCRLFetch,
		ConfiguredCRL: cfg.SSLCRLFile != "" || cfg.SSLCRLDir != "",
		Timeout:       cfg.OCSPTimeout(),
		CacheMaxAge:   cfg.OCSPCacheMaxAge(),
		CRLMaxSize:    cfg.CRLFetchMaxSize(),
		CRLGrace:      cfg.SSLCRLGrace.Duration,
	}
}

// checkRevocation asks OCSP and the fetched CRLs about chain, which the
// CA set has just built and verified to one of its roots (so that the
// URLs it names are a CA's, not the client's). It runs inside
// VerifyConnection: a refusal is a *certauth.VerifyError and fails the
// handshake as a CRL refusal does. The check is bounded by ctx (ended
// when the server closes), the connection's authentication_timeout and
// each request by ssl_ocsp_timeout; it blocks only this connection's
// handshake. The outcome goes into the connection's audit event.
func (c *clientConn) checkRevocation(ctx context.Context, chain []*x509.Certificate, set *certauth.CASet) error {
	return c.revocationCheck(ctx, chain, set, "revocation")
}

// checkSetRevocation is authz's RevocationCheck: the same checks on a
// chain that the matched line's CA set built anew after the handshake
// (authz/certchecks.go), logged under their own keys, next to
// ca_set_required and ca_set_verified. A refusal refuses the line.
func (c *clientConn) checkSetRevocation(ctx context.Context, chain []*x509.Certificate, set *certauth.CASet) error {
	return c.revocationCheck(ctx, chain, set, "ca_set_revocation")
}

func (c *clientConn) revocationCheck(ctx context.Context, chain []*x509.Certificate, set *certauth.CASet, key string) error {
	p := c.state.revocation
	if !p.Enabled() {
		return nil
	}
	// Only the CRLs of the set that verified the chain have been applied
	// to it: another set's do not stand in for a missing OCSP answer.
	p.ConfiguredCRL = set != nil && set.ChecksCRLs()
	ctx, cancel := context.WithDeadline(ctx, c.start.Add(c.state.rt.Config.AuthenticationTimeout.Duration))
	defer cancel()
	res := c.srv.revoker.Check(ctx, chain, p)
	if res.Outcome != "" {
		c.note(slog.String(key, res.Outcome))
	}
	if res.Detail != "" {
		c.note(slog.String(key+"_detail", res.Detail))
	}
	return res.Err
}

// newRevoker starts the server's revocation checker: one for the
// server's life, so that cached OCSP answers and fetched CRLs survive
// reloads (each check takes the policy in force).
func newRevoker(m *Metrics) *revocation.Checker {
	c := revocation.New(revocation.Options{Observer: m.rev})
	m.rev.checker.Store(c)
	return c
}

// revocationMetrics counts revocation checks and reports the fetched
// CRLs. It is the checker's Observer and one of Metrics' collectors.
type revocationMetrics struct {
	checks  *prometheus.CounterVec // source, result
	rtt     prometheus.Histogram
	crlAge  *prometheus.Desc
	crlNext *prometheus.Desc
	checker atomic.Pointer[revocation.Checker]
}

// ocspBuckets run from a loopback responder to ssl_ocsp_timeout's range.
var ocspBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newRevocationMetrics() *revocationMetrics {
	const ns = "pgcertgate"
	return &revocationMetrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "revocation_checks_total",
			Help: "Revocation checks of one certificate, by source (ocsp: a responder request, cache: a cached OCSP answer, crl: a fetched CRL) and result (good, revoked, unknown, unavailable, bad_response, stale)."},
			[]string{"source", "result"}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "ocsp_request_duration_seconds",
			Help: "OCSP request round trips, answered or not.", Buckets: ocspBuckets}),
		crlAge: prometheus.NewDesc(ns+"_fetched_crl_age_seconds",
			"Age (now minus thisUpdate) of the CRL held for each distribution point (ssl_crl_fetch).", []string{"url"}, nil),
		crlNext: prometheus.NewDesc(ns+"_fetched_crl_next_update_timestamp_seconds",
			"Unix time of the nextUpdate of the CRL held for each distribution point; past it plus ssl_crl_grace the CRL is stale.", []string{"url"}, nil),
	}
}

func (r *revocationMetrics) Checked(source, result string) {
	r.checks.WithLabelValues(source, result).Inc()
}

func (r *revocationMetrics) OCSPRoundTrip(d time.Duration) { r.rtt.Observe(d.Seconds()) }

// Describe implements prometheus.Collector.
func (r *revocationMetrics) Describe(ch chan<- *prometheus.Desc) {
	r.checks.Describe(ch)
	r.rtt.Describe(ch)
	ch <- r.crlAge
	ch <- r.crlNext
}

// Collect implements prometheus.Collector.
func (r *revocationMetrics) Collect(ch chan<- prometheus.Metric) {
	r.checks.Collect(ch)
	r.rtt.Collect(ch)
	c := r.checker.Load()
	if c == nil {
		return
	}
	now := time.Now()
	for _, s := range c.FetchedCRLs() {
		ch <- prometheus.MustNewConstMetric(r.crlAge, prometheus.GaugeValue, now.Sub(s.ThisUpdate).Seconds(), s.URL)
		if !s.NextUpdate.IsZero() {
			ch <- prometheus.MustNewConstMetric(r.crlNext, prometheus.GaugeValue, unixSeconds(s.NextUpdate), s.URL)
		}
	}
}
