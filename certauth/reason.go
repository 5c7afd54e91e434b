package certauth

import (
	"errors"
	"fmt"
)

// Reason is why a client certificate chain failed verification. Its values
// are OpenSSL's X509_V_ERR_* codes (the "error N" of `openssl verify`), so a
// log line can be compared with what PostgreSQL's OpenSSL would report, and
// String is X509_verify_cert_error_string's text (OpenSSL 3.0).
type Reason int

// Verification failures, named after OpenSSL's X509_V_ERR_* constants.
const (
	UnableToGetIssuerCert         Reason = 2  // the top of the chain is trusted but not self-signed (no PARTIAL_CHAIN)
	UnableToGetCRL                Reason = 3  // CRL checking is on and no usable CRL from the issuer was found
	CertSignatureFailure          Reason = 7  // a certificate's signature does not verify
	CRLSignatureFailure           Reason = 8  // a CRL's signature does not verify
	CertNotYetValid               Reason = 9  // notBefore is in the future
	CertHasExpired                Reason = 10 // notAfter has passed
	CRLNotYetValid                Reason = 11 // the CRL's thisUpdate is in the future
	CRLHasExpired                 Reason = 12 // the CRL's nextUpdate has passed
	DepthZeroSelfSigned           Reason = 18 // the client's certificate is self-signed and not in the CA file
	SelfSignedCertInChain         Reason = 19 // the chain ends at a self-signed certificate not in the CA file
	UnableToGetIssuerCertLocally  Reason = 20 // no issuer found: unknown CA
	CertChainTooLong              Reason = 22 // more intermediates than the verify depth (100 by default)
	CertRevoked                   Reason = 23 // listed in the issuer's CRL
	InvalidCA                     Reason = 79 // an issuer is not a CA (basicConstraints, keyUsage); 24 before OpenSSL 3.0
	PathLengthExceeded            Reason = 25 // a pathLenConstraint is exceeded
	InvalidPurpose                Reason = 26 // not valid for TLS client authentication
	UnableToGetCRLIssuer          Reason = 33 // the root's CRL issuer is not self-issued
	UnhandledCriticalExtension    Reason = 34 // a critical extension OpenSSL does not process
	KeyUsageNoCRLSign             Reason = 35 // the CRL issuer's keyUsage lacks cRLSign
	UnhandledCriticalCRLExtension Reason = 36 // a critical CRL extension OpenSSL does not process
	ProxyCertificatesNotAllowed   Reason = 40 // an RFC 3820 proxy certificate
	DifferentCRLScope             Reason = 44 // the CRL's issuing distribution point does not cover the certificate
	PermittedViolation            Reason = 47 // name constraints forbid a name in the chain
	// Unparseable is not an OpenSSL code: a certificate Go's x509 parser
	// refuses. Go's TLS stack refuses such a handshake before verification.
	Unparseable Reason = 1000
	// NoCertificate is not an OpenSSL code: Verify was given no certificate.
	NoCertificate Reason = 1001
)

// String returns OpenSSL's X509_verify_cert_error_string text.
func (r Reason) String() string {
	if s, ok := r.revocationText(); ok {
		return s
	}
	if s, ok := r.policyText(); ok {
		return s
	}
	switch r {
	case UnableToGetIssuerCert:
		return "unable to get issuer certificate"
	case UnableToGetCRL:
		return "unable to get certificate CRL"
	case CertSignatureFailure:
		return "certificate signature failure"
	case CRLSignatureFailure:
		return "CRL signature failure"
	case CertNotYetValid:
		return "certificate is not yet valid"
	case CertHasExpired:
		return "certificate has expired"
	case CRLNotYetValid:
		return "CRL is not yet valid"
	case CRLHasExpired:
		return "CRL has expired"
	case DepthZeroSelfSigned:
		return "self-signed certificate"
	case SelfSignedCertInChain:
		return "self-signed certificate in certificate chain"
	case UnableToGetIssuerCertLocally:
		return "unable to get local issuer certificate"
	case CertChainTooLong:
		return "certificate chain too long"
	case CertRevoked:
		return "certificate revoked"
	case InvalidCA:
		return "invalid CA certificate"
	case PathLengthExceeded:
		return "path length constraint exceeded"
	case InvalidPurpose:
		return "unsuitable certificate purpose"
	case UnableToGetCRLIssuer:
		return "unable to get CRL issuer certificate"
	case UnhandledCriticalExtension:
		return "unhandled critical extension"
	case KeyUsageNoCRLSign:
		return "key usage does not include CRL signing"
	case UnhandledCriticalCRLExtension:
		return "unhandled critical CRL extension"
	case ProxyCertificatesNotAllowed:
		return "proxy certificates not allowed, please set the appropriate flag"
	case DifferentCRLScope:
		return "different CRL scope"
	case PermittedViolation:
		return "permitted subtree violation"
	case Unparseable:
		return "certificate could not be parsed"
	case NoCertificate:
		return "no certificate"
	}
	return fmt.Sprintf("X509_V_ERR %d", int(r))
}

