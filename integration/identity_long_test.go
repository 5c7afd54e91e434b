package integration

import (
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// A certificate identity as long as a client certificate can carry (a
// 60 KB SAN URI, within OpenSSL's 100 KiB max_cert_list) through a \1
// map: the lookup is linear in the identity's length, the deadline stops
// a lookup that is not, and the log keeps a bounded part of the name.
// clientname=SAN-URI is a pgcertgate extension, so this runs against
// pgcertgate only.

const longIdentHBA = "hostssl all all 127.0.0.1/32 cert clientname=SAN-URI map=s\n"

const longIdentIdent = `s "/^spiffe://x/(a)a*/app$" \1` + "\n"

func TestIdentLongSANURI(t *testing.T) {
	p := newPKI(t)
	identity := "spiffe://x/" + strings.Repeat("a", 60000) + "/app"
	u, err := url.Parse(identity)
	if err != nil || u.String() != identity {
		t.Fatalf("the identity does not survive url.Parse: %v", err)
	}
	leaf, err := p.root.NewClient(pkix.Name{CommonName: "long"}, testpki.WithURISANs(u))
	if err != nil {
		t.Fatal(err)
	}
	p.clients["long"] = leaf
	if n := len(leaf.Cert.Raw); n < 60000 || n > 100*1024-16 {
		t.Fatalf("the certificate is %d bytes, want 60 KB and within max_cert_list", n)
	}
	t.Logf("certificate: %d bytes of DER (OpenSSL's max_cert_list is %d)", len(leaf.Cert.Raw), 100*1024)

	// PostgreSQL gets a pg_hba.conf it accepts (it has no SAN-URI); the
	// proxy gets the map by a reload.
	w := newWorld(t, p, worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n", extraTOML: `authentication_timeout = "5s"`})
	identSetup(t, w, []string{"a", "b"}, nil)
	w.writeFile("pg_hba.conf", longIdentHBA)
	w.writeFile("pg_ident.conf", longIdentIdent)
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w.proxy.Reload(rt)

	t.Run("two parallel logins map to a within 2s", func(t *testing.T) {
		type result struct {
			o    outcome
			took time.Duration
		}
		results := make([]result, 2)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				start := time.Now()
				o := w.attempt(proxy, conn{user: "a", cert: "long"})
				results[i] = result{o, time.Since(start)}
			})
		}
		wg.Wait()
		for i, r := range results {
			if r.o.String() != "ok as a" {
				t.Errorf("login %d: %s (raw: %s)", i, r.o, r.o.raw)
			}
			if r.took > 2*time.Second {
				t.Errorf("login %d took %v", i, r.took)
			}
			t.Logf("login %d: %s in %v", i, r.o, r.took.Round(time.Millisecond))
		}
	})

	t.Run("a refused login", func(t *testing.T) {
		// \1 gives a, not b: PostgreSQL's "no match in usermap" names the
		// identity, and the log must keep a bounded part of it.
		if o := w.attempt(proxy, conn{user: "b", cert: "long"}); o.String() != `FATAL 28000 certificate authentication failed for user "b"` {
			t.Errorf("got %s", o)
		}
	})

	t.Run("the log keeps at most 1 KiB of the identity", func(t *testing.T) {
		sum := sha256.Sum256([]byte(identity))
		kept := certauth.LogText(identity)
		// The refusal is logged after the client got its error: wait for
		// its event.
		longIdentWaitLog(t, w, "reason=ident_no_match")
		log := w.logBuf.String()
		if strings.Contains(log, identity[:certauth.LogTextMax+1]) {
			t.Errorf("the log holds more than %d bytes of the identity", certauth.LogTextMax)
		}
		if !strings.Contains(log, hex.EncodeToString(sum[:])) || !strings.Contains(log, kept[:certauth.LogTextMax]) {
			t.Errorf("the log lacks the identity's first KiB and its SHA-256")
		}
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "event=auth") && len(line) > 8<<10 {
				t.Errorf("an auth event of %d bytes: %.300s…", len(line), line)
			}
		}
		if n := strings.Count(log, "cert_identity="); n < 3 {
			t.Errorf("%d events name the identity, want one per login", n)
		}
	})

	t.Run("authentication_timeout stops a lookup", func(t *testing.T) {
		// Lines that each take a third of a second or more on this
		// identity (an iteration whose piece is a large NFA), and that
		// match without accepting (\1x is not a role): far more matching
		// than the 5s authentication_timeout allows.
		var b strings.Builder
		for range 100 {
			b.WriteString(`s "/^spiffe://x/(a{1,200}|a{1,199}b)*/app$" \1x` + "\n")
		}
		b.WriteString(longIdentIdent)
		w.writeFile("pg_ident.conf", b.String())
		rt, err := config.Load(w.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		w.proxy.Reload(rt)
		start := time.Now()
		o := w.attempt(proxy, conn{user: "a", cert: "long"})
		took := time.Since(start)
		if o.ok {
			t.Fatalf("the login succeeded after %v; the lookup was not stopped", took)
		}
		// The client gets no answer, as from PostgreSQL when
		// authentication_timeout expires: the socket is closed.
		if took < 4*time.Second || took > 7*time.Second {
			t.Errorf("refused after %v, want at authentication_timeout (5s)", took)
		}
		longIdentWaitLog(t, w, "context deadline exceeded")
		for _, line := range strings.Split(w.logBuf.String(), "\n") {
			if strings.Contains(line, "context deadline exceeded") {
				_, event, _ := strings.Cut(line, " event=")
				t.Logf("refused after %v: %s; logged event=%s", took.Round(time.Millisecond), o, event)
			}
		}
	})
}

// longIdentWaitLog polls the proxy's log until it holds want, for up to
// 10 seconds: the proxy logs an attempt after it has answered the client.
func longIdentWaitLog(t *testing.T, w *world, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(w.logBuf.String(), want); {
		if time.Now().After(deadline) {
			t.Errorf("the proxy's log lacks %q; tail:\n%.2000s", want, identTail(w.logBuf.String(), 3))
			return
		}
		// Re-reading the log the proxy appends to.
		time.Sleep(10 * time.Millisecond)
	}
}
