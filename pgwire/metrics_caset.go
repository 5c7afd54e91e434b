package pgwire

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// The expiry of each CA set the handshake trusts (ssl_ca_file's, and the
// sets pg_hba.conf lines require with clientca=): the first of its CA
// certificates to expire, and the nextUpdate of its CRLs. Once a set's
// CA certificate expires, every chain through it fails with "certificate
// has expired"; once a set's CRL is past its nextUpdate, every chain
// through that CRL's issuer fails with "CRL has expired". Both refuse the
// lines that require the set, so operators alert on them per set.
const (
	caSetNotAfterHelp = "Unix time at which the first CA certificate of each CA set expires (set: ssl_ca_file, @NAME for a [client_ca.NAME] table, or the path of a clientca= file)."
	caSetCRLNextHelp  = "Latest nextUpdate among the CRLs of each CA set, per issuer (ssl_ca_file's set: ssl_ca_file, ssl_crl_file and ssl_crl_dir; a [client_ca.NAME] set: its CA text, crl_file and crl_dir)."
)

var (
	caSetNotAfterDesc = prometheus.NewDesc("pgcertgate_ca_set_not_after_timestamp_seconds", caSetNotAfterHelp, []string{"set"}, nil)
	caSetCRLNextDesc  = prometheus.NewDesc("pgcertgate_ca_set_crl_next_update_timestamp_seconds", caSetCRLNextHelp, []string{"set", "issuer"}, nil)
)

// caSetCollector reports the CA sets of the configuration in force: what
// the load parsed, and each set's CRL directories, read at scrape time
// because verification reads them on demand too (Metrics.crlDirExpiry,
// which caches the files by size and mtime).
type caSetCollector struct {
	current   func() *state
	dirExpiry func(dirs string) map[string]time.Time
}

// Describe implements prometheus.Collector.
func (caSetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- caSetNotAfterDesc
	ch <- caSetCRLNextDesc
}

// Collect implements prometheus.Collector.
func (c caSetCollector) Collect(ch chan<- prometheus.Metric) {
	if c.current == nil {
		return
	}
	st := c.current()
	if st == nil || st.rt == nil || st.rt.ClientCAs == nil {
		return
	}
	for _, s := range st.rt.ClientCAs.Sets() {
		v := s.Verifier()
		var first time.Time
		for _, t := range caExpiries(v) {
			if first.IsZero() || t.Before(first) {
				first = t
			}
		}
		if !first.IsZero() {
			ch <- prometheus.MustNewConstMetric(caSetNotAfterDesc, prometheus.GaugeValue, unixSeconds(first), s.Name)
		}
		next := v.CRLNextUpdates()
		if dirs := v.CRLDirs(); len(dirs) > 0 && c.dirExpiry != nil {
			for issuer, t := range c.dirExpiry(strings.Join(dirs, ":")) {
				if t.After(next[issuer]) {
					next[issuer] = t
				}
			}
		}
		for issuer, t := range next {
			ch <- prometheus.MustNewConstMetric(caSetCRLNextDesc, prometheus.GaugeValue, unixSeconds(t), s.Name, issuer)
		}
	}
}

// caKey names a CA certificate in the expiry gauges: its subject and
// serial.
type caKey struct{ subject, serial string }

// caExpiries is the notAfter of each CA certificate v loaded. Two
// certificates with the same subject and serial (a CA file listing one
// twice, or a careless re-issue) share a key; the earlier expiry is the
// one to alert on.
func caExpiries(v *certauth.Verifier) map[caKey]time.Time {
	out := make(map[caKey]time.Time)
	for _, c := range v.CACerts() {
		dn, _ := certauth.DistinguishedName(c)
		k := caKey{dn, c.SerialNumber.String()}
		if t, ok := out[k]; !ok || c.NotAfter.Before(t) {
			out[k] = c.NotAfter
		}
	}
	return out
}