// TLS alert descriptions (RFC 8446 §6) that certificate verification can
// produce.
const (
	AlertHandshakeFailure       uint8 = 40
	AlertBadCertificate         uint8 = 42
	AlertUnsupportedCertificate uint8 = 43
	AlertCertificateRevoked     uint8 = 44
	AlertCertificateExpired     uint8 = 45
	AlertCertificateUnknown     uint8 = 46
	AlertUnknownCA              uint8 = 48
	AlertDecryptError           uint8 = 51
)

// Alert returns the TLS alert OpenSSL's server sends for this failure
// (ssl/statem/statem_lib.c ssl_x509err2alert, used by
// tls_process_client_certificate): unknown_ca for issuer, chain and CRL
// lookup failures, certificate_expired for an expired certificate or CRL,
// bad_certificate for not-yet-valid ones, certificate_revoked,
// unsupported_certificate for a wrong purpose, decrypt_error for a bad
// signature and certificate_unknown for anything else.
func (r Reason) Alert() uint8 {
	if a, ok := r.revocationAlert(); ok {
		return a
	}
	if a, ok := r.policyAlert(); ok {
		return a
	}
	switch r {
	case UnableToGetIssuerCert, UnableToGetCRL, UnableToGetCRLIssuer,
		DepthZeroSelfSigned, SelfSignedCertInChain, UnableToGetIssuerCertLocally,
		CertChainTooLong, PathLengthExceeded, InvalidCA:
		return AlertUnknownCA
	case CertNotYetValid, CRLNotYetValid, Unparseable:
		return AlertBadCertificate
	case CertSignatureFailure, CRLSignatureFailure:
		return AlertDecryptError
	case CertHasExpired, CRLHasExpired:
		return AlertCertificateExpired
	case CertRevoked:
		return AlertCertificateRevoked
	case InvalidPurpose:
		return AlertUnsupportedCertificate
	}
	return AlertCertificateUnknown
}

// VerifyError is a failed verification. Depth is the position in the chain
// (0 = the client's certificate) of the certificate the error is about, as
// in OpenSSL's "error N at D depth lookup".
type VerifyError struct {
	Reason Reason
	Depth  int
	Err    error // underlying detail, may be nil
}

func (e *VerifyError) Error() string {
	s := fmt.Sprintf("certificate verify failed: %s (depth %d)", e.Reason, e.Depth)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying detail.
func (e *VerifyError) Unwrap() error { return e.Err }

// Alert returns the TLS alert OpenSSL would send; see Reason.Alert.
func (e *VerifyError) Alert() uint8 { return e.Reason.Alert() }

// AuditCode is the audit reason and metric label of a refusal that has
// one of its own (a revocation source's or a pgcertgate policy's), or ""
// for OpenSSL's plain verification failures.
func (r Reason) AuditCode() string {
	if code := r.RevocationCode(); code != "" {
		return code
	}
	return r.PolicyCode()
}

// AuditReason is the audit reason of a refused certificate: the
// refusal's own code (AuditCode) when err is a *VerifyError that has one,
// else cert_invalid. The handshake and every later check of a chain log
// a refusal with it, so that one refusal has one reason wherever it
// happens.
func AuditReason(err error) string {
	if ve, ok := errors.AsType[*VerifyError](err); ok && ve.Reason.AuditCode() != "" {
		return ve.Reason.AuditCode()
	}
	return "cert_invalid"
}
