package revocation

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// responder is a test OCSP responder and CRL distribution point: it signs
// answers from its status table with the CA's key (or a delegate's) and
// serves the CRL it holds, counting requests.
type responder struct {
	t   testing.TB
	ca  *testpki.CA
	srv *httptest.Server

	mu        sync.Mutex
	status    map[string]int // serial → ocsp.Good/Revoked/Unknown
	behaviour string         // for OCSP: "", "garbage", "hang", "redirect", "endless", "500", "stale", "wrongkey"
	crlBehave string         // for CRL downloads: the same
	delegate  *testpki.Leaf
	next      time.Duration // nextUpdate - now of answers; 0 = none
	crl       []byte
	crlHits   chan struct{}

	ocspHits atomic.Int64
}

func newResponder(t testing.TB, ca *testpki.CA) *responder {
	r := &responder{t: t, ca: ca, status: map[string]int{}, next: time.Hour, crlHits: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *responder) url(path string) string { return r.srv.URL + path }

func (r *responder) set(c *x509.Certificate, status int) {
	r.mu.Lock()
	r.status[c.SerialNumber.String()] = status
	r.mu.Unlock()
}

func (r *responder) setBehaviour(b string) {
	r.mu.Lock()
	r.behaviour = b
	r.mu.Unlock()
}

func (r *responder) setCRLBehaviour(b string) {
	r.mu.Lock()
	r.crlBehave = b
	r.mu.Unlock()
}

func (r *responder) setNext(d time.Duration) {
	r.mu.Lock()
	r.next = d
	r.mu.Unlock()
}

func (r *responder) setDelegate(l *testpki.Leaf) {
	r.mu.Lock()
	r.delegate = l
	r.mu.Unlock()
}

func (r *responder) setCRL(crl []byte) {
	r.mu.Lock()
	r.crl = crl
	r.mu.Unlock()
}

func (r *responder) serve(w http.ResponseWriter, req *http.Request) {
	isCRL := req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, ".crl")
	r.mu.Lock()
	b, delegate, next, crl := r.behaviour, r.delegate, r.next, r.crl
	if isCRL {
		b = r.crlBehave
	}
	r.mu.Unlock()
	switch b {
	case "hang":
		// Read the request first: the server notices a client that gave
		// up only once the body is consumed.
		_, _ = io.Copy(io.Discard, req.Body)
		<-req.Context().Done()
		return
	case "redirect":
		http.Redirect(w, req, req.URL.String(), http.StatusFound)
		return
	case "endless":
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 32<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	case "500":
		http.Error(w, "no", http.StatusInternalServerError)
		return
	case "garbage":
		_, _ = w.Write([]byte("<html>hello</html>"))
		return
	}
	if isCRL {
		select {
		case r.crlHits <- struct{}{}:
		default:
		}
		_, _ = w.Write(crl)
		return
	}
	r.ocspHits.Add(1)
	body, _ := io.ReadAll(req.Body)
	q, err := ocsp.ParseRequest(body)
	if err != nil {
		_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	r.mu.Lock()
	st, ok := r.status[q.SerialNumber.String()]
	r.mu.Unlock()
	if !ok {
		st = ocsp.Unknown
	}
	now := time.Now()
	resp := testpki.OCSPResponse{Status: st, Serial: q.SerialNumber, ThisUpdate: now.Add(-time.Minute), RevokedAt: now.Add(-time.Hour)}
	if next > 0 {
		resp.NextUpdate = now.Add(next)
	}
	if b == "stale" {
		resp.ThisUpdate, resp.NextUpdate = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	}
	ca := r.ca
	if b == "wrongkey" {
		other, err := testpki.NewRootCA(ca.Cert.Subject)
		if err != nil {
			r.t.Error(err)
			return
		}
		ca = other
	}
	der, err := ca.OCSPResponse(resp, delegate)
	if err != nil {
		r.t.Error(err)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(der)
}

// world is a CA with a responder, and a leaf naming it.
type world struct {
	ca   *testpki.CA
	r    *responder
	leaf *testpki.Leaf
}

func newWorld(t testing.TB, leafOpts ...testpki.Option) *world {
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "revocation test root"})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{ca: ca, r: newResponder(t, ca)}
	w.leaf = w.issue(t, leafOpts...)
	return w
}

