package revocation

import (
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestOCSPPass: a recheck pass asks the responder again, past a cached
// answer, once per certificate however many sessions hold it; only a
// "revoked" answer is Revoked, and a responder that fails is Unknown and
// asked once per pass.
func TestOCSPPass(t *testing.T) {
	w := newWorld(t)
	other := w.issue(t)
	w.r.set(w.leaf.Cert, ocsp.Good)
	w.r.set(other.Cert, ocsp.Good)
	c := newChecker(t, Options{})
	p := Policy{OCSP: Prefer, Timeout: 2 * time.Second, CacheMaxAge: time.Hour}
	ctx := context.Background()
	if res := c.Check(ctx, chainOf(w.leaf), p); res.Err != nil || res.Outcome != "good" {
		t.Fatalf("login: %+v", res)
	}
	refs, otherRefs := Refs(chainOf(w.leaf)), Refs(chainOf(other))
	w.r.set(w.leaf.Cert, ocsp.Revoked)
	if s, _ := c.Recheck(refs, p); s != Good {
		t.Fatalf("from the cache: %v", s)
	}
	before := w.r.ocspHits.Load()
	pass := c.NewOCSPPass()
	for range 3 { // three sessions of one certificate
		if s, i := pass.Recheck(ctx, refs, p); s != Revoked || i != 0 {
			t.Fatalf("pass: %v %d", s, i)
		}
	}
	if s, _ := pass.Recheck(ctx, otherRefs, p); s != Good {
		t.Fatalf("other certificate: %v", s)
	}
	if n := w.r.ocspHits.Load() - before; n != 2 {
		t.Fatalf("%d requests for two certificates", n)
	}
	// The fresh answer is cached for logins too.
	if s, _ := c.Recheck(refs, p); s != Revoked {
		t.Fatalf("cache after the pass: %v", s)
	}

	for _, b := range []string{"500", "garbage", "hang", "stale", "wrongkey"} {
		t.Run(b, func(t *testing.T) {
			w := newWorld(t)
			second := w.issue(t)
			w.r.set(w.leaf.Cert, ocsp.Revoked)
			w.r.set(second.Cert, ocsp.Revoked)
			w.r.setBehaviour(b)
			c := newChecker(t, Options{})
			p := Policy{OCSP: Require, Timeout: 300 * time.Millisecond, CacheMaxAge: time.Hour}
			pass := c.NewOCSPPass()
			for _, l := range []*testpki.Leaf{w.leaf, second} {
				if s, _ := pass.Recheck(ctx, Refs(chainOf(l)), p); s != Unknown {
					t.Fatalf("%s: %v, want unknown (never ends a session)", b, s)
				}
			}
			// A responder that gives no answer is asked once per pass;
			// one that answers badly is asked about each certificate.
			want := int64(2)
			if b == "500" || b == "hang" {
				want = 1
			}
			if n, _ := c.Fetches(); n != want {
				t.Fatalf("the responder was asked %d times in one pass, want %d", n, want)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		if s, _ := c.NewOCSPPass().Recheck(ctx, refs, Policy{}); s != Unknown {
			t.Fatalf("ssl_ocsp off: %v", s)
		}
	})
}

// fakeCRLs revokes one serial.
type fakeCRLs struct{ serial string }

func (f fakeCRLs) Revoked(r CertRef) bool { return r.SerialOf().String() == f.serial }

// TestRecheckWithConfigured: a configured CRL's revocation wins over a
// cached OCSP "good"; without one Recheck is unchanged.
func TestRecheckWithConfigured(t *testing.T) {
	w := newWorld(t)
	w.r.set(w.leaf.Cert, ocsp.Good)
	c := newChecker(t, Options{})
	p := Policy{OCSP: Prefer, Timeout: 2 * time.Second, CacheMaxAge: time.Hour}
	c.Check(context.Background(), chainOf(w.leaf), p)
	refs := Refs(chainOf(w.leaf))
	if s, _ := c.RecheckWith(refs, p, nil); s != Good {
		t.Fatalf("no configured CRL: %v", s)
	}
	if s, _ := c.RecheckWith(refs, p, fakeCRLs{"1"}); s != Good {
		t.Fatalf("a CRL of another serial: %v", s)
	}
	if s, i := c.RecheckWith(refs, p, fakeCRLs{w.leaf.Cert.SerialNumber.String()}); s != Revoked || i != 0 {
		t.Fatalf("configured CRL: %v %d", s, i)
	}
	if refs[0].Issuer != w.ca.Cert || refs[0].OCSPURL != w.r.url("/ocsp") {
		t.Fatalf("refs: issuer %v url %q", refs[0].Issuer.Subject, refs[0].OCSPURL)
	}
}
