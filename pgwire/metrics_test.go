package pgwire

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgcertgate/pgcertgate/certauth"
)

func TestMetricsLint(t *testing.T) {
	m := newMetrics(nil)
	m.accepted()
	m.connOpened()
	m.authOK(3 * time.Millisecond)
	m.authFailed("no_hba_match", time.Millisecond)
	m.tlsFailed(&certauth.VerifyError{Reason: certauth.CertHasExpired})
	m.relayed(10, 20)
	m.ReloadFailed()
	problems, err := testutil.CollectAndLint(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	want := `
# HELP pgcertgate_auth_attempts_total Connection attempts by verdict (accept, reject) and the audit log's reason code.
# TYPE pgcertgate_auth_attempts_total counter
pgcertgate_auth_attempts_total{reason="authorized",verdict="accept"} 1
pgcertgate_auth_attempts_total{reason="no_hba_match",verdict="reject"} 1
# HELP pgcertgate_tls_handshake_failures_total Failed TLS handshakes by cause (certificate verification failures carry OpenSSL's reason).
# TYPE pgcertgate_tls_handshake_failures_total counter
pgcertgate_tls_handshake_failures_total{cause="cert_certificate_has_expired"} 1
# HELP pgcertgate_relayed_bytes_total Bytes relayed by ended sessions: in = client to backend, out = backend to client.
# TYPE pgcertgate_relayed_bytes_total counter
pgcertgate_relayed_bytes_total{direction="in"} 10
pgcertgate_relayed_bytes_total{direction="out"} 20
# HELP pgcertgate_config_last_reload_successful 1 if the last configuration load succeeded, 0 if it failed and the previous configuration is still in force.
# TYPE pgcertgate_config_last_reload_successful gauge
pgcertgate_config_last_reload_successful 0
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want),
		"pgcertgate_auth_attempts_total", "pgcertgate_tls_handshake_failures_total",
		"pgcertgate_relayed_bytes_total", "pgcertgate_config_last_reload_successful"); err != nil {
		t.Error(err)
	}
}

func TestTLSFailureCause(t *testing.T) {
	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&certauth.VerifyError{Reason: certauth.CertRevoked}, "cert_certificate_revoked"},
		{fmt.Errorf("wrapped: %w", &certauth.VerifyError{Reason: certauth.DepthZeroSelfSigned}), "cert_self_signed_certificate"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "not_tls"},
		{timeout, "timeout"},
		{io.EOF, "client_closed"},
		{errors.New("remote error: tls: bad certificate"), "client_alert"},
		{errors.New(`tls: client requested unsupported application protocols (["h2"])`), "no_application_protocol"},
		{errors.New("tls: client offered only unsupported versions: [301]"), "protocol_version"},
		{errors.New("tls: no cipher suite supported by both client and server; client offered: [5]"), "no_shared_cipher"},
		{errors.New("client certificate message of 200000 bytes exceeds OpenSSL's max_cert_list (102400)"), "cert_list_too_long"},
		{errors.New("something new"), "other"},
	} {
		if got := tlsFailureCause(tc.err); got != tc.want {
			t.Errorf("tlsFailureCause(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
