package certauth

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"sync"
	"time"
)

// FetchedCRL is a CRL downloaded from a certificate's CRL distribution
// point, parsed once and checked against many chains. It is checked with
// the rules ssl_crl_file's CRLs follow (issuer name, AKID, issuing
// distribution point scope, the issuer's cRLSign key usage, signature,
// critical extensions), except its validity period, which the caller
// judges: a fetched CRL may be used for a grace period past its
// nextUpdate when no newer one can be had. It is safe for concurrent use.
type FetchedCRL struct {
	info *crlInfo
	mu   sync.Mutex
	// verified holds the issuer certificates (SHA-256 of their DER) whose
	// key this CRL's signature verified with: a signature is checked once
	// per issuer, not at every login.
	verified map[[32]byte]bool
}

// ParseFetchedCRL parses a downloaded CRL, DER or PEM (the first "X509
// CRL" block; distribution points serve either). X.509 v1 and v2 CRLs are
// read, as for ssl_crl_file.
func ParseFetchedCRL(data []byte) (*FetchedCRL, error) {
	der := data
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN")) {
		der = nil
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "X509 CRL" {
				der = b.Bytes
				break
			}
		}
		if der == nil {
			return nil, errors.New("no X509 CRL block in PEM data")
		}
	}
	rl, err := parseCRL(der)
	if err != nil {
		return nil, err
	}
	ci, err := newCRLInfo(rl)
	if err != nil {
		return nil, err
	}
	return &FetchedCRL{info: ci, verified: make(map[[32]byte]bool)}, nil
}

// ThisUpdate is the CRL's issue time.
func (c *FetchedCRL) ThisUpdate() time.Time { return c.info.crl.ThisUpdate }

// NextUpdate is when the next CRL is due; zero when the CRL names none.
func (c *FetchedCRL) NextUpdate() time.Time { return c.info.crl.NextUpdate }

// Number is the CRL number extension, nil when absent.
func (c *FetchedCRL) Number() *big.Int { return c.info.crl.Number }

// Revoked reports whether the CRL lists serial (and not as
// removeFromCRL). It checks nothing else: use it only with a CRL whose
// signature has been verified for the certificate's issuer, as Check and
// VerifyIssuer do.
func (c *FetchedCRL) Revoked(serial *big.Int) bool { return c.info.isRevoked(serial) }

// VerifyIssuer checks that issuer issued and signed the CRL: the CRL's
// issuer name is issuer's subject, issuer may sign CRLs (keyUsage
// cRLSign when the extension is present), and the signature verifies
// with issuer's key. The CRL must also carry no critical extension
// OpenSSL does not handle. A success is remembered per issuer.
func (c *FetchedCRL) VerifyIssuer(issuer *x509.Certificate) error {
	ci, err := newCertInfo(issuer)
	if err != nil {
		return &VerifyError{Reason: UnableToGetCRLIssuer, Err: err}
	}
	if !bytes.Equal(ci.subject, c.info.issuer) {
		return &VerifyError{Reason: UnableToGetCRL, Err: errors.New("CRL issuer name differs from the certificate's issuer")}
	}
	if err := c.verifyWith(ci); err != nil {
		return err
	}
	return nil
}

func (c *FetchedCRL) verifyWith(issuer *certInfo) *VerifyError {
	if issuer.hasKU && issuer.ku&kuCRLSign == 0 {
		return &VerifyError{Reason: KeyUsageNoCRLSign}
	}
	if c.info.critical {
		return &VerifyError{Reason: UnhandledCriticalCRLExtension}
	}
	key := sha256.Sum256(issuer.cert.Raw)
	c.mu.Lock()
	ok := c.verified[key]
	c.mu.Unlock()
	if ok {
		return nil
	}
	rl := c.info.crl
	if err := issuer.cert.CheckSignature(rl.SignatureAlgorithm, rl.RawTBSRevocationList, rl.Signature); err != nil {
		return &VerifyError{Reason: CRLSignatureFailure, Err: err}
	}
	c.mu.Lock()
	c.verified[key] = true
	c.mu.Unlock()
	return nil
}

// Check checks chain[i] (chain verified, leaf first, ending at its root)
// against the CRL: the CRL must be in scope for it as x509_vfy.c's
// get_crl_score and check_crl decide for a configured CRL, and issued and
// signed by its issuer (VerifyIssuer). It returns nil when the
// certificate is not revoked, a *VerifyError with CertRevoked when it is,
// and a *VerifyError with another reason when the CRL cannot be used for
// it. The CRL's validity period is not checked.
func (c *FetchedCRL) Check(chain []*x509.Certificate, i int) error {
	if i < 0 || i >= len(chain) {
		return &VerifyError{Reason: UnableToGetCRL, Depth: i, Err: errors.New("no such certificate in the chain")}
	}
	infos := make([]*certInfo, len(chain))
	for k, x := range chain {
		ci, err := newCertInfo(x)
		if err != nil {
			return &VerifyError{Reason: Unparseable, Depth: k, Err: err}
		}
		infos[k] = ci
	}
	// The time given makes the score's time bit always set: validity is
	// the caller's to judge (grace period).
	score, issuer, _ := crlScore(c.info, infos, i, 0, c.info.crl.ThisUpdate)
	if score == 0 {
		return &VerifyError{Reason: UnableToGetCRL, Depth: i, Err: errors.New("CRL does not match the certificate's issuer")}
	}
	if score&scoreScope == 0 {
		return &VerifyError{Reason: DifferentCRLScope, Depth: i}
	}
	if issuer == nil {
		// As check_crl: the next certificate up, or the top one when it
		// issued itself.
		if i < len(infos)-1 {
			issuer = infos[i+1]
		} else {
			issuer = infos[len(infos)-1]
			if !likelyIssued(issuer, issuer) {
				return &VerifyError{Reason: UnableToGetCRLIssuer, Depth: i}
			}
		}
	}
	if err := c.verifyWith(issuer); err != nil {
		err.Depth = i
		return err
	}
	if c.info.isRevoked(chain[i].SerialNumber) {
		return &VerifyError{Reason: CertRevoked, Depth: i}
	}
	return nil
}

// HTTPDistributionPoints returns cert's CRL distribution point URLs that
// can be fetched: plain http ones, in the certificate's order. Others
// (ldap, https, file) are left out: fetching is limited to http so that
// a URL in a client-supplied certificate reaches no other protocol, and
// https would need a trust store for the distribution point itself.
func HTTPDistributionPoints(cert *x509.Certificate) []string {
	return httpURLs(cert.CRLDistributionPoints)
}

// OCSPResponderURL returns the first http OCSP responder URL of cert's
// Authority Information Access, "" when it names none.
func OCSPResponderURL(cert *x509.Certificate) string {
	if u := httpURLs(cert.OCSPServer); len(u) > 0 {
		return u[0]
	}
	return ""
}

func httpURLs(in []string) []string {
	var out []string
	for _, s := range in {
		if u, err := url.Parse(s); err == nil && u.Scheme == "http" && u.Host != "" && u.User == nil {
			out = append(out, s)
		}
	}
	return out
}
