package pgwire

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// Metric label values for the verdict of a connection attempt, shared with
// the audit log's "verdict" field.
const (
	verdictAccept = "accept"
	verdictReject = "reject"
)

// latencyBuckets cover a loopback login (about a millisecond) up to
// authentication_timeout's default of a minute.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Metrics is the server's Prometheus instrumentation. It implements
// prometheus.Collector: register it with a registry (cmd/pgcertgate hands
// that registry to the admin server's /metrics).
//
// Hot-path cost is a few atomic adds per connection, never per read: bytes
// relayed are added when a session ends, so a long session's bytes show up
// in pgcertgate_relayed_bytes_total at its end. Certificate and CRL expiry
// gauges are computed from the configuration in force at scrape time.
type Metrics struct {
	cancels        *prometheus.CounterVec // cancel.go
	acceptedTotal  prometheus.Counter
	active         prometheus.Gauge
	closed         prometheus.Counter
	sessions       prometheus.Gauge
	auth           *prometheus.CounterVec   // verdict, reason
	tlsFailures    *prometheus.CounterVec   // cause
	authLatency    *prometheus.HistogramVec // verdict
	backendLatency prometheus.Histogram
	bytes          *prometheus.CounterVec // direction
	bytesIn        prometheus.Counter     // bytes' "in" child, resolved once
	bytesOut       prometheus.Counter
	reloads        *prometheus.CounterVec // result
	reloadOK       prometheus.Gauge
	reloadTime     prometheus.Gauge

	serverNotAfter *prometheus.Desc
	caNotAfter     *prometheus.Desc
	crlNextUpdate  *prometheus.Desc
	rev            *revocationMetrics     // OCSP and fetched CRLs
	revsess        *prometheus.CounterVec // sessions ended for their certificate (metrics_revsess.go)

	// current returns the configuration in force, for the expiry gauges.
	current func() *state
	// crlDir caches parsed ssl_crl_dir files by path, size and mtime, so a
	// scrape re-reads only what changed.
	crlMu  sync.Mutex
	crlDir map[string]crlFileExpiry
}

// crlFileExpiry is one parsed CRL file's nextUpdate per issuer DN.
type crlFileExpiry struct {
	size    int64
	modTime time.Time
	next    map[string]time.Time
}

func newMetrics(current func() *state) *Metrics {
	const ns = "pgcertgate"
	m := &Metrics{
		acceptedTotal: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "connections_accepted_total",
			Help: "Client TCP connections accepted."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections_active",
			Help: "Client connections open, in any phase (TLS, startup, authentication, session)."}),
		closed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "connections_closed_total",
			Help: "Client connections closed, whatever the outcome."}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "sessions_active",
			Help: "Authenticated sessions being relayed to the backend."}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "auth_attempts_total",
			Help: "Connection attempts by verdict (accept, reject) and the audit log's reason code."}, []string{"verdict", "reason"}),
		tlsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tls_handshake_failures_total",
			Help: "Failed TLS handshakes by cause (certificate verification failures carry OpenSSL's reason)."}, []string{"cause"}),
		authLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "auth_duration_seconds",
			Help:    "Time from accept to the verdict of a connection attempt (TLS, startup, pg_hba.conf, pg_ident.conf and backend connect).",
			Buckets: latencyBuckets}, []string{"verdict"}),
		backendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "backend_connect_duration_seconds",
			Help: "Time to open and authenticate a backend connection, successful or not.", Buckets: latencyBuckets}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reloads_total",
			Help: "Configuration reloads (SIGHUP or watch_files) by result (success, failure)."}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "config_last_reload_successful",
			Help: "1 if the last configuration load succeeded, 0 if it failed and the previous configuration is still in force."}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load."}),
		serverNotAfter: prometheus.NewDesc(ns+"_server_cert_not_after_timestamp_seconds",
			"Unix time at which the server certificate (ssl_cert_file) expires.", nil, nil),
		caNotAfter: prometheus.NewDesc(ns+"_ca_cert_not_after_timestamp_seconds",
			"Unix time at which each certificate of ssl_ca_file expires.", []string{"subject", "serial"}, nil),
		crlNextUpdate: prometheus.NewDesc(ns+"_crl_next_update_timestamp_seconds",
			"Latest nextUpdate among the CRLs of each issuer (ssl_ca_file, ssl_crl_file, ssl_crl_dir); past it, every login through that issuer fails.",
			[]string{"issuer"}, nil),
		current: current,
		crlDir:  make(map[string]crlFileExpiry),
		rev:     newRevocationMetrics(),
	}
	m.cancels = newCancelCounter(ns)
	m.revsess = newSessionsEndedCounter(ns)
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "relayed_bytes_total",
		Help: "Bytes relayed by ended sessions: in = client to backend, out = backend to client."}, []string{"direction"})
	m.bytesIn = m.bytes.WithLabelValues("in")
	m.bytesOut = m.bytes.WithLabelValues("out")
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.authLatency.WithLabelValues(verdictAccept)
	m.authLatency.WithLabelValues(verdictReject)
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
	return m
}

