package testpki

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"
)

// WithOCSPServer adds OCSP responder URLs to the certificate's Authority
// Information Access extension.
func WithOCSPServer(urls ...string) Option {
	return func(o *options) { o.ocspServers = append(o.ocspServers, urls...) }
}

// WithCRLDistributionPoints adds CRL distribution point URLs (each a
// fullName URI, without cRLIssuer or reasons).
func WithCRLDistributionPoints(urls ...string) Option {
	return func(o *options) { o.crlDPs = append(o.crlDPs, urls...) }
}

// NewOCSPResponder issues a delegated OCSP responder certificate: EKU
// id-kp-OCSPSigning unless opts replace it (WithEKU), so that tests can
// issue one without it too.
func (ca *CA) NewOCSPResponder(cn string, opts ...Option) (*Leaf, error) {
	opts = append([]Option{WithEKU(x509.ExtKeyUsageOCSPSigning)}, opts...)
	return ca.newLeaf(pkix.Name{CommonName: cn}, opts)
}

// OCSPResponse is the status of one certificate in [CA.OCSPResponse].
type OCSPResponse struct {
	// Status is ocsp.Good, ocsp.Revoked or ocsp.Unknown.
	Status int
	// Serial is the certificate's serial number.
	Serial *big.Int
	// ThisUpdate and NextUpdate; a zero NextUpdate is left out.
	ThisUpdate, NextUpdate time.Time
	// RevokedAt for ocsp.Revoked.
	RevokedAt time.Time
}

// OCSPResponse signs a DER OCSP response about a certificate ca issued.
// responder is nil for a response signed by ca itself, or a delegated
// responder (its certificate is embedded).
func (ca *CA) OCSPResponse(r OCSPResponse, responder *Leaf) ([]byte, error) {
	tmpl := ocsp.Response{
		Status:       r.Status,
		SerialNumber: r.Serial,
		ThisUpdate:   r.ThisUpdate,
		NextUpdate:   r.NextUpdate,
		RevokedAt:    r.RevokedAt,
	}
	var signer crypto.Signer = ca.Key
	respCert := ca.Cert
	if responder != nil {
		signer = responder.Key
		respCert = responder.Cert
		tmpl.Certificate = responder.Cert
	}
	der, err := ocsp.CreateResponse(ca.Cert, respCert, tmpl, signer)
	if err != nil {
		return nil, fmt.Errorf("testpki: OCSP response: %w", err)
	}
	return der, nil
}
