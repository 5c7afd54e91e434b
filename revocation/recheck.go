package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// CertRef is what a running session keeps of one certificate of its
// chain to re-check it later: about 100 bytes, not the parsed
// certificate. Issuer is shared, not copied: it is the issuer of the
// verified chain, which the trust store (a root) or the connection's TLS
// state (an intermediate the client sent) holds anyway.
type CertRef struct {
	// IssuerKeyHash is the SHA-256 of the issuer's SubjectPublicKeyInfo.
	IssuerKeyHash [32]byte
	// Serial is the serial number as a key (a sign byte, then the
	// magnitude's bytes).
	Serial   string
	NotAfter time.Time
	// Issuer verifies OCSP answers and configured CRLs about the
	// certificate.
	Issuer *x509.Certificate
	// OCSPURL is the responder the certificate's Authority Information
	// Access names; "" for none.
	OCSPURL string
}

// Refs returns the CertRefs of a verified chain (leaf first), every
// certificate but the root, which is a configured trust anchor.
func Refs(chain []*x509.Certificate) []CertRef {
	if len(chain) < 2 {
		return nil
	}
	out := make([]CertRef, len(chain)-1)
	for i := range out {
		out[i] = CertRef{
			IssuerKeyHash: issuerKey(chain[i+1]),
			Serial:        serialKey(chain[i].SerialNumber),
			NotAfter:      chain[i].NotAfter,
			Issuer:        chain[i+1],
			OCSPURL:       certauth.OCSPResponderURL(chain[i]),
		}
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

// ConfiguredCRLs answers for the configured CRLs of the CA set that
// verified the chain (ssl_crl_file and ssl_crl_dir, or the set's
// crl_file and crl_dir), as the configuration in force loads that set:
// whether one of them, signed by r.Issuer, lists r's serial. Another
// set's CRLs never apply, as at login.
type ConfiguredCRLs interface {
	Revoked(r CertRef) bool
}

// SerialOf is r's serial number.
func (r CertRef) SerialOf() *big.Int { return serialFromKey(r.Serial) }

// Recheck answers for a running session's certificates from what is
// already held (cached OCSP answers and fetched CRLs), without any
// request: it costs map lookups, so a sweep over every session is cheap.
// It returns the verdict and, for Revoked, the index in refs of the
// revoked certificate (-1 otherwise). Expiry (NotAfter) is the caller's
// to check. A fetched CRL counts as current until its nextUpdate plus
// p.CRLGrace; a revocation it lists counts whatever its age.
func (c *Checker) Recheck(refs []CertRef, p Policy) (Status, int) {
	return c.RecheckWith(refs, p, nil)
}

// RecheckWith is Recheck that also asks the configured CRLs, which
// revoke as at login: a certificate they list is Revoked whatever OCSP or
// a fetched CRL says. (They never make a certificate Good: at login they
// apply on top of the other sources.)
func (c *Checker) RecheckWith(refs []CertRef, p Policy, configured ConfiguredCRLs) (Status, int) {
	if configured != nil {
		for i, r := range refs {
			if configured.Revoked(r) {
				return Revoked, i
			}
		}
	}
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

// SetOnCRLUpdate sets Options.OnCRLUpdate on a Checker already built.
// Call it before the first Check: only a fetched CRL (which a Check
// causes) makes the refresh goroutine read it.
func (c *Checker) SetOnCRLUpdate(f func()) { c.opts.OnCRLUpdate = f }

// OCSPPass re-asks the OCSP responders about running sessions'
// certificates: one pass of the periodic recheck. Within a pass each
// certificate is asked once, however many sessions use it.
type OCSPPass struct {
	c    *Checker
	seen map[ocspKey]answer
	// failed lists the responders that gave no answer in this pass:
	// they are not asked again before the next, so that a dead
	// responder costs a pass one timeout, not one per certificate.
	failed map[string]bool
}

// NewOCSPPass starts a recheck pass.
func (c *Checker) NewOCSPPass() *OCSPPass {
	return &OCSPPass{c: c, seen: make(map[ocspKey]answer), failed: make(map[string]bool)}
}

// Recheck asks the responder about each certificate of refs that p
// would have asked about at login (all of them under Require; under
// Prefer the leaf and those naming a responder), skipping the cache: the
// point is to learn of a revocation newer than the cached answer. A fresh
// answer is cached for logins as usual. Only a verified "revoked" makes
// the verdict Revoked; a responder that is down, slow or answers badly
// leaves it Unknown, which never ends a session. A responder that failed
// in the last few seconds is not asked again.
func (o *OCSPPass) Recheck(ctx context.Context, refs []CertRef, p Policy) (Status, int) {
	if p.OCSP == Off {
		return Unknown, -1
	}
	allGood := true
	for i, r := range refs {
		if p.OCSP == Prefer && i > 0 && r.OCSPURL == "" {
			continue
		}
		url := p.Responder
		if url == "" {
			url = r.OCSPURL
		}
		key := ocspKey{issuer: r.IssuerKeyHash, serial: r.Serial}
		ans, ok := o.seen[key]
		if !ok {
			ans = o.ask(ctx, r, url, key, p)
			o.seen[key] = ans
		}
		switch ans {
		case ansRevoked:
			return Revoked, i
		case ansGood:
		default:
			allGood = false
		}
	}
	if allGood {
		return Good, -1
	}
	return Unknown, -1
}

func (o *OCSPPass) ask(ctx context.Context, r CertRef, url string, key ocspKey, p Policy) answer {
	c := o.c
	if url == "" || r.Issuer == nil || o.failed[url] {
		return ansUnavailable
	}
	c.omu.RLock()
	downUntil := c.down[url]
	c.omu.RUnlock()
	if c.now().Before(downUntil) {
		c.obs.Checked("ocsp", ansUnavailable.String())
		return ansUnavailable
	}
	// Only the serial of the certificate itself is needed to ask and to
	// match the answer; the issuer does the rest.
	cert := &x509.Certificate{SerialNumber: serialFromKey(r.Serial)}
	v, err := c.shared(ctx, ocspFlight(url, key), p.timeout(), nil, func(fctx context.Context) (any, error) {
		return c.fetchOCSP(fctx, cert, r.Issuer, url, key, p)
	})
	a := ansUnavailable
	switch {
	case err == nil:
		a = statusAnswer(v.(*certauth.OCSPAnswer).Status)
	case errors.Is(err, certauth.ErrBadOCSPResponse) || errors.Is(err, errTooLarge):
		a = ansBad
	default:
		o.failed[url] = true
	}
	c.obs.Checked("ocsp", a.String())
	return a
}
