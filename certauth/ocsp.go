package certauth

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // OCSP CertIDs are SHA-1 by default (RFC 5019)
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// MaxOCSPResponseSize bounds an OCSP response. A response for one
// certificate, with a delegated responder certificate, is a few KiB;
// anything near this is not an answer to our request.
const MaxOCSPResponseSize = 64 << 10

// OCSPClockSkew is how far an OCSP response's thisUpdate may lie in the
// future, and its nextUpdate in the past, before the response is refused:
// OpenSSL's OCSP_check_validity default (openssl ocsp -validity_period).
const OCSPClockSkew = 5 * time.Minute

// OCSPStatus is a certificate's status in a verified OCSP response.
type OCSPStatus int

// The three answers of RFC 6960 §2.2.
const (
	OCSPStatusGood OCSPStatus = iota + 1
	OCSPStatusRevoked
	OCSPStatusUnknown
)

func (s OCSPStatus) String() string {
	switch s {
	case OCSPStatusGood:
		return "good"
	case OCSPStatusRevoked:
		return "revoked"
	case OCSPStatusUnknown:
		return "unknown"
	}
	return fmt.Sprintf("OCSPStatus(%d)", int(s))
}

// OCSPAnswer is a verified OCSP response for one certificate.
type OCSPAnswer struct {
	Status     OCSPStatus
	ThisUpdate time.Time
	// NextUpdate is zero when the responder gave none: newer information
	// is always available, so the answer must not be cached.
	NextUpdate time.Time
	// RevokedAt and RevocationReason are set for OCSPStatusRevoked.
	RevokedAt        time.Time
	RevocationReason int
	// Delegated is true when a responder certificate issued by the
	// issuer signed the response, false when the issuer itself did.
	Delegated bool
}

// ErrBadOCSPResponse is wrapped by every error of VerifyOCSPResponse about
// the response itself: malformed, oversized, for another certificate,
// signed by a key that may not answer for the issuer, or out of date.
// Such a response is no answer at all, never "good".
var ErrBadOCSPResponse = errors.New("unusable OCSP response")

// OCSPResponderError is a well-formed OCSP response whose status is not
// "successful" (RFC 6960 §4.2.1: malformedRequest, internalError,
// tryLater, sigRequired, unauthorized): the responder declined to answer.
type OCSPResponderError struct {
	Status ocsp.ResponseStatus
}

func (e *OCSPResponderError) Error() string {
	return "OCSP responder error: " + e.Status.String()
}

func badOCSP(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadOCSPResponse, fmt.Sprintf(format, args...))
}

// NewOCSPRequest returns the DER OCSP request for cert, issued by issuer,
// with a SHA-1 CertID: what RFC 5019 responders must accept and what
// `openssl ocsp` sends.
func NewOCSPRequest(cert, issuer *x509.Certificate) ([]byte, error) {
	return ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
}

