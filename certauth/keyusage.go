package certauth

import (
	"crypto/x509"
	"errors"
)

// KeyUsagePolicy is what a client certificate's key usage extensions must
// allow (ssl_client_key_usage, or clientkeyusage= on a pg_hba.conf line).
type KeyUsagePolicy int

const (
	// KeyUsageOpenSSL is OpenSSL's "sslclient" purpose check alone, as
	// PostgreSQL makes it: an extendedKeyUsage, if present, must include
	// clientAuth, and a keyUsage, if present, digitalSignature or
	// keyAgreement. A certificate with neither extension passes.
	KeyUsageOpenSSL KeyUsagePolicy = iota
	// KeyUsageRequire also demands that the leaf carries an
	// extendedKeyUsage with clientAuth, and that a keyUsage, if present,
	// includes digitalSignature (what MongoDB and Salesforce require).
	KeyUsageRequire
)

// String returns the setting's value.
func (p KeyUsagePolicy) String() string {
	if p == KeyUsageRequire {
		return "require"
	}
	return "openssl"
}

// ParseKeyUsagePolicy reads "openssl" or "require".
func ParseKeyUsagePolicy(s string) (KeyUsagePolicy, bool) {
	switch s {
	case "openssl":
		return KeyUsageOpenSSL, true
	case "require":
		return KeyUsageRequire, true
	}
	return 0, false
}

// KeyUsageRefused is not an OpenSSL code: a leaf that passed OpenSSL's
// purpose check fails ssl_client_key_usage = "require" (or a line's
// clientkeyusage=require).
const KeyUsageRefused Reason = 1020

// CheckKeyUsage holds a verified chain's leaf to policy. It returns nil or
// a *VerifyError with Reason KeyUsageRefused whose Err says what is
// missing. Under KeyUsageOpenSSL the verifier's purpose check has already
// run and nothing more is checked.
func CheckKeyUsage(policy KeyUsagePolicy, leaf *x509.Certificate) error {
	if policy != KeyUsageRequire {
		return nil
	}
	ci, err := newCertInfo(leaf)
	if err != nil {
		return &VerifyError{Reason: Unparseable, Err: err}
	}
	switch {
	case !ci.hasXKU:
		return &VerifyError{Reason: KeyUsageRefused, Err: errors.New("the certificate has no extendedKeyUsage; clientAuth is required")}
	case !ci.xkuClient:
		return &VerifyError{Reason: KeyUsageRefused, Err: errors.New("the certificate's extendedKeyUsage does not include clientAuth")}
	case ci.hasKU && ci.ku&kuDigitalSignature == 0:
		return &VerifyError{Reason: KeyUsageRefused, Err: errors.New("the certificate's keyUsage does not include digitalSignature")}
	}
	return nil
}

// PolicyCode is the audit reason code (and metric label) of a refusal by
// one of pgcertgate's certificate policies: "chain_too_deep" for a chain
// longer than ssl_verify_depth allows, "key_usage" for a leaf that fails
// ssl_client_key_usage; "" for any other reason.
func (r Reason) PolicyCode() string {
	switch r {
	case CertChainTooLong:
		return "chain_too_deep"
	case KeyUsageRefused:
		return "key_usage"
	}
	return ""
}

// policyText is String for the policy reasons that are not OpenSSL's.
func (r Reason) policyText() (string, bool) {
	if r == KeyUsageRefused {
		return "certificate key usage does not allow client authentication", true
	}
	return "", false
}

// policyAlert is Alert for them: unsupported_certificate, which OpenSSL
// sends for a certificate its purpose check refuses.
func (r Reason) policyAlert() (uint8, bool) {
	if r == KeyUsageRefused {
		return AlertUnsupportedCertificate, true
	}
	return 0, false
}
