package pgwire

import (
	"fmt"
	"testing"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// TestCertPolicyReasons: a handshake refused by ssl_verify_depth or by
// ssl_client_key_usage = "require" carries its own audit reason and
// metric label, not cert_invalid; OpenSSL's own refusals keep theirs.
func TestCertPolicyReasons(t *testing.T) {
	for _, tc := range []struct {
		r            certauth.Reason
		audit, cause string
	}{
		{certauth.CertChainTooLong, "chain_too_deep", "chain_too_deep"},
		{certauth.KeyUsageRefused, "key_usage", "key_usage"},
		{certauth.InvalidPurpose, "cert_invalid", "cert_unsuitable_certificate_purpose"},
	} {
		err := fmt.Errorf("tls: %w", &certauth.VerifyError{Reason: tc.r})
		if got := tlsAuditReason(err); got != tc.audit {
			t.Errorf("%v: audit reason %q, want %q", tc.r, got, tc.audit)
		}
		if got := tlsFailureCause(err); got != tc.cause {
			t.Errorf("%v: cause %q, want %q", tc.r, got, tc.cause)
		}
	}
}