func (w *world) issue(t testing.TB, opts ...testpki.Option) *testpki.Leaf {
	opts = append([]testpki.Option{testpki.WithOCSPServer(w.r.url("/ocsp"))}, opts...)
	l, err := w.ca.NewClient(pkix.Name{CommonName: "alice"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func chainOf(l *testpki.Leaf) []*x509.Certificate {
	return append([]*x509.Certificate{l.Cert}, l.Chain...)
}

func newChecker(t testing.TB, opts Options) *Checker {
	c := New(opts)
	t.Cleanup(c.Close)
	return c
}

func reasonOf(err error) certauth.Reason {
	if ve, ok := errors.AsType[*certauth.VerifyError](err); ok {
		return ve.Reason
	}
	return 0
}

func TestCheckPolicy(t *testing.T) {
	prefer := Policy{OCSP: Prefer, Timeout: 2 * time.Second, CacheMaxAge: time.Hour}
	require := prefer
	require.OCSP = Require
	preferCRL := prefer
	preferCRL.ConfiguredCRL = true
	for _, tc := range []struct {
		name      string
		status    int    // the responder's answer
		behaviour string // the responder's misbehaviour
		down      bool   // the responder's port is closed
		noAIA     bool   // the leaf names no responder
		policy    Policy
		reason    certauth.Reason // 0: accepted
		outcome   string
	}{
		{name: "prefer good", status: ocsp.Good, policy: prefer, outcome: "good"},
		{name: "prefer revoked", status: ocsp.Revoked, policy: prefer, reason: certauth.OCSPRevoked, outcome: "ocsp_revoked"},
		{name: "prefer unknown", status: ocsp.Unknown, policy: prefer, outcome: "unchecked"},
		{name: "prefer unknown with a CRL", status: ocsp.Unknown, policy: preferCRL, outcome: "good"},
		{name: "prefer down", down: true, policy: prefer, outcome: "unchecked"},
		{name: "prefer down with a CRL", down: true, policy: preferCRL, outcome: "good"},
		{name: "prefer no responder named", noAIA: true, policy: prefer, outcome: "unchecked"},
		{name: "prefer bad signature", status: ocsp.Good, behaviour: "wrongkey", policy: prefer, outcome: "unchecked"},
		{name: "prefer stale", status: ocsp.Good, behaviour: "stale", policy: prefer, outcome: "unchecked"},
		{name: "prefer revoked with a CRL", status: ocsp.Revoked, policy: preferCRL, reason: certauth.OCSPRevoked, outcome: "ocsp_revoked"},
		{name: "require good", status: ocsp.Good, policy: require, outcome: "good"},
		{name: "require revoked", status: ocsp.Revoked, policy: require, reason: certauth.OCSPRevoked, outcome: "ocsp_revoked"},
		{name: "require unknown", status: ocsp.Unknown, policy: require, reason: certauth.OCSPUnknown, outcome: "ocsp_unknown"},
		{name: "require down", down: true, policy: require, reason: certauth.OCSPUnavailable, outcome: "ocsp_unavailable"},
		{name: "require down with a CRL", down: true, policy: func() Policy { p := require; p.ConfiguredCRL = true; return p }(), reason: certauth.OCSPUnavailable},
		{name: "require no responder named", noAIA: true, policy: require, reason: certauth.OCSPUnavailable},
		{name: "require bad signature", status: ocsp.Good, behaviour: "wrongkey", policy: require, reason: certauth.OCSPBadResponse, outcome: "ocsp_bad_response"},
		{name: "require stale", status: ocsp.Good, behaviour: "stale", policy: require, reason: certauth.OCSPBadResponse},
		{name: "require garbage", behaviour: "garbage", policy: require, reason: certauth.OCSPBadResponse},
		{name: "require redirect", behaviour: "redirect", policy: require, reason: certauth.OCSPUnavailable},
		{name: "require HTTP 500", behaviour: "500", policy: require, reason: certauth.OCSPUnavailable},
		{name: "require endless body", behaviour: "endless", policy: require, reason: certauth.OCSPBadResponse},
		{name: "off asks nothing", down: true, policy: Policy{}, outcome: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			leaf := w.leaf
			if tc.noAIA {
				l, err := w.ca.NewClient(pkix.Name{CommonName: "bob"})
				if err != nil {
					t.Fatal(err)
				}
				leaf = l
			}
			w.r.set(leaf.Cert, tc.status)
			w.r.setBehaviour(tc.behaviour)
			if tc.down {
				w.r.srv.Close()
			}
			c := newChecker(t, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res := c.Check(ctx, chainOf(leaf), tc.policy)
			if got := reasonOf(res.Err); got != tc.reason {
				t.Fatalf("reason %v (%v), want %v; detail: %s", got, res.Err, tc.reason, res.Detail)
			}
			if tc.outcome != "" && res.Outcome != tc.outcome {
				t.Fatalf("outcome %q, want %q; detail: %s", res.Outcome, tc.outcome, res.Detail)
			}
		})
	}
}

// TestBadResponsesNeverGood: whatever goes wrong, a response that is not a
// verified, current "good" never lets a certificate through under require,
// and a failure is answered well within the timeout when the server
// misbehaves quickly (an endless body is cut at the size cap).
func TestBadResponsesNeverGood(t *testing.T) {
	for _, b := range []string{"garbage", "redirect", "endless", "500", "stale", "wrongkey"} {
		t.Run(b, func(t *testing.T) {
			w := newWorld(t)
			w.r.set(w.leaf.Cert, ocsp.Good)
			w.r.setBehaviour(b)
			c := newChecker(t, Options{})
			start := time.Now()
			res := c.Check(context.Background(), chainOf(w.leaf), Policy{OCSP: Require, Timeout: 5 * time.Second, CacheMaxAge: time.Hour})
			if res.Err == nil {
				t.Fatalf("accepted; detail %s", res.Detail)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Fatalf("took %s", d)
			}
		})
	}
}

func TestSlowResponder(t *testing.T) {
	slow := newWorld(t)
	slow.r.setBehaviour("hang")
	fast := newWorld(t)
	fast.r.set(fast.leaf.Cert, ocsp.Good)
	slow2 := newWorld(t)
	slow2.r.setBehaviour("hang")
	// Made last, closed first: its requests end before the servers close.
	c := newChecker(t, Options{})
	p := Policy{OCSP: Require, Timeout: 500 * time.Millisecond, CacheMaxAge: time.Hour}
	done := make(chan Result, 1)
	go func() { done <- c.Check(context.Background(), chainOf(slow.leaf), p) }()
	// Another login, to another responder, is not held up meanwhile.
	start := time.Now()
	if res := c.Check(context.Background(), chainOf(fast.leaf), p); res.Err != nil {
		t.Fatal(res.Err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("fast responder's check took %s", d)
	}
	res := <-done
	if reasonOf(res.Err) != certauth.OCSPUnavailable {
		t.Fatalf("slow responder: %v", res.Err)
	}
	// A login giving up early (its own deadline) is not held either.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	other := slow2.leaf
	start = time.Now()
	res = c.Check(ctx, chainOf(other), Policy{OCSP: Require, Timeout: 5 * time.Second, CacheMaxAge: time.Hour})
	if res.Err == nil || time.Since(start) > time.Second {
		t.Fatalf("after %s: %v", time.Since(start), res.Err)
	}
}

// TestSharedAndCached: concurrent logins with one certificate share one
// request, and later ones are answered from the cache.
func TestSharedAndCached(t *testing.T) {
	w := newWorld(t)
	w.r.set(w.leaf.Cert, ocsp.Good)
	c := newChecker(t, Options{})
	p := Policy{OCSP: Require, Timeout: 5 * time.Second, CacheMaxAge: time.Hour}
	chain := chainOf(w.leaf)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			if res := c.Check(context.Background(), chain, p); res.Err != nil {
				errs <- res.Err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for range 100 {
		if res := c.Check(context.Background(), chain, p); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if n := w.r.ocspHits.Load(); n != 1 {
		t.Fatalf("responder asked %d times, want 1", n)
	}
	if got, _ := c.Fetches(); got != 1 {
		t.Fatalf("Fetches: %d", got)
	}
}

// TestSharedLooksAtCache: a caller that found its cache empty can reach
// shared just after the request it would have joined has ended and
// stored its answer. shared looks at the cache before it starts another
// request, so nothing is asked twice; a caller without a cache (the
// recheck, which wants a fresh answer) always asks, and callers that
// come while a request runs share it.
func TestSharedLooksAtCache(t *testing.T) {
	c := newChecker(t, Options{})
	ctx := context.Background()
	var asked atomic.Int32
	ask := func(context.Context) (any, error) {
		asked.Add(1)
		return "answer", nil
	}
	stored := func() (any, bool) { return "stored", true }
	empty := func() (any, bool) { return nil, false }

	if v, err := c.shared(ctx, "k", time.Second, stored, ask); err != nil || v != "stored" || asked.Load() != 0 {
		t.Fatalf("with an answer stored: %v, %v, asked %d times; want the stored one, not asked", v, err, asked.Load())
	}
	if v, err := c.shared(ctx, "k", time.Second, empty, ask); err != nil || v != "answer" || asked.Load() != 1 {
		t.Fatalf("with nothing stored: %v, %v, asked %d times; want asked once", v, err, asked.Load())
	}
	if v, err := c.shared(ctx, "k", time.Second, nil, ask); err != nil || v != "answer" || asked.Load() != 2 {
		t.Fatalf("without a cache: %v, %v, asked %d times; want asked again", v, err, asked.Load())
	}

	// While a request runs, a caller joins it whatever its cache holds.
	release := make(chan struct{})
	started := make(chan struct{})
	slow := func(context.Context) (any, error) {
		close(started)
		<-release
		return "slow answer", nil
	}
	first := make(chan any, 1)
	go func() {
		v, _ := c.shared(ctx, "k2", 5*time.Second, empty, slow)
		first <- v
	}()
	<-started
	second := make(chan any, 1)
	go func() {
		v, _ := c.shared(ctx, "k2", 5*time.Second, stored, ask)
		second <- v
	}()
	// The second caller is waiting on the flight or has not reached it;
	// either way it gets the flight's answer once released, or the
	// stored one if it came after the flight ended, never a new request.
	close(release)
	if v := <-first; v != "slow answer" {
		t.Fatalf("first caller got %v", v)
	}
	if v := <-second; v != "slow answer" && v != "stored" {
		t.Fatalf("second caller got %v", v)
	}
	if n := asked.Load(); n != 2 {
		t.Fatalf("asked %d times in all, want 2", n)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) set(t time.Time) {
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
}

func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func TestCacheLifetime(t *testing.T) {
	for _, tc := range []struct {
		name     string
		next     time.Duration // responder's nextUpdate - now; 0 none
		maxAge   time.Duration
		after    time.Duration
		requests int64
	}{
		{name: "within nextUpdate and max age", next: time.Hour, maxAge: time.Hour, after: 30 * time.Minute, requests: 1},
		{name: "past nextUpdate", next: 10 * time.Minute, maxAge: time.Hour, after: 11 * time.Minute, requests: 2},
		{name: "past max age", next: 24 * time.Hour, maxAge: time.Hour, after: 61 * time.Minute, requests: 2},
		{name: "no nextUpdate is never cached", next: 0, maxAge: time.Hour, after: time.Second, requests: 2},
		{name: "zero max age disables the cache", next: time.Hour, maxAge: 0, after: time.Second, requests: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.r.set(w.leaf.Cert, ocsp.Good)
			w.r.setNext(tc.next)
			clock := &fakeClock{t: time.Now()}
			c := newChecker(t, Options{Now: clock.now})
			p := Policy{OCSP: Require, Timeout: 5 * time.Second, CacheMaxAge: tc.maxAge}
			for i := range 2 {
				if res := c.Check(context.Background(), chainOf(w.leaf), p); res.Err != nil {
					// The responder's clock is real: an answer checked
					// much later is out of date; that is fine for the
					// request count.
					if i == 0 {
						t.Fatal(res.Err)
					}
				}
				clock.add(tc.after)
			}
			if n := w.r.ocspHits.Load(); n != tc.requests {
				t.Fatalf("%d requests, want %d", n, tc.requests)
			}
		})
	}
}

func TestResponderBackoff(t *testing.T) {
	w := newWorld(t)
	w.r.setBehaviour("500")
	c := newChecker(t, Options{})
	p := Policy{OCSP: Require, Timeout: 5 * time.Second, CacheMaxAge: time.Hour}
	for range 3 {
		if res := c.Check(context.Background(), chainOf(w.leaf), p); reasonOf(res.Err) != certauth.OCSPUnavailable {
			t.Fatalf("got %v", res.Err)
		}
	}
	if got, _ := c.Fetches(); got != 1 {
		t.Fatalf("%d requests to a failing responder within its back-off, want 1", got)
	}
}

func TestDelegatedResponder(t *testing.T) {
	for _, tc := range []struct {
		name string
		eku  []x509.ExtKeyUsage
		ok   bool
	}{
		{"with OCSPSigning", []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, true},
		{"without OCSPSigning", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.r.set(w.leaf.Cert, ocsp.Good)
			d, err := w.ca.NewOCSPResponder("delegate", testpki.WithEKU(tc.eku...))
			if err != nil {
				t.Fatal(err)
			}
			w.r.setDelegate(d)
			c := newChecker(t, Options{})
			res := c.Check(context.Background(), chainOf(w.leaf), Policy{OCSP: Require, Timeout: 5 * time.Second, CacheMaxAge: time.Hour})
			if (res.Err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", res.Err, tc.ok)
			}
			if !tc.ok && reasonOf(res.Err) != certauth.OCSPBadResponse {
				t.Fatalf("reason %v", reasonOf(res.Err))
			}
		})
	}
}

// TestIntermediates: under require every certificate below the root is
// asked about; under prefer an intermediate only when it names a
// responder.
func TestIntermediates(t *testing.T) {
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "root"})
	if err != nil {
		t.Fatal(err)
	}
	rootResp := newResponder(t, root)
	withAIA, err := root.NewIntermediate(pkix.Name{CommonName: "inter with AIA"}, testpki.WithOCSPServer(rootResp.url("/")))
	if err != nil {
		t.Fatal(err)
	}
	noAIA, err := root.NewIntermediate(pkix.Name{CommonName: "inter without AIA"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		inter  *testpki.CA
		mode   Mode
		status int // root's answer about the intermediate
		reason certauth.Reason
		asked  int64
	}{
		{"prefer, AIA, revoked", withAIA, Prefer, ocsp.Revoked, certauth.OCSPRevoked, 1},
		{"prefer, no AIA", noAIA, Prefer, ocsp.Revoked, 0, 0},
		{"require, AIA, good", withAIA, Require, ocsp.Good, 0, 1},
		{"require, no AIA", noAIA, Require, ocsp.Good, certauth.OCSPUnavailable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rootResp.ocspHits.Load()
			rootResp.set(tc.inter.Cert, tc.status)
			interResp := newResponder(t, tc.inter)
			leaf, err := tc.inter.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithOCSPServer(interResp.url("/")))
			if err != nil {
				t.Fatal(err)
			}
			interResp.set(leaf.Cert, ocsp.Good)
			c := newChecker(t, Options{})
			res := c.Check(context.Background(), chainOf(leaf), Policy{OCSP: tc.mode, Timeout: 5 * time.Second, CacheMaxAge: time.Hour})
			if got := reasonOf(res.Err); got != tc.reason {
				t.Fatalf("reason %v (%v), want %v", got, res.Err, tc.reason)
			}
			if res.Err == nil && res.Outcome != "good" {
				t.Fatalf("outcome %q: %s", res.Outcome, res.Detail)
			}
			if n := rootResp.ocspHits.Load() - before; n != tc.asked {
				t.Fatalf("root's responder asked %d times, want %d", n, tc.asked)
			}
		})
	}
}

// crlWorld is a CA whose leaf names a distribution point on its responder.
func crlWorld(t testing.TB) (*world, []*x509.Certificate) {
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "crl root"})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{ca: ca, r: newResponder(t, ca)}
	w.leaf, err = ca.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithCRLDistributionPoints(w.r.url("/ca.crl")), testpki.WithOCSPServer(w.r.url("/ocsp")))
	if err != nil {
		t.Fatal(err)
	}
	return w, chainOf(w.leaf)
}

