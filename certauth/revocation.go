package certauth

// Refusals by the revocation sources PostgreSQL does not have: OCSP, and
// CRLs fetched from a certificate's distribution points. They are not
// OpenSSL codes (OpenSSL's X509_V_ERR_OCSP_* are about stapled server
// responses), so they sit with Unparseable above OpenSSL's range.
const (
	// OCSPRevoked: the responder answered "revoked".
	OCSPRevoked Reason = 1010
	// OCSPUnknown: the responder answered "unknown" (it does not know
	// the certificate), where a "good" was required.
	OCSPUnknown Reason = 1011
	// OCSPUnavailable: no answer (no responder named, connection
	// refused, timeout, HTTP error, responder error status) where one
	// was required.
	OCSPUnavailable Reason = 1012
	// OCSPBadResponse: an answer that cannot be trusted (malformed,
	// oversized, wrong signer, another certificate's, out of date) where
	// one was required.
	OCSPBadResponse Reason = 1013
	// CRLStale: the CRL fetched from a distribution point is past its
	// nextUpdate plus the grace period, and no newer one could be had.
	CRLStale Reason = 1014
	// CRLUnavailable: a distribution point's CRL could not be fetched or
	// did not verify, and none was fetched before.
	CRLUnavailable Reason = 1015
)

// RevocationCode is the audit log's reason code (and the metric label)
// for a refusal by OCSP or a fetched CRL, "" for any other reason: a
// certificate revoked by a fetched CRL is CertRevoked, as for a
// configured one.
func (r Reason) RevocationCode() string {
	switch r {
	case OCSPRevoked:
		return "ocsp_revoked"
	case OCSPUnknown:
		return "ocsp_unknown"
	case OCSPUnavailable:
		return "ocsp_unavailable"
	case OCSPBadResponse:
		return "ocsp_bad_response"
	case CRLStale:
		return "crl_stale"
	case CRLUnavailable:
		return "crl_unavailable"
	}
	return ""
}

// revocationText is String for the reasons above.
func (r Reason) revocationText() (string, bool) {
	switch r {
	case OCSPRevoked:
		return "certificate revoked (OCSP)", true
	case OCSPUnknown:
		return "certificate status unknown to the OCSP responder", true
	case OCSPUnavailable:
		return "no OCSP response", true
	case OCSPBadResponse:
		return "unusable OCSP response", true
	case CRLStale:
		return "fetched CRL is out of date", true
	case CRLUnavailable:
		return "unable to fetch certificate CRL", true
	}
	return "", false
}

// revocationAlert is Alert for the reasons above, chosen as the CRL
// failure each one stands for: revoked as a revoked certificate
// (certificate_revoked), a missing or unusable answer as a missing CRL
// (unknown_ca), an out-of-date CRL as an expired one
// (certificate_expired).
func (r Reason) revocationAlert() (uint8, bool) {
	switch r {
	case OCSPRevoked:
		return AlertCertificateRevoked, true
	case OCSPUnknown, OCSPUnavailable, OCSPBadResponse, CRLUnavailable:
		return AlertUnknownCA, true
	case CRLStale:
		return AlertCertificateExpired, true
	}
	return 0, false
}
