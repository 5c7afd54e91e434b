package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// responderBackoff is how long a responder that gave no answer (refused,
// timed out, HTTP error) is not asked again: logins meanwhile get "no
// usable answer" at once instead of each waiting out ssl_ocsp_timeout.
const responderBackoff = 5 * time.Second

type ocspKey struct {
	issuer [32]byte
	serial string
}

type ocspEntry struct {
	status    certauth.OCSPStatus
	revokedAt time.Time
	expires   time.Time
}

// ocspCheck answers for cert from the cache or the responder at url.
func (c *Checker) ocspCheck(ctx context.Context, cert, issuer *x509.Certificate, url string, p Policy) sourceResult {
	if url == "" {
		c.obs.Checked("ocsp", ansUnavailable.String())
		return sourceResult{ans: ansUnavailable, err: errors.New("the certificate names no OCSP responder")}
	}
	key := ocspKey{issuer: issuerKey(issuer), serial: serialKey(cert.SerialNumber)}
	now := c.now()
	if e, ok := c.cachedOCSP(key, now); ok {
		return c.ocspFromCache(e)
	}
	c.omu.RLock()
	downUntil := c.down[url]
	c.omu.RUnlock()
	if now.Before(downUntil) {
		c.obs.Checked("ocsp", ansUnavailable.String())
		return sourceResult{ans: ansUnavailable, err: fmt.Errorf("responder %s failed in the last %s", url, responderBackoff)}
	}
	cached := func() (any, bool) { return c.cachedOCSP(key, c.now()) }
	v, err := c.shared(ctx, ocspFlight(url, key), p.timeout(), cached, func(fctx context.Context) (any, error) {
		return c.fetchOCSP(fctx, cert, issuer, url, key, p)
	})
	var r sourceResult
	switch {
	case err == nil:
		switch a := v.(type) {
		case ocspEntry: // cached by a request that ended meanwhile
			return c.ocspFromCache(a)
		case *certauth.OCSPAnswer:
			r.ans = statusAnswer(a.Status)
		}
	case errors.Is(err, certauth.ErrBadOCSPResponse) || errors.Is(err, errTooLarge):
		r = sourceResult{ans: ansBad, err: err}
	default:
		r = sourceResult{ans: ansUnavailable, err: err}
	}
	c.obs.Checked("ocsp", r.ans.String())
	return r
}

func statusAnswer(s certauth.OCSPStatus) answer {
	switch s {
	case certauth.OCSPStatusGood:
		return ansGood
	case certauth.OCSPStatusRevoked:
		return ansRevoked
	}
	return ansUnknown
}

// cachedOCSP is the cached answer for key, if one is there and fresh.
func (c *Checker) cachedOCSP(key ocspKey, now time.Time) (ocspEntry, bool) {
	c.omu.RLock()
	e, hit := c.ocsp[key]
	c.omu.RUnlock()
	return e, hit && now.Before(e.expires)
}

// ocspFromCache is the result of a cached answer.
func (c *Checker) ocspFromCache(e ocspEntry) sourceResult {
	r := sourceResult{ans: statusAnswer(e.status), cached: true}
	c.obs.Checked("cache", r.ans.String())
	return r
}

// ocspFlight is the key of the shared request for key's answer from url.
func ocspFlight(url string, key ocspKey) string {
	return "ocsp\x00" + url + "\x00" + string(key.issuer[:]) + key.serial
}

// fetchOCSP asks the responder, verifies the answer and caches it until
// its nextUpdate, capped by the policy's cache age.
func (c *Checker) fetchOCSP(ctx context.Context, cert, issuer *x509.Certificate, url string, key ocspKey, p Policy) (*certauth.OCSPAnswer, error) {
	req, err := certauth.NewOCSPRequest(cert, issuer)
	if err != nil {
		return nil, err
	}
	c.ocspFetches.Add(1)
	start := time.Now()
	body, err := c.fetch(ctx, "POST", url, req, "application/ocsp-request", certauth.MaxOCSPResponseSize)
	c.obs.OCSPRoundTrip(time.Since(start))
	if err != nil {
		if isHTTPError(err) && c.base.Err() == nil {
			now := c.now()
			c.omu.Lock()
			for u, t := range c.down {
				if !now.Before(t) {
					delete(c.down, u)
				}
			}
			c.down[url] = now.Add(responderBackoff)
			c.omu.Unlock()
		}
		return nil, fmt.Errorf("OCSP responder %s: %w", url, err)
	}
	now := c.now()
	maxAge := p.CacheMaxAge
	if maxAge <= 0 {
		// Without a nextUpdate, an answer older than this is a replay.
		maxAge = time.Hour
	}
	ans, err := certauth.VerifyOCSPResponse(body, cert, issuer, now, maxAge)
	if err != nil {
		return nil, fmt.Errorf("OCSP responder %s: %w", url, err)
	}
	if !ans.NextUpdate.IsZero() && p.CacheMaxAge > 0 {
		exp := now.Add(p.CacheMaxAge)
		if ans.NextUpdate.Before(exp) {
			exp = ans.NextUpdate
		}
		c.store(key, ocspEntry{status: ans.Status, revokedAt: ans.RevokedAt, expires: exp}, now)
	}
	return ans, nil
}

// store caches an answer, making room when the cache is full: expired
// answers go first, then arbitrary ones (Go's map order), so the cache
// stays bounded whatever certificates clients present.
func (c *Checker) store(key ocspKey, e ocspEntry, now time.Time) {
	c.omu.Lock()
	defer c.omu.Unlock()
	if _, ok := c.ocsp[key]; !ok && len(c.ocsp) >= c.opts.CacheSize {
		for k, v := range c.ocsp {
			if !now.Before(v.expires) {
				delete(c.ocsp, k)
			}
		}
		for k := range c.ocsp {
			if len(c.ocsp) < c.opts.CacheSize {
				break
			}
			delete(c.ocsp, k)
		}
	}
	c.ocsp[key] = e
}