func crlPEM(t testing.TB, ca *testpki.CA, revoked []*x509.Certificate, this, next time.Time) []byte {
	t.Helper()
	b, err := ca.CRL(revoked, this, next)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCRLFetchAndRefresh(t *testing.T) {
	w, chain := crlWorld(t)
	now := time.Now()
	// Due again in three seconds: the refresh comes before that.
	w.r.setCRL(crlPEM(t, w.ca, nil, now.Add(-10*time.Second), now.Add(3*time.Second)))
	updated := make(chan struct{}, 1)
	c := newChecker(t, Options{OnCRLUpdate: func() {
		select {
		case updated <- struct{}{}:
		default:
		}
	}})
	p := Policy{CRLFetch: true, Timeout: 5 * time.Second}
	res := c.Check(context.Background(), chain, p)
	if res.Err != nil || res.Outcome != "good" {
		t.Fatalf("first check: %v %q %s", res.Err, res.Outcome, res.Detail)
	}
	<-w.r.crlHits
	// The first CRL counts as an update too: sessions admitted while the
	// point was unreachable are rechecked against it.
	select {
	case <-updated:
	default:
		t.Fatal("no update for the first CRL installed")
	}
	w.r.setCRL(crlPEM(t, w.ca, []*x509.Certificate{w.leaf.Cert}, now.Add(-time.Second), now.Add(time.Hour)))
	select {
	case <-updated:
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh")
	}
	res = c.Check(context.Background(), chain, p)
	if reasonOf(res.Err) != certauth.CertRevoked {
		t.Fatalf("after refresh: %v %s", res.Err, res.Detail)
	}
	if refs := Refs(chain); len(refs) != 1 {
		t.Fatal(refs)
	}
	if s, i := c.Recheck(Refs(chain), p); s != Revoked || i != 0 {
		t.Fatalf("Recheck: %v %d", s, i)
	}
	if crls := c.FetchedCRLs(); len(crls) != 1 || crls[0].URL != w.r.url("/ca.crl") {
		t.Fatalf("FetchedCRLs: %+v", crls)
	}
}

func TestCRLStaleAndGrace(t *testing.T) {
	w, chain := crlWorld(t)
	start := time.Now()
	w.r.setCRL(crlPEM(t, w.ca, nil, start.Add(-time.Hour), start.Add(time.Hour)))
	clock := &fakeClock{t: start}
	c := newChecker(t, Options{Now: clock.now})
	p := Policy{CRLFetch: true, Timeout: 2 * time.Second, CRLGrace: 30 * time.Minute}
	if res := c.Check(context.Background(), chain, p); res.Outcome != "good" {
		t.Fatalf("%q %v %s", res.Outcome, res.Err, res.Detail)
	}
	w.r.setCRLBehaviour("500")
	w.r.setNext(3 * time.Hour)
	w.r.set(w.leaf.Cert, ocsp.Good)
	for _, tc := range []struct {
		at      time.Duration
		outcome string
		s       Status
	}{
		{at: 80 * time.Minute, outcome: "good", s: Good},          // past nextUpdate, within grace
		{at: 100 * time.Minute, outcome: "crl_stale", s: Unknown}, // past grace
	} {
		clock.set(start.Add(tc.at))
		res := c.Check(context.Background(), chain, p)
		if res.Err != nil || res.Outcome != tc.outcome {
			t.Fatalf("at +%s: %v %q %s", tc.at, res.Err, res.Outcome, res.Detail)
		}
		if s, _ := c.Recheck(Refs(chain), p); s != tc.s {
			t.Fatalf("at +%s: Recheck %v", tc.at, s)
		}
	}
	// Under require, a fresh OCSP good does not make up for it.
	req := p
	req.OCSP = Require
	if res := c.Check(context.Background(), chain, req); reasonOf(res.Err) != certauth.CRLStale {
		t.Fatalf("require: %v %s", res.Err, res.Detail)
	}
}

func TestCRLBadInputs(t *testing.T) {
	other, err := testpki.NewRootCA(pkix.Name{CommonName: "crl root"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name      string
		crl       func(w *world) []byte
		behaviour string
		maxSize   int64
	}{
		{name: "bad signature", crl: func(*world) []byte {
			return crlPEM(t, other, nil, now.Add(-time.Hour), now.Add(time.Hour))
		}},
		{name: "garbage", crl: func(*world) []byte { return []byte("garbage") }},
		{name: "too large", maxSize: 100, crl: func(w *world) []byte {
			return crlPEM(t, w.ca, nil, now.Add(-time.Hour), now.Add(time.Hour))
		}},
		{name: "endless", behaviour: "endless"},
		{name: "redirect loop", behaviour: "redirect"},
		{name: "HTTP 500", behaviour: "500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, chain := crlWorld(t)
			if tc.crl != nil {
				w.r.setCRL(tc.crl(w))
			}
			w.r.setCRLBehaviour(tc.behaviour)
			w.r.set(w.leaf.Cert, ocsp.Good)
			c := newChecker(t, Options{})
			p := Policy{CRLFetch: true, Timeout: 5 * time.Second, CRLMaxSize: tc.maxSize}
			res := c.Check(context.Background(), chain, p)
			if res.Err != nil || res.Outcome != "crl_unavailable" {
				t.Fatalf("got %v %q %s", res.Err, res.Outcome, res.Detail)
			}
			// OCSP good does not make up for it under require; under
			// prefer it is noted.
			p.OCSP = Prefer
			if res := c.Check(context.Background(), chain, p); res.Err != nil || res.Outcome != "crl_unavailable" {
				t.Fatalf("prefer: %v %q", res.Err, res.Outcome)
			}
			p.OCSP = Require
			if res := c.Check(context.Background(), chain, p); reasonOf(res.Err) != certauth.CRLUnavailable {
				t.Fatalf("require: %v %s", res.Err, res.Detail)
			}
			if s, _ := c.Recheck(Refs(chain), p); s != Unknown {
				t.Fatalf("Recheck: %v", s)
			}
		})
	}
}

// TestCRLRollback: a refresh that brings an older CRL than the one held
// is refused: it could undo a revocation.
func TestCRLRollback(t *testing.T) {
	w, chain := crlWorld(t)
	now := time.Now()
	old := crlPEM(t, w.ca, nil, now.Add(-2*time.Hour), now.Add(time.Hour))
	revoking := crlPEM(t, w.ca, []*x509.Certificate{w.leaf.Cert}, now.Add(-time.Hour), now.Add(time.Hour))
	w.r.setCRL(revoking)
	c := newChecker(t, Options{})
	p := Policy{CRLFetch: true, Timeout: 5 * time.Second, CRLGrace: time.Hour}
	if res := c.Check(context.Background(), chain, p); reasonOf(res.Err) != certauth.CertRevoked {
		t.Fatalf("%v", res.Err)
	}
	w.r.setCRL(old)
	_, err := c.fetchCRL(context.Background(), w.r.url("/ca.crl"), w.ca.Cert, p)
	if err == nil || !strings.Contains(err.Error(), "older than the one in use") {
		t.Fatalf("older CRL: %v", err)
	}
	if res := c.Check(context.Background(), chain, p); reasonOf(res.Err) != certauth.CertRevoked {
		t.Fatalf("after rollback attempt: %v", res.Err)
	}
}

func TestFetchRefusesSchemes(t *testing.T) {
	c := newChecker(t, Options{})
	for _, u := range []string{"https://127.0.0.1/", "ftp://127.0.0.1/", "file:///etc/passwd", "http://user:pw@127.0.0.1/", "gopher://x"} {
		if _, err := c.fetch(context.Background(), "GET", u, nil, "", 100); err == nil || !isHTTPError(err) {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestMaxInFlight(t *testing.T) {
	w := newWorld(t)
	w.r.set(w.leaf.Cert, ocsp.Good)
	c := newChecker(t, Options{MaxInFlight: 1})
	c.sem <- struct{}{} // the one slot is taken
	p := Policy{OCSP: Require, Timeout: 200 * time.Millisecond, CacheMaxAge: time.Hour}
	res := c.Check(context.Background(), chainOf(w.leaf), p)
	if reasonOf(res.Err) != certauth.OCSPUnavailable || !strings.Contains(res.Detail, "in flight") {
		t.Fatalf("%v %s", res.Err, res.Detail)
	}
	if n := w.r.ocspHits.Load(); n != 0 {
		t.Fatalf("%d requests", n)
	}
	<-c.sem
}

func TestSerialKey(t *testing.T) {
	for _, n := range []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(-1), big.NewInt(0x2d01), new(big.Int).Lsh(big.NewInt(1), 159)} {
		if got := serialFromKey(serialKey(n)); got.Cmp(n) != 0 {
			t.Errorf("%v → %v", n, got)
		}
	}
	if serialKey(big.NewInt(1)) == serialKey(big.NewInt(-1)) {
		t.Error("sign lost")
	}
}

// BenchmarkCachedCheck is the per-login cost of OCSP with a warm cache.
func BenchmarkCachedCheck(b *testing.B) {
	w := newWorld(b)
	w.r.set(w.leaf.Cert, ocsp.Good)
	c := newChecker(b, Options{})
	p := Policy{OCSP: Require, Timeout: 5 * time.Second, CacheMaxAge: time.Hour}
	chain := chainOf(w.leaf)
	if res := c.Check(context.Background(), chain, p); res.Err != nil {
		b.Fatal(res.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res := c.Check(context.Background(), chain, p); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// TestRecheck: a running session's certificates are answered for from
// the cache alone, with no request.
func TestRecheck(t *testing.T) {
	w := newWorld(t)
	good, revoked, unasked := w.leaf, w.issue(t), w.issue(t)
	w.r.set(good.Cert, ocsp.Good)
	w.r.set(revoked.Cert, ocsp.Revoked)
	c := newChecker(t, Options{})
	p := Policy{OCSP: Prefer, Timeout: 5 * time.Second, CacheMaxAge: time.Hour}
	for _, l := range []*testpki.Leaf{good, revoked} {
		c.Check(context.Background(), chainOf(l), p)
	}
	asked := w.r.ocspHits.Load()
	for _, tc := range []struct {
		leaf *testpki.Leaf
		want Status
	}{
		{good, Good}, {revoked, Revoked}, {unasked, Unknown},
	} {
		refs := Refs(chainOf(tc.leaf))
		if got, _ := c.Recheck(refs, p); got != tc.want {
			t.Errorf("serial %v: %v, want %v", tc.leaf.Cert.SerialNumber, got, tc.want)
		}
	}
	if n := w.r.ocspHits.Load(); n != asked {
		t.Fatalf("Recheck made %d requests", n-asked)
	}
}

// BenchmarkRecheck is the cost of re-checking one session from the cache.
func BenchmarkRecheck(b *testing.B) {
	w := newWorld(b)
	w.r.set(w.leaf.Cert, ocsp.Good)
	c := newChecker(b, Options{})
	p := Policy{OCSP: Prefer, Timeout: 5 * time.Second, CacheMaxAge: time.Hour}
	c.Check(context.Background(), chainOf(w.leaf), p)
	refs := Refs(chainOf(w.leaf))
	b.ReportAllocs()
	for b.Loop() {
		if s, _ := c.Recheck(refs, p); s != Good {
			b.Fatal(s)
		}
	}
}
