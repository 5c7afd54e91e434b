// Package revocation checks verified client certificate chains against
// OCSP responders and CRLs fetched from the certificates' distribution
// points: the fetching, caching and policy around certauth's pure
// verification of what is fetched.
//
// The URLs come from client-supplied certificates, so they invite request
// forgery: a Checker is only handed chains already verified to a
// configured root, fetches over plain http only, follows no redirect and
// caps every download's size and time.
package revocation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// Mode is ssl_ocsp.
type Mode int

// The ssl_ocsp values.
const (
	// Off asks no responder.
	Off Mode = iota
	// Prefer refuses on "revoked" and accepts on "good"; with no usable
	// answer a CRL decides when there is one, and otherwise the
	// connection is accepted and logged as unchecked.
	Prefer
	// Require refuses anything but a fresh, verified "good".
	Require
)

// ParseMode reads an ssl_ocsp value; "" is Off.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "off":
		return Off, nil
	case "prefer":
		return Prefer, nil
	case "require":
		return Require, nil
	}
	return Off, fmt.Errorf("%q (off, prefer or require)", s)
}

func (m Mode) String() string {
	switch m {
	case Prefer:
		return "prefer"
	case Require:
		return "require"
	}
	return "off"
}

// Policy is the configuration one check runs under. A reload may change
// it between two checks; the caches outlive it.
type Policy struct {
	// OCSP is ssl_ocsp.
	OCSP Mode
	// Responder is ssl_ocsp_responder: when set, every OCSP request goes
	// there instead of to the certificate's Authority Information Access
	// responder.
	Responder string
	// CRLFetch is ssl_crl_fetch: fetch the CRLs named by the
	// certificates' CRL distribution points.
	CRLFetch bool
	// ConfiguredCRL is true when ssl_crl_file or ssl_crl_dir is set: the
	// chain has then already been checked against them, and they decide
	// when OCSP gives no usable answer under Prefer.
	ConfiguredCRL bool
	// Timeout bounds each request (ssl_ocsp_timeout). Zero means 3s.
	Timeout time.Duration
	// CacheMaxAge caps how long an OCSP answer is cached, whatever its
	// nextUpdate (ssl_ocsp_cache_max_age). Zero disables the cache.
	CacheMaxAge time.Duration
	// CRLMaxSize caps a CRL download in bytes. Zero means 10 MiB.
	CRLMaxSize int64
	// CRLGrace is how long past its nextUpdate a fetched CRL is still
	// used when no newer one can be had (ssl_crl_grace).
	CRLGrace time.Duration
}

// Enabled reports whether the policy checks anything.
func (p Policy) Enabled() bool { return p.OCSP != Off || p.CRLFetch }

func (p Policy) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 3 * time.Second
	}
	return p.Timeout
}

func (p Policy) crlMaxSize() int64 {
	if p.CRLMaxSize <= 0 {
		return 10 << 20
	}
	return p.CRLMaxSize
}

// Observer receives the counts the server exports as metrics. Its methods
// are called from handshake goroutines and must not block.
type Observer interface {
	// Checked counts one certificate's check by one source: "ocsp" (a
	// request to the responder, possibly shared with concurrent logins),
	// "cache" (a cached OCSP answer) or "crl" (a fetched CRL). result is
	// "good", "revoked", "unknown", "unavailable", "bad_response" or
	// "stale".
	Checked(source, result string)
	// OCSPRoundTrip observes one OCSP HTTP exchange, successful or not.
	OCSPRoundTrip(d time.Duration)
}

