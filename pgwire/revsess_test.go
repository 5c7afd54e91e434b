package pgwire

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgcertgate/pgcertgate/admin"
	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// revsessEnv is a Server with ssl_crl_file, and what its tests need to
// rewrite that file and reload.
type revsessEnv struct {
	srv  *Server
	ca   *testpki.CA
	dir  string
	mode string
	logs *syncBuffer
	// crlDir: the CRL goes into ssl_crl_dir (as <hash>.r0) instead of
	// ssl_crl_file.
	crlDir bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRevsessEnv(t *testing.T, mode string) *revsessEnv {
	return newRevsessEnvDir(t, mode, false)
}

func newRevsessEnvDir(t *testing.T, mode string, crlDir bool) *revsessEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "unit root"})
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &revsessEnv{ca: ca, dir: dir, mode: mode, logs: &syncBuffer{}, crlDir: crlDir}
	if crlDir {
		if err := os.Mkdir(filepath.Join(dir, "crl"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.write(t, "server.crt", srvLeaf.CertPEM, 0o644)
	e.write(t, "server.key", srvLeaf.KeyPEM, 0o600)
	e.write(t, "root.crt", ca.CertPEM, 0o644)
	e.write(t, "pg_hba.conf", []byte("hostssl all all all cert\n"), 0o644)
	e.writeCRL(t, ca)
	e.srv = New(Options{Runtime: e.load(t), Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	t.Cleanup(func() { e.srv.Close() })
	return e
}

func (e *revsessEnv) write(t *testing.T, name string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), data, mode); err != nil {
		t.Fatal(err)
	}
}

// writeCRL makes ssl_crl_file signer's CRL revoking revoked.
func (e *revsessEnv) writeCRL(t *testing.T, signer *testpki.CA, revoked ...*x509.Certificate) {
	t.Helper()
	now := time.Now()
	crl, err := signer.CRL(revoked, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !e.crlDir {
		e.write(t, "root.crl", crl, 0o644)
		return
	}
	h, err := certauth.NameHash(e.ca.Cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	e.write(t, filepath.Join("crl", certauth.HashedCRLName(h, 0)), crl, 0o644)
}

func (e *revsessEnv) load(t *testing.T) *config.Runtime {
	t.Helper()
	crl := `ssl_crl_file = "root.crl"`
	if e.crlDir {
		crl = `ssl_crl_dir = "crl"`
	}
	e.write(t, "pgcertgate.toml", []byte(fmt.Sprintf(`
hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
%s
revoked_sessions = %q
[backend]
dsn = "host=127.0.0.1 port=1 sslmode=disable"
`, crl, e.mode)), 0o644)
	rt, err := config.Load(filepath.Join(e.dir, "pgcertgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// session registers a live session (no relay) for leaf, verified as the
// handshake verifies it.
func (e *revsessEnv) session(t *testing.T, id uint64, leaf *testpki.Leaf) *liveSession {
	t.Helper()
	return sessionIn(t, e.srv, id, leaf, certauth.DefaultSet)
}

// sessionIn registers a live session (no relay) for leaf, admitted
// through the CA set named set, which verified its chain.
func sessionIn(t *testing.T, srv *Server, id uint64, leaf *testpki.Leaf, set string) *liveSession {
	t.Helper()
	ls := verifiedSession(t, srv.state.Load(), id, leaf, set)
	srv.ext.live.add(ls)
	return ls
}

// verifiedSession is a session (no relay, not registered) for leaf,
// whose chain the CA set named set of st verified.
func verifiedSession(t *testing.T, st *state, id uint64, leaf *testpki.Leaf, set string) *liveSession {
	t.Helper()
	trust := st.rt.ClientCAs
	cs := trust.Set(set)
	if cs == nil {
		t.Fatalf("no CA set %s", set)
	}
	chain, err := cs.Verify(append([]*x509.Certificate{leaf.Cert}, leaf.Intermediates()...), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := certauth.NewPeer(chain)
	p.VerifiedIn(chain, set)
	backend, other := net.Pipe()
	t.Cleanup(func() { backend.Close(); other.Close() })
	ls := &liveSession{
		info:        admin.SessionInfo{ID: id, User: leaf.Cert.Subject.CommonName, Database: "db"},
		fingerprint: p.Fingerprint(),
		certs:       newSessionCerts(p),
		ctl:         newSessionControl(backend),
	}
	return ls
}

func stoppedWith(ls *liveSession) string {
	ls.ctl.mu.Lock()
	defer ls.ctl.mu.Unlock()
	if ls.ctl.err == nil {
		return ""
	}
	return ls.ctl.err.Code + " " + ls.ctl.err.Message
}

// TestRevsessReloadMatching: after a reload whose ssl_crl_file (or
// ssl_crl_dir) revokes one certificate, the recheck ends that
// certificate's sessions only, with FATAL 57P01 and the revoked message;
// a CRL with the issuer's name but another key's signature ends nothing;
// under "keep" nothing ends.
func TestRevsessReloadMatching(t *testing.T) {
	for _, tc := range []struct {
		mode string
		dir  bool
	}{{"terminate", false}, {"terminate", true}, {"keep", false}, {"", false}} {
		mode := tc.mode
		t.Run(fmt.Sprintf("mode=%s,crl_dir=%v", mode, tc.dir), func(t *testing.T) {
			e := newRevsessEnvDir(t, mode, tc.dir)
			alice, err := e.ca.NewClient(pkix.Name{CommonName: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			bob, err := e.ca.NewClient(pkix.Name{CommonName: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			a1, a2, b := e.session(t, 1, alice), e.session(t, 2, alice), e.session(t, 3, bob)
			w := e.srv.ext.watch

			// A forged CRL: same issuer name, another key.
			forger, err := testpki.NewRootCA(pkix.Name{CommonName: "unit root"})
			if err != nil {
				t.Fatal(err)
			}
			e.writeCRL(t, forger, alice.Cert, bob.Cert)
			e.srv.Reload(e.load(t))
			w.recheckAll(endedCRLReload)
			for _, ls := range []*liveSession{a1, a2, b} {
				if got := stoppedWith(ls); got != "" {
					t.Fatalf("forged CRL ended session %d: %s", ls.info.ID, got)
				}
			}

			e.writeCRL(t, e.ca, alice.Cert)
			e.srv.Reload(e.load(t))
			w.recheckAll(endedCRLReload)
			want := "57P01 terminating connection because the client certificate was revoked"
			if mode != "terminate" {
				want = ""
			}
			for _, ls := range []*liveSession{a1, a2} {
				if got := stoppedWith(ls); got != want {
					t.Errorf("session %d: stopped with %q, want %q", ls.info.ID, got, want)
				}
			}
			if got := stoppedWith(b); got != "" {
				t.Errorf("bob's session stopped: %s", got)
			}
			n := testutil.ToFloat64(e.srv.metrics.revsess.WithLabelValues(endedCRLReload))
			logs := e.logs.String()
			if mode == "terminate" {
				if n != 2 || strings.Count(logs, "event=session_revoked") != 2 || !strings.Contains(logs, "reason=crl_reload") {
					t.Fatalf("counted %v; log:\n%s", n, logs)
				}
			} else if n != 0 || strings.Contains(logs, "session_revoked") {
				t.Fatalf("keep: counted %v; log:\n%s", n, logs)
			}
		})
	}
}

// TestRevsessExpiryOrder: the heap hands sessions out by their chain's
// earliest notAfter, whatever the order they came in, and a session that
// ends leaves it.
func TestRevsessExpiryOrder(t *testing.T) {
	e := newRevsessEnv(t, "terminate")
	w := newSessionWatch(e.srv)
	w.started = true // no goroutine: the test drives expire itself
	base := time.Now().Add(time.Hour)
	var all []*liveSession
	for i, off := range []int{5, 1, 4, 2, 3} {
		backend, other := net.Pipe()
		t.Cleanup(func() { backend.Close(); other.Close() })
		ls := &liveSession{
			info:  admin.SessionInfo{ID: uint64(i + 1)},
			certs: &sessionCerts{expires: base.Add(time.Duration(off) * time.Second), idx: -1},
			ctl:   newSessionControl(backend),
		}
		w.add(ls, w.generation(), e.srv.state.Load())
		all = append(all, ls)
	}
	w.remove(all[2]) // expires at +4s, ended before
	expired := func() []uint64 {
		var out []uint64
		for _, ls := range all {
			if stoppedWith(ls) != "" {
				out = append(out, ls.info.ID)
			}
		}
		return out
	}
	for _, tc := range []struct {
		at   time.Duration
		want string
	}{
		{0, "[]"},
		{1500 * time.Millisecond, "[2]"},
		{2 * time.Second, "[2 4]"}, // notAfter itself has passed
		{10 * time.Second, "[1 2 4 5]"},
	} {
		w.expire(base.Add(tc.at), true)
		if got := fmt.Sprint(expired()); got != tc.want {
			t.Fatalf("at +%s: ended %s, want %s", tc.at, got, tc.want)
		}
	}
	if stoppedWith(all[1]) != "57P01 terminating connection because the client certificate has expired" {
		t.Fatalf("error: %q", stoppedWith(all[1]))
	}
	if w.byExpiry.Len() != 0 {
		t.Fatalf("%d left in the heap", w.byExpiry.Len())
	}
	if n := testutil.ToFloat64(e.srv.metrics.revsess.WithLabelValues(endedExpired)); n != 4 {
		t.Fatalf("counted %v", n)
	}
}

// TestRevsessGoroutineEnds: the watch's goroutine starts with the first
// session and ends with the server.
func TestRevsessGoroutineEnds(t *testing.T) {
	e := newRevsessEnv(t, "terminate")
	alice, err := e.ca.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithValidity(time.Now().Add(-time.Hour), time.Now().Add(2*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	ls := e.session(t, 1, alice)
	w := e.srv.ext.watch
	w.add(ls, w.generation(), e.srv.state.Load())
	// The expiry timer fires by itself: the backend read deadline the
	// stop sets is the event (the one set here only bounds the wait).
	backend := ls.ctl.backend
	_ = backend.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1)
	if _, err := backend.Read(buf); err == nil || !isTimeout(err) {
		t.Fatalf("backend read: %v", err)
	}
	if got := stoppedWith(ls); !strings.Contains(got, "has expired") {
		t.Fatalf("stopped with %q", got)
	}
	e.srv.Close()
	select {
	case <-w.done:
	default:
		t.Fatal("Close returned before the watch goroutine ended")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestRevsessSetCRLs: a running session is held to the CRLs of the CA
// set that admitted it, as at login. Sets @a and @b trust the same root,
// each with a crl_file of its own: a CRL in @a's that revokes alice ends
// her session admitted through @a, never the one admitted through @b.
// A reload that drops @a leaves its session held to no configured CRLs
// (sessionSet): @a's, which revoke alice, no longer end it; one that
// brings @b a new crl_file holds @b's session to it.
func TestRevsessSetCRLs(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "unit root"})
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := ca.NewClient(pkix.Name{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCRL := func(name string, revoked ...*x509.Certificate) {
		t.Helper()
		now := time.Now()
		crl, err := ca.CRL(revoked, now.Add(-time.Minute), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		write(name, crl)
	}
	write("server.crt", srvLeaf.CertPEM)
	write("server.key", srvLeaf.KeyPEM)
	write("root.crt", ca.CertPEM)
	writeCRL("a.crl")
	writeCRL("b.crl")
	load := func(hba, tables string) *config.Runtime {
		t.Helper()
		write("pg_hba.conf", []byte(hba))
		write("pgcertgate.toml", []byte(`
hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
ssl_crl_file = "b.crl"
revoked_sessions = "terminate"
[backend]
dsn = "host=127.0.0.1 port=1 sslmode=disable"
`+tables))
		rt, err := config.Load(filepath.Join(dir, "pgcertgate.toml"))
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	const both = "hostssl a all all cert clientca=@a\nhostssl b all all cert clientca=@b\n"
	const setA = "[client_ca.a]\nfile = \"root.crt\"\ncrl_file = \"a.crl\"\n"
	const setB = "[client_ca.b]\nfile = \"root.crt\"\ncrl_file = \"b.crl\"\n"
	srv := New(Options{Runtime: load(both, setA+setB), Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { srv.Close() })
	viaA, viaB := sessionIn(t, srv, 1, alice, "@a"), sessionIn(t, srv, 2, alice, "@b")
	w := srv.ext.watch
	const revoked = "57P01 terminating connection because the client certificate was revoked"

	// @a's CRL revokes alice: the session @a admitted ends, @b's runs on.
	writeCRL("a.crl", alice.Cert)
	srv.Reload(load(both, setA+setB))
	w.recheckAll(endedCRLReload)
	if got := stoppedWith(viaA); got != revoked {
		t.Fatalf("session admitted through @a: stopped with %q, want %q", got, revoked)
	}
	if got := stoppedWith(viaB); got != "" {
		t.Fatalf("session admitted through @b ended by @a's CRL: %s", got)
	}

	// A reload without @a: a session @a admitted is held to no
	// configured CRLs, and @a's, which revoke alice, no longer count.
	// (Alice's chain as @a admitted it before its CRL revoked her: the
	// same chain, verified through @b, then recorded as @a's.) The same
	// session while @a is loaded is ended, so the case tests the rule.
	viaA2 := sessionIn(t, srv, 3, alice, "@b")
	viaA2.certs.set = "@a"
	srv.Reload(load("hostssl b all all cert clientca=@b\n", setB))
	w.recheckAll(endedCRLReload)
	if got := stoppedWith(viaA2); got != "" {
		t.Fatalf("session of a dropped set: stopped with %q, want it to run on", got)
	}
	srv.Reload(load(both, setA+setB))
	w.recheckAll(endedCRLReload)
	if got := stoppedWith(viaA2); got != revoked {
		t.Fatalf("session of @a once @a is back: stopped with %q, want %q", got, revoked)
	}
	if got := stoppedWith(viaB); got != "" {
		t.Fatalf("session admitted through @b ended: %s", got)
	}

	// @b replaced, with a crl_file that revokes alice: @b's session ends.
	writeCRL("b2.crl", alice.Cert)
	srv.Reload(load("hostssl b all all cert clientca=@b\n", "[client_ca.b]\nfile = \"root.crt\"\ncrl_file = \"b2.crl\"\n"))
	w.recheckAll(endedCRLReload)
	if got := stoppedWith(viaB); got != revoked {
		t.Fatalf("session admitted through @b after its crl_file changed: stopped with %q, want %q", got, revoked)
	}
}

// waitStopped waits until ls's session is asked to stop: the stop's
// backend read deadline is the event. The caller sets a deadline on that
// backend before whatever stops it; it only bounds the wait.
func waitStopped(t *testing.T, ls *liveSession) string {
	t.Helper()
	buf := make([]byte, 1)
	if _, err := ls.ctl.backend.Read(buf); err == nil || !isTimeout(err) {
		t.Fatalf("backend read: %v", err)
	}
	return stoppedWith(ls)
}

// TestRevsessLateSession: a connection verified before a reload (or a
// fetched CRL's update) that goes live only after the recheck it caused
// is rechecked when it is added. Bob's session is live and alice's
// connection verified, not yet live, when a CRL revoking both is loaded:
// the reload's recheck ends bob's, and alice's is ended as soon as it
// goes live, through startLive as the relay calls it. The cases are the
// pairs of (state, generation) a connection can hold: both from before
// the reload; the state from before and the generation read after it;
// the state current and the generation from before, as a fetched CRL's
// update (which leaves the state alone) makes it.
func TestRevsessLateSession(t *testing.T) {
	for _, tc := range []struct {
		name string
		// newState: the connection holds the state in force after the
		// reload; newGen: it read the generation after the reload.
		newState, newGen bool
	}{
		{"state_and_generation_before_reload", false, false},
		{"state_before_generation_after_reload", false, true},
		{"generation_only", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRevsessEnv(t, "terminate")
			w := e.srv.ext.watch
			alice, err := e.ca.NewClient(pkix.Name{CommonName: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			bob, err := e.ca.NewClient(pkix.Name{CommonName: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			b := e.session(t, 1, bob)
			w.add(b, w.generation(), e.srv.state.Load())

			// Alice's connection begins and verifies.
			gen, st := w.generation(), e.srv.state.Load()
			a := verifiedSession(t, st, 2, alice, certauth.DefaultSet)
			_ = b.ctl.backend.SetReadDeadline(time.Now().Add(10 * time.Second))
			_ = a.ctl.backend.SetReadDeadline(time.Now().Add(10 * time.Second))

			e.writeCRL(t, e.ca, alice.Cert, bob.Cert)
			e.srv.Reload(e.load(t))
			const revoked = "57P01 terminating connection because the client certificate was revoked"
			if got := waitStopped(t, b); got != revoked {
				t.Fatalf("bob's live session: stopped with %q, want %q", got, revoked)
			}
			if tc.newState {
				st = e.srv.state.Load()
			}
			if tc.newGen {
				gen = w.generation()
			}

			// Alice's connection goes live, as runSession makes it.
			c := &clientConn{srv: e.srv, state: st, crlGen: gen, id: 2, user: "alice", database: "db"}
			s := &session{cancel: &cancelTarget{}, meta: sessionMeta{fingerprint: a.fingerprint, certs: a.certs}}
			ls := c.startLive(s, a.ctl)
			t.Cleanup(func() { c.endLive(s, ls) })
			if got := waitStopped(t, ls); got != revoked {
				t.Fatalf("alice's session, live after the recheck: stopped with %q, want %q", got, revoked)
			}
		})
	}
}

// TestRevsessAddCurrent: a session verified under the state and
// generation in force is not queued for a recheck of its own.
func TestRevsessAddCurrent(t *testing.T) {
	e := newRevsessEnv(t, "terminate")
	w := newSessionWatch(e.srv)
	w.started = true // no goroutine: the queue stays as add left it
	alice, err := e.ca.NewClient(pkix.Name{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		gen   uint64
		st    *state
		queue int
	}{
		{"current", w.generation(), e.srv.state.Load(), 0},
		{"older_generation", w.generation() + 1, e.srv.state.Load(), 1},
		{"older_state", w.generation(), newState(e.load(t)), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.late = nil
			ls := verifiedSession(t, e.srv.state.Load(), 1, alice, certauth.DefaultSet)
			w.add(ls, tc.gen, tc.st)
			defer w.remove(ls)
			if len(w.late) != tc.queue {
				t.Fatalf("queued %d for a recheck, want %d", len(w.late), tc.queue)
			}
		})
	}
}