// collectors are the metrics with fixed descriptors.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.acceptedTotal, m.active, m.closed, m.sessions, m.auth, m.tlsFailures,
		m.authLatency, m.backendLatency, m.bytes, m.reloads, m.reloadOK, m.reloadTime, m.rev, m.cancels, m.revsess, caSetCollector{m.current, m.crlDirExpiry}}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	ch <- m.serverNotAfter
	ch <- m.caNotAfter
	ch <- m.crlNextUpdate
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
	if m.current == nil {
		return
	}
	st := m.current()
	if leaf := serverLeaf(st.rt.ServerCert); leaf != nil {
		ch <- prometheus.MustNewConstMetric(m.serverNotAfter, prometheus.GaugeValue, unixSeconds(leaf.NotAfter))
	}
	if v := st.rt.Verifier; v != nil {
		// Two certificates with the same subject and serial (a CA file
		// listing one twice, or a careless re-issue) share a series; the
		// earlier expiry is the one to alert on.
		for k, t := range caExpiries(v) {
			ch <- prometheus.MustNewConstMetric(m.caNotAfter, prometheus.GaugeValue, unixSeconds(t), k.subject, k.serial)
		}
	}
	next := make(map[string]time.Time)
	merge := func(from map[string]time.Time) {
		for issuer, t := range from {
			if t.After(next[issuer]) {
				next[issuer] = t
			}
		}
	}
	if v := st.rt.Verifier; v != nil {
		merge(v.CRLNextUpdates())
	}
	merge(m.crlDirExpiry(st.rt.Config.SSLCRLDir))
	for issuer, t := range next {
		ch <- prometheus.MustNewConstMetric(m.crlNextUpdate, prometheus.GaugeValue, unixSeconds(t), issuer)
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func serverLeaf(c tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// crlDirExpiry reads ssl_crl_dir (':'-separated, as OpenSSL takes it). It
// is read at scrape time because verification reads it on demand too, so
// a CRL dropped into the directory counts without a reload.
func (m *Metrics) crlDirExpiry(dirs string) map[string]time.Time {
	out := make(map[string]time.Time)
	if dirs == "" {
		return out
	}
	m.crlMu.Lock()
	defer m.crlMu.Unlock()
	live := make(map[string]bool)
	scanned := make(map[string]bool)
	for _, dir := range strings.Split(dirs, ":") {
		scanned[filepath.Clean(dir)] = true
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if _, _, ok := certauth.ParseHashedCRLName(e.Name()); !ok {
				continue
			}
			path := filepath.Join(dir, e.Name())
			fi, err := os.Stat(path)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			live[path] = true
			cached, ok := m.crlDir[path]
			if !ok || cached.size != fi.Size() || !cached.modTime.Equal(fi.ModTime()) {
				data, err := os.ReadFile(path)
				if err != nil {
					continue
				}
				cached = crlFileExpiry{size: fi.Size(), modTime: fi.ModTime(), next: certauth.CRLFileNextUpdates(data)}
				m.crlDir[path] = cached
			}
			for issuer, t := range cached.next {
				if t.After(out[issuer]) {
					out[issuer] = t
				}
			}
		}
	}
	// Only the directories read here: each CA set's crl_dir is read by
	// a call of its own (caSetCollector).
	for path := range m.crlDir {
		if scanned[filepath.Dir(path)] && !live[path] {
			delete(m.crlDir, path)
		}
	}
	return out
}

// accepted counts a TCP connection accepted, before any admission check.
func (m *Metrics) accepted() { m.acceptedTotal.Inc() }

// startupRejected counts a connection closed at once because
// max_startup_connections connections are already in TLS or startup.
func (m *Metrics) startupRejected() {
	m.auth.WithLabelValues(verdictReject, "too_many_startups").Inc()
	m.closed.Inc()
}

// connOpened and connClosed bracket a connection's goroutine.
func (m *Metrics) connOpened() { m.active.Inc() }
func (m *Metrics) connClosed() { m.active.Dec(); m.closed.Inc() }

// authOK and authFailed count the verdict of a connection attempt, once per
// attempt, where the audit event is logged; d runs from accept.
func (m *Metrics) authOK(d time.Duration) {
	m.auth.WithLabelValues(verdictAccept, "authorized").Inc()
	m.authLatency.WithLabelValues(verdictAccept).Observe(d.Seconds())
}

func (m *Metrics) authFailed(reason string, d time.Duration) {
	m.auth.WithLabelValues(verdictReject, reason).Inc()
	m.authLatency.WithLabelValues(verdictReject).Observe(d.Seconds())
}

func (m *Metrics) tlsFailed(err error) { m.tlsFailures.WithLabelValues(tlsFailureCause(err)).Inc() }

func (m *Metrics) sessionStarted() { m.sessions.Inc() }
func (m *Metrics) sessionEnded()   { m.sessions.Dec() }

// relayed adds a session's bytes when it ends: one add per session, none
// per read.
func (m *Metrics) relayed(in, out int64) {
	m.bytesIn.Add(float64(in))
	m.bytesOut.Add(float64(out))
}

func (m *Metrics) backendConnect(d time.Duration) { m.backendLatency.Observe(d.Seconds()) }

// reloaded records a configuration reload that was swapped in.
func (m *Metrics) reloaded() {
	m.reloads.WithLabelValues("success").Inc()
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
}

// ReloadFailed records a reload refused for errors: the previous
// configuration stays in force. (A successful reload is recorded by
// Server.Reload.)
func (m *Metrics) ReloadFailed() {
	m.reloads.WithLabelValues("failure").Inc()
	m.reloadOK.Set(0)
}

// tlsAuditReason is the audit reason code of a failed handshake: a
// certificate that failed verification, or any other TLS failure (whose
// finer cause is the metric label below).
func tlsAuditReason(err error) string {
	if _, ok := errors.AsType[*certauth.VerifyError](err); ok {
		return certauth.AuditReason(err)
	}
	return "tls_handshake_failed"
}

// tlsFailureCause is a handshake failure's metric label: a bounded set of
// causes, with certificate verification failures split by OpenSSL's
// reason ("cert_certificate_has_expired", "cert_certificate_revoked", …).
func tlsFailureCause(err error) string {
	if ve, ok := errors.AsType[*certauth.VerifyError](err); ok {
		if code := ve.Reason.AuditCode(); code != "" {
			return code
		}
		return "cert_" + labelize(ve.Reason.String())
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return "not_tls"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return "client_closed"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "max_cert_list"):
		return "cert_list_too_long"
	case strings.Contains(msg, "remote error"):
		// The client refused us, typically our server certificate.
		return "client_alert"
	case strings.Contains(msg, "unsupported application protocols"):
		// ALPN without "postgresql": crypto/tls sent no_application_protocol.
		return "no_application_protocol"
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "protocol versions"):
		return "protocol_version"
	case strings.Contains(msg, "no cipher suite"):
		return "no_shared_cipher"
	case strings.Contains(msg, "connection reset"):
		return "client_closed"
	}
	return "other"
}

// labelize lower-cases s and turns every run of other characters into one
// underscore.
func labelize(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			under = false
		} else if !under && b.Len() > 0 {
			b.WriteByte('_')
			under = true
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}
