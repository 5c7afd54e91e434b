package revocation

import (
	"crypto/x509"
	"time"
)

// CertRef is what a running session keeps of one certificate of its
// chain to re-check it later: about 80 bytes, not the parsed certificate.
type CertRef struct {
	// IssuerKeyHash is the SHA-256 of the issuer's SubjectPublicKeyInfo.
	IssuerKeyHash [32]byte
	// Serial is the serial number as a key (a sign byte, then the
	// magnitude's bytes).
	Serial   string
	NotAfter time.Time
}

// Refs returns the CertRefs of a verified chain (leaf first), every
// certificate but the root, which is a configured trust anchor.
func Refs(chain []*x509.Certificate) []CertRef {
	if len(chain) < 2 {
		return nil
	}
	out := make([]CertRef, len(chain)-1)
	for i := range out {
		out[i] = CertRef{IssuerKeyHash: issuerKey(chain[i+1]), Serial: serialKey(chain[i].SerialNumber), NotAfter: chain[i].NotAfter}
	}
	return out
}

// Status is a re-check's verdict.
type Status int

// Re-check verdicts.
const (
	// Unknown: no fresh information for some certificate, and none says
	// revoked. A session is never ended for it.
	Unknown Status = iota
	// Good: every certificate has a fresh OCSP "good" or is absent from a
	// current fetched CRL of its issuer.
	Good
	// Revoked: a cached OCSP answer or a fetched CRL revokes one of the
	// certificates.
	Revoked
)

func (s Status) String() string {
	switch s {
	case Good:
		return "good"
	case Revoked:
		return "revoked"
	}
	return "unknown"
}

// Recheck answers for a running session's certificates from what is
// already held (cached OCSP answers and fetched CRLs), without any
// request: it costs map lookups, so a sweep over every session is cheap.
// It returns the verdict and, for Revoked, the index in refs of the
// revoked certificate (-1 otherwise). Expiry (NotAfter) is the caller's
// to check. A fetched CRL counts as current until its nextUpdate plus
// p.CRLGrace; a revocation it lists counts whatever its age.
func (c *Checker) Recheck(refs []CertRef, p Policy) (Status, int) {
	now := c.now()
	good := make([]bool, len(refs))
	c.omu.RLock()
	for i, r := range refs {
		e, ok := c.ocsp[ocspKey{issuer: r.IssuerKeyHash, serial: r.Serial}]
		if !ok || !now.Before(e.expires) {
			continue
		}
		switch statusAnswer(e.status) {
		case ansRevoked:
			c.omu.RUnlock()
			return Revoked, i
		case ansGood:
			good[i] = true
		}
	}
	c.omu.RUnlock()
	c.cmu.Lock()
	defer c.cmu.Unlock()
	for _, e := range c.crls {
		if e.crl == nil {
			continue
		}
		current := !c.crlStale(e.crl, p, now)
		for i, r := range refs {
			if r.IssuerKeyHash != e.issuerKey {
				continue
			}
			if e.crl.Revoked(serialFromKey(r.Serial)) {
				return Revoked, i
			}
			if current {
				good[i] = true
			}
		}
	}
	for _, g := range good {
		if !g {
			return Unknown, -1
		}
	}
	return Good, -1
}