// VerifyOCSPResponse parses der, the response to a request for cert
// (issued by issuer, whose chain is already verified), and checks it at
// now:
//
//   - the response is successful, at most MaxOCSPResponseSize bytes, with
//     no trailing data (golang.org/x/crypto/ocsp parses it);
//   - the SingleResponse used is the one for cert's CertID: its serial,
//     and the issuer's name and key hashes;
//   - it is signed by the issuer, or by a responder certificate that the
//     issuer signed, whose issuer name is the issuer's subject, that
//     carries id-kp-OCSPSigning and that is valid at now
//     (golang.org/x/crypto/ocsp checks only the signatures, RFC 6960
//     §4.2.2.2 asks for the rest);
//   - thisUpdate is not after now+OCSPClockSkew; nextUpdate, when given,
//     is not before thisUpdate nor before now-OCSPClockSkew; without a
//     nextUpdate, thisUpdate is not older than maxAge.
//
// Every failure wraps ErrBadOCSPResponse, except a responder's error
// status, an *OCSPResponderError.
func VerifyOCSPResponse(der []byte, cert, issuer *x509.Certificate, now time.Time, maxAge time.Duration) (*OCSPAnswer, error) {
	if len(der) > MaxOCSPResponseSize {
		return nil, badOCSP("response of %d bytes exceeds %d", len(der), MaxOCSPResponseSize)
	}
	if cert == nil || issuer == nil {
		return nil, badOCSP("no certificate or issuer")
	}
	// The issuer is not handed to the parser: it would then demand that
	// any embedded certificate be signed by the issuer, refusing the
	// common case of an intermediate CA that signs its own responses and
	// embeds its own certificate. Signatures are checked below instead.
	resp, err := ocsp.ParseResponseForCert(der, cert, nil)
	if err != nil {
		var re ocsp.ResponseError
		if errors.As(err, &re) {
			return nil, &OCSPResponderError{Status: re.Status}
		}
		return nil, badOCSP("%v", err)
	}
	if err := checkCertID(resp.TBSResponseData, resp.IssuerHash, cert, issuer); err != nil {
		return nil, err
	}
	ans := &OCSPAnswer{ThisUpdate: resp.ThisUpdate, NextUpdate: resp.NextUpdate}
	switch signer := resp.Certificate; {
	case signer == nil:
		if err := resp.CheckSignatureFrom(issuer); err != nil {
			return nil, badOCSP("signature: %v", err)
		}
	case bytes.Equal(signer.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo):
		// The issuer's own key, with its certificate embedded: the parser
		// has checked the signature with that key.
	default:
		if err := checkDelegatedResponder(signer, issuer, now); err != nil {
			return nil, err
		}
		ans.Delegated = true
	}
	if resp.ThisUpdate.After(now.Add(OCSPClockSkew)) {
		return nil, badOCSP("thisUpdate %s is in the future", resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !resp.NextUpdate.IsZero() {
		if resp.NextUpdate.Before(resp.ThisUpdate) {
			return nil, badOCSP("nextUpdate precedes thisUpdate")
		}
		if resp.NextUpdate.Before(now.Add(-OCSPClockSkew)) {
			return nil, badOCSP("out of date: nextUpdate %s has passed", resp.NextUpdate.UTC().Format(time.RFC3339))
		}
	} else if resp.ThisUpdate.Before(now.Add(-maxAge)) {
		return nil, badOCSP("out of date: thisUpdate %s is older than %s and no nextUpdate is given", resp.ThisUpdate.UTC().Format(time.RFC3339), maxAge)
	}
	switch resp.Status {
	case ocsp.Good:
		ans.Status = OCSPStatusGood
	case ocsp.Revoked:
		ans.Status = OCSPStatusRevoked
		ans.RevokedAt, ans.RevocationReason = resp.RevokedAt, resp.RevocationReason
	case ocsp.Unknown:
		ans.Status = OCSPStatusUnknown
	default:
		return nil, badOCSP("status %d", resp.Status)
	}
	return ans, nil
}

// checkDelegatedResponder checks a responder certificate that is not the
// issuer (RFC 6960 §4.2.2.2): issued and signed by the issuer, valid now,
// with id-kp-OCSPSigning. The parser has already checked that its key
// signed the response.
func checkDelegatedResponder(r, issuer *x509.Certificate, now time.Time) error {
	if !bytes.Equal(r.RawIssuer, issuer.RawSubject) {
		return badOCSP("responder certificate is not issued by the certificate's issuer")
	}
	if err := issuer.CheckSignature(r.SignatureAlgorithm, r.RawTBSCertificate, r.Signature); err != nil {
		return badOCSP("responder certificate is not signed by the certificate's issuer: %v", err)
	}
	if !slices.Contains(r.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return badOCSP("responder certificate lacks id-kp-OCSPSigning")
	}
	if now.Before(r.NotBefore) || now.After(r.NotAfter) {
		return badOCSP("responder certificate is not valid at %s (valid %s to %s)", now.UTC().Format(time.RFC3339),
			r.NotBefore.UTC().Format(time.RFC3339), r.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkCertID makes sure that the SingleResponse the parser chose (the
// first one with cert's serial) is about cert's issuer too: a responder
// serving several CAs signs answers for serials that other CAs also
// issued. golang.org/x/crypto/ocsp matches the serial only and does not
// return the CertID's hashes, so the responses are walked here.
func checkCertID(tbs []byte, h crypto.Hash, cert, issuer *x509.Certificate) error {
	if !h.Available() {
		return badOCSP("CertID hash %v unavailable", h)
	}
	keyBits, ok := subjectPublicKeyBits(issuer.RawSubjectPublicKeyInfo)
	if !ok {
		return badOCSP("issuer public key cannot be hashed")
	}
	hash := func(b []byte) []byte {
		d := h.New()
		d.Write(b)
		return d.Sum(nil)
	}
	wantName, wantKey := hash(issuer.RawSubject), hash(keyBits)

	in := cryptobyte.String(tbs)
	var data, responses cryptobyte.String
	if !in.ReadASN1(&data, cbasn1.SEQUENCE) ||
		!data.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!data.SkipASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) && !data.SkipASN1(cbasn1.Tag(2).Constructed().ContextSpecific()) ||
		!data.SkipASN1(cbasn1.GeneralizedTime) ||
		!data.ReadASN1(&responses, cbasn1.SEQUENCE) {
		return badOCSP("malformed ResponseData")
	}
	for !responses.Empty() {
		var single, certID cryptobyte.String
		var nameHash, keyHash []byte
		serial := new(big.Int)
		if !responses.ReadASN1(&single, cbasn1.SEQUENCE) ||
			!single.ReadASN1(&certID, cbasn1.SEQUENCE) ||
			!certID.SkipASN1(cbasn1.SEQUENCE) ||
			!certID.ReadASN1Bytes(&nameHash, cbasn1.OCTET_STRING) ||
			!certID.ReadASN1Bytes(&keyHash, cbasn1.OCTET_STRING) ||
			!certID.ReadASN1Integer(serial) {
			return badOCSP("malformed SingleResponse")
		}
		if serial.Cmp(cert.SerialNumber) != 0 {
			continue
		}
		if !bytes.Equal(nameHash, wantName) || !bytes.Equal(keyHash, wantKey) {
			return badOCSP("response is for serial %s of another issuer", serial)
		}
		return nil
	}
	return badOCSP("no response for serial %s", cert.SerialNumber)
}

// subjectPublicKeyBits returns the subjectPublicKey BIT STRING's bytes of
// a SubjectPublicKeyInfo: what an OCSP CertID's issuerKeyHash hashes.
func subjectPublicKeyBits(spki []byte) ([]byte, bool) {
	in := cryptobyte.String(spki)
	var info cryptobyte.String
	var bits asn1.BitString
	ok := in.ReadASN1(&info, cbasn1.SEQUENCE) &&
		info.SkipASN1(cbasn1.SEQUENCE) &&
		info.ReadASN1BitString(&bits)
	return bits.Bytes, ok
}