// Options are a Checker's fixed limits. Zero values mean the defaults.
type Options struct {
	// MaxInFlight bounds concurrent OCSP and CRL requests. Default 32. A
	// request that finds no free slot within its timeout fails as
	// unavailable.
	MaxInFlight int
	// CacheSize bounds cached OCSP answers. Default 10000.
	CacheSize int
	// MaxCRLs bounds the distribution points whose CRLs are kept and
	// refreshed. Default 100.
	MaxCRLs int
	// Observer, when set, receives metrics.
	Observer Observer
	// OnCRLUpdate, when set, is called after a fetched CRL was installed:
	// the first one of its point, or a newer one replacing it (from the
	// goroutine that fetched it), for whoever re-checks running sessions.
	OnCRLUpdate func()
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Transport overrides the HTTP transport (tests). Its proxy settings
	// are the caller's business; the default uses no proxy.
	Transport http.RoundTripper
}

// Checker fetches and caches revocation information. It is safe for
// concurrent use; Close stops its background work.
type Checker struct {
	opts   Options
	obs    Observer
	client *http.Client
	sem    chan struct{}
	now    func() time.Time

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	fmu     sync.Mutex
	flights map[string]*flight
	closed  bool

	omu  sync.RWMutex
	ocsp map[ocspKey]ocspEntry
	down map[string]time.Time // responder URL → failing until
	cmu  sync.Mutex
	crls map[string]*crlEntry

	ocspFetches, crlFetches atomic.Int64
}

// New starts a Checker, with its CRL refresh goroutine.
func New(opts Options) *Checker {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 32
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 10000
	}
	if opts.MaxCRLs <= 0 {
		opts.MaxCRLs = 100
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tr := opts.Transport
	if tr == nil {
		tr = &http.Transport{
			// Never a proxy from the environment: the requests go where
			// the CA-signed certificate says.
			Proxy:                  nil,
			DialContext:            (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:    4,
			IdleConnTimeout:        30 * time.Second,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 16 << 10,
		}
	}
	c := &Checker{
		opts: opts,
		obs:  opts.Observer,
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errRedirect
			},
		},
		sem:     make(chan struct{}, opts.MaxInFlight),
		now:     opts.Now,
		wake:    make(chan struct{}, 1),
		flights: make(map[string]*flight),
		ocsp:    make(map[ocspKey]ocspEntry),
		down:    make(map[string]time.Time),
		crls:    make(map[string]*crlEntry),
	}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	c.base, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.refreshLoop()
	return c
}

