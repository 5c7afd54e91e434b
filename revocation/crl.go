package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// unusedCRLTTL is how long a fetched CRL no login has needed is still
// refreshed; after that it is dropped, and fetched again when needed.
const unusedCRLTTL = 24 * time.Hour

// maxBackoff caps the wait between attempts at a distribution point that
// fails, or that keeps serving the CRL already held.
const maxBackoff = 5 * time.Minute

// crlEntry is one distribution point's CRL: the last good one, and when
// to fetch it next.
type crlEntry struct {
	url       string
	crl       *certauth.FetchedCRL // last good CRL, nil until one is fetched
	issuer    *x509.Certificate    // the CA whose key verified crl; refreshes must verify with it too
	issuerKey [32]byte
	fetchedAt time.Time // of crl
	lastUsed  time.Time
	policy    Policy // of the last login that needed it: limits for refreshes
	// nextRefresh is when the refresh goroutine fetches again; for an
	// entry with no CRL yet, the earliest a login may try again.
	nextRefresh time.Time
	failures    int // consecutive failed fetches
	unchanged   int // consecutive fetches that brought no newer CRL
	lastErr     error
	refreshing  bool
}

// crlCheck checks chain[i] against the CRLs of its http distribution
// points, in order, until one answers.
func (c *Checker) crlCheck(ctx context.Context, chain []*x509.Certificate, i int, p Policy) sourceResult {
	urls := certauth.HTTPDistributionPoints(chain[i])
	if len(urls) == 0 {
		return sourceResult{}
	}
	var errs []error
	var stale error
	for _, u := range urls {
		crl, err := c.crlFor(ctx, u, chain[i+1], p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		err = crl.Check(chain, i)
		if ve, ok := errors.AsType[*certauth.VerifyError](err); ok && ve.Reason == certauth.CertRevoked {
			// Revocation is final: a CRL past its date still proves it.
			c.obs.Checked("crl", ansRevoked.String())
			return sourceResult{ans: ansRevoked, err: fmt.Errorf("listed in the CRL from %s", u)}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		if c.crlStale(crl, p, c.now()) {
			stale = fmt.Errorf("%s: CRL's nextUpdate %s plus ssl_crl_grace %s has passed", u, crl.NextUpdate().UTC().Format(time.RFC3339), p.CRLGrace)
			continue
		}
		c.obs.Checked("crl", ansGood.String())
		return sourceResult{ans: ansGood}
	}
	if stale != nil {
		c.obs.Checked("crl", ansStale.String())
		return sourceResult{ans: ansStale, err: errors.Join(append([]error{stale}, errs...)...)}
	}
	c.obs.Checked("crl", ansUnavailable.String())
	return sourceResult{ans: ansUnavailable, err: errors.Join(errs...)}
}

func (c *Checker) crlStale(crl *certauth.FetchedCRL, p Policy, now time.Time) bool {
	nu := crl.NextUpdate()
	return !nu.IsZero() && now.After(nu.Add(p.CRLGrace))
}

// crlFor returns the distribution point's last good CRL, fetching it when
// there is none yet (shared with concurrent logins). After a failed first
// fetch, logins get the error without a request until the back-off ends.
func (c *Checker) crlFor(ctx context.Context, url string, issuer *x509.Certificate, p Policy) (*certauth.FetchedCRL, error) {
	now := c.now()
	c.cmu.Lock()
	e := c.entry(url, now)
	e.lastUsed, e.policy = now, p
	crl, retry, lastErr := e.crl, e.nextRefresh, e.lastErr
	c.cmu.Unlock()
	if crl != nil {
		return crl, nil
	}
	if now.Before(retry) && lastErr != nil {
		return nil, fmt.Errorf("last attempt failed, next one after %s: %w", retry.UTC().Format(time.RFC3339), lastErr)
	}
	cached := func() (any, bool) {
		c.cmu.Lock()
		defer c.cmu.Unlock()
		if e, ok := c.crls[url]; ok && e.crl != nil {
			return e.crl, true
		}
		return nil, false
	}
	v, err := c.shared(ctx, crlFlight(url), p.timeout(), cached, func(fctx context.Context) (any, error) {
		return c.fetchCRL(fctx, url, issuer, p)
	})
	if err != nil {
		return nil, err
	}
	return v.(*certauth.FetchedCRL), nil
}

// crlFlight is the key of the shared request for url's CRL.
func crlFlight(url string) string { return "crl\x00" + url }

// entry returns url's entry, adding one (and evicting the least recently
// used beyond MaxCRLs). c.cmu is held.
func (c *Checker) entry(url string, now time.Time) *crlEntry {
	if e, ok := c.crls[url]; ok {
		return e
	}
	if len(c.crls) >= c.opts.MaxCRLs {
		var oldest *crlEntry
		for _, e := range c.crls {
			if oldest == nil || e.lastUsed.Before(oldest.lastUsed) {
				oldest = e
			}
		}
		delete(c.crls, oldest.url)
	}
	e := &crlEntry{url: url, lastUsed: now}
	c.crls[url] = e
	return e
}

// fetchCRL downloads url's CRL, verifies it with issuer and makes it the
// entry's CRL when it is at least as new as the one held (an older one
// would undo revocations: a replay). Failures keep the last good CRL and
// schedule the next attempt with exponential back-off.
func (c *Checker) fetchCRL(ctx context.Context, url string, issuer *x509.Certificate, p Policy) (*certauth.FetchedCRL, error) {
	c.crlFetches.Add(1)
	data, err := c.fetch(ctx, "GET", url, nil, "", p.crlMaxSize())
	var crl *certauth.FetchedCRL
	if err == nil {
		crl, err = certauth.ParseFetchedCRL(data)
	}
	if err == nil {
		err = crl.VerifyIssuer(issuer)
	}
	now := c.now()
	c.cmu.Lock()
	e := c.entry(url, now)
	newer := true
	if err == nil && e.crl != nil {
		switch cmpCRL(crl, e.crl) {
		case -1:
			err = fmt.Errorf("CRL issued %s is older than the one in use (%s)", crl.ThisUpdate().UTC().Format(time.RFC3339), e.crl.ThisUpdate().UTC().Format(time.RFC3339))
		case 0:
			newer = false
		}
	}
	if err != nil {
		e.failures++
		e.lastErr = err
		e.nextRefresh = now.Add(backoff(e.failures))
		c.cmu.Unlock()
		return nil, err
	}
	// A CRL installed for the first time counts as much as a newer one:
	// a session admitted while its point was unreachable (accepted as
	// crl_unavailable) must be rechecked against it too.
	installed := newer
	e.failures, e.lastErr = 0, nil
	if newer {
		e.crl, e.issuer, e.issuerKey, e.fetchedAt, e.unchanged = crl, issuer, issuerKey(issuer), now, 0
		e.nextRefresh = refreshAt(crl, now)
	} else {
		// The point still serves the CRL we hold: its successor is not
		// out yet. Ask again, less and less often.
		e.unchanged++
		crl = e.crl
		e.fetchedAt = now
		e.nextRefresh = now.Add(backoff(e.unchanged))
		if t := refreshAt(crl, now); t.After(e.nextRefresh) {
			e.nextRefresh = t
		}
	}
	c.cmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if installed && c.opts.OnCRLUpdate != nil {
		c.opts.OnCRLUpdate()
	}
	return crl, nil
}

// cmpCRL orders two CRLs of one point by thisUpdate, then CRL number.
func cmpCRL(a, b *certauth.FetchedCRL) int {
	if c := a.ThisUpdate().Compare(b.ThisUpdate()); c != 0 {
		return c
	}
	if a.Number() != nil && b.Number() != nil {
		return a.Number().Cmp(b.Number())
	}
	return 0
}

// refreshAt is when to fetch a CRL's successor: a quarter of its
// lifetime, at most an hour, before its nextUpdate, and never sooner than
// a second from now. A CRL without nextUpdate is fetched again hourly.
func refreshAt(crl *certauth.FetchedCRL, now time.Time) time.Time {
	nu := crl.NextUpdate()
	if nu.IsZero() {
		return now.Add(time.Hour)
	}
	lead := min(nu.Sub(crl.ThisUpdate())/4, time.Hour)
	t := nu.Add(-lead)
	if floor := now.Add(time.Second); t.Before(floor) {
		return floor
	}
	return t
}

func backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > 10 {
		return maxBackoff
	}
	return min(time.Second<<(n-1), maxBackoff)
}

// refreshLoop refreshes fetched CRLs before their nextUpdate, in the
// background: a login finds a current CRL instead of waiting for one.
func (c *Checker) refreshLoop() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := c.startRefreshes()
		timer.Reset(max(next.Sub(c.now()), 0))
		select {
		case <-c.base.Done():
			return
		case <-c.wake:
		case <-timer.C:
		}
	}
}