// Close stops the refresh goroutine and every request in flight, and
// waits for them.
func (c *Checker) Close() {
	c.fmu.Lock()
	c.closed = true
	c.fmu.Unlock()
	c.cancel()
	c.wg.Wait()
	if t, ok := c.client.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

type nopObserver struct{}

func (nopObserver) Checked(string, string)      {}
func (nopObserver) OCSPRoundTrip(time.Duration) {}

// Result is the verdict on one chain.
type Result struct {
	// Err, when not nil, refuses the connection: a *certauth.VerifyError
	// whose Reason is OCSPRevoked, OCSPUnknown, OCSPUnavailable,
	// OCSPBadResponse, CRLStale, CRLUnavailable or CertRevoked (by a
	// fetched CRL).
	Err error
	// Outcome is for the audit log: "good" when every certificate that
	// was to be checked was, else the comma-separated notes that apply:
	// "unchecked" (a certificate had no usable OCSP answer and no CRL
	// covered it), "crl_stale", "crl_unavailable". For a refusal it is
	// the refusal's code. Empty when the policy checks nothing.
	Outcome string
	// Detail says what each source answered, certificate by certificate.
	Detail string
}

// answer is one source's verdict on one certificate.
type answer int

const (
	ansNone answer = iota // not asked
	ansGood
	ansRevoked
	ansUnknown
	ansUnavailable
	ansBad
	ansStale
)

func (a answer) String() string {
	return [...]string{"none", "good", "revoked", "unknown", "unavailable", "bad_response", "stale"}[a]
}

type sourceResult struct {
	ans    answer
	cached bool
	err    error
}

func (r sourceResult) describe() string {
	s := r.ans.String()
	if r.cached {
		s += " (cache)"
	}
	if r.err != nil {
		s += ": " + r.err.Error()
	}
	return s
}

// Check runs the policy on chain, verified and ordered leaf to root. The
// root, a configured trust anchor, is not checked. ctx bounds the whole
// check (the handshake's deadline); each request has its own timeout
// within it and runs detached from ctx, so that a login giving up does
// not waste the answer for the next one.
func (c *Checker) Check(ctx context.Context, chain []*x509.Certificate, p Policy) Result {
	if !p.Enabled() || len(chain) < 2 {
		return Result{}
	}
	var notes, details []string
	note := func(s string) {
		for _, n := range notes {
			if n == s {
				return
			}
		}
		notes = append(notes, s)
	}
	refuse := func(r certauth.Reason, depth int, err error) Result {
		ve := &certauth.VerifyError{Reason: r, Depth: depth, Err: err}
		code := r.RevocationCode()
		if code == "" {
			code = "crl_revoked"
		}
		return Result{Err: ve, Outcome: code, Detail: strings.Join(details, "; ")}
	}
	for i := 0; i < len(chain)-1; i++ {
		cert, issuer := chain[i], chain[i+1]
		var o, l sourceResult
		named := certauth.OCSPResponderURL(cert)
		url := p.Responder
		if url == "" {
			url = named
		}
		askOCSP := p.OCSP == Require || (p.OCSP == Prefer && (i == 0 || named != ""))
		if askOCSP {
			o = c.ocspCheck(ctx, cert, issuer, url, p)
		}
		if p.CRLFetch {
			l = c.crlCheck(ctx, chain, i, p)
		}
		details = append(details, fmt.Sprintf("depth %d: ocsp %s, fetched crl %s", i, o.describe(), l.describe()))
		switch {
		case o.ans == ansRevoked:
			return refuse(certauth.OCSPRevoked, i, o.err)
		case l.ans == ansRevoked:
			return refuse(certauth.CertRevoked, i, l.err)
		}
		if p.OCSP == Require {
			switch o.ans {
			case ansGood:
			case ansUnknown:
				return refuse(certauth.OCSPUnknown, i, o.err)
			case ansBad:
				return refuse(certauth.OCSPBadResponse, i, o.err)
			default:
				return refuse(certauth.OCSPUnavailable, i, o.err)
			}
			switch l.ans {
			case ansStale:
				return refuse(certauth.CRLStale, i, l.err)
			case ansUnavailable, ansBad:
				return refuse(certauth.CRLUnavailable, i, l.err)
			}
			continue
		}
		if askOCSP && o.ans != ansGood && !p.ConfiguredCRL && l.ans != ansGood {
			note("unchecked")
		}
		switch l.ans {
		case ansStale:
			note("crl_stale")
		case ansUnavailable, ansBad:
			note("crl_unavailable")
		}
	}
	out := Result{Outcome: "good", Detail: strings.Join(details, "; ")}
	if len(notes) > 0 {
		out.Outcome = strings.Join(notes, ",")
	}
	return out
}

// issuerKey identifies an issuer by its key, as an OCSP CertID does (but
// with SHA-256 over the whole SubjectPublicKeyInfo).
func issuerKey(issuer *x509.Certificate) [32]byte {
	return sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
}

// serialKey is a serial number as a map key: a sign byte, then the
// magnitude's big-endian bytes.
func serialKey(n *big.Int) string {
	sign := byte(0)
	if n.Sign() < 0 {
		sign = 1
	}
	return string(append([]byte{sign}, n.Bytes()...))
}

func serialFromKey(s string) *big.Int {
	if s == "" {
		return new(big.Int)
	}
	n := new(big.Int).SetBytes([]byte(s[1:]))
	if s[0] == 1 {
		n.Neg(n)
	}
	return n
}

var (
	errRedirect = errors.New("redirect refused")
	errTooLarge = errors.New("response too large")
	errClosed   = errors.New("revocation checker closed")
	errBusy     = errors.New("too many revocation requests in flight")
)