// startRefreshes starts a refresh of every CRL that is due, each in its
// own goroutine, and returns when the next one is due.
func (c *Checker) startRefreshes() time.Time {
	now := c.now()
	next := now.Add(time.Hour)
	var due []*crlEntry
	c.cmu.Lock()
	for url, e := range c.crls {
		if e.crl == nil || e.refreshing {
			continue
		}
		if now.Sub(e.lastUsed) > unusedCRLTTL {
			delete(c.crls, url)
			continue
		}
		if !now.Before(e.nextRefresh) {
			e.refreshing = true
			due = append(due, e)
		} else if e.nextRefresh.Before(next) {
			next = e.nextRefresh
		}
	}
	c.cmu.Unlock()
	for _, e := range due {
		c.cmu.Lock()
		url, issuer, p := e.url, e.issuer, e.policy
		c.cmu.Unlock()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			_, _ = c.shared(c.base, crlFlight(url), p.timeout(), nil, func(fctx context.Context) (any, error) {
				return c.fetchCRL(fctx, url, issuer, p)
			})
			c.cmu.Lock()
			e.refreshing = false
			c.cmu.Unlock()
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}()
	}
	return next
}

// CRLState describes one fetched CRL, for metrics.
type CRLState struct {
	URL                    string
	ThisUpdate, NextUpdate time.Time
	// FetchedAt is the last successful download.
	FetchedAt time.Time
	// Failures counts the failed attempts since.
	Failures int
}

// FetchedCRLs lists the CRLs held, one per distribution point.
func (c *Checker) FetchedCRLs() []CRLState {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	var out []CRLState
	for _, e := range c.crls {
		if e.crl == nil {
			continue
		}
		out = append(out, CRLState{URL: e.url, ThisUpdate: e.crl.ThisUpdate(), NextUpdate: e.crl.NextUpdate(), FetchedAt: e.fetchedAt, Failures: e.failures})
	}
	return out
}

// Fetches returns how many OCSP requests and CRL downloads were made.
func (c *Checker) Fetches() (ocsp, crl int64) {
	return c.ocspFetches.Load(), c.crlFetches.Load()
}
