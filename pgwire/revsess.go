package pgwire

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/revocation"
)

// The client's last message when revoked_sessions = "terminate" ends its
// session. The messages are pgcertgate's own, worded in PostgreSQL's
// style; the SQLSTATE is pg_terminate_backend's, 57P01 (admin_shutdown):
// the session is ended from outside, as an administrator would end it.
const (
	msgCertRevoked = "terminating connection because the client certificate was revoked"
	msgCertExpired = "terminating connection because the client certificate has expired"
)

func certRevokedError() *Error { return fatal(codeAdminShutdown, "cert_revoked", msgCertRevoked) }
func certExpiredError() *Error { return fatal(codeAdminShutdown, "cert_expired", msgCertExpired) }

// sessionCerts is what a session keeps of its verified client chain to
// recheck it while it runs: a CertRef per certificate but the root, the
// earliest notAfter of the whole chain (root included), and the name of
// the CA set that admitted it, whose CRLs alone the chain is held to. The
// parsed chain itself is dropped after authentication, and so is the set:
// a session that outlives many reloads must not keep each reload's CRLs.
type sessionCerts struct {
	refs    []revocation.CertRef
	expires time.Time
	// set names the CA set that verified the chain (Peer.CASet).
	set string
	// idx is the session's place in the watch's expiry heap, -1 when it
	// is not there; guarded by sessionWatch.mu.
	idx int
}

// newSessionCerts describes p's verified chain; nil without one.
func newSessionCerts(p *certauth.Peer) *sessionCerts {
	if p == nil || !p.Verified || len(p.Chain) == 0 {
		return nil
	}
	sc := &sessionCerts{refs: revocation.Refs(p.Chain), set: p.CASet, idx: -1}
	for _, c := range p.Chain {
		if sc.expires.IsZero() || c.NotAfter.Before(sc.expires) {
			sc.expires = c.NotAfter
		}
	}
	return sc
}

// sessionWatch ends running sessions whose client certificate is revoked
// or expires, under revoked_sessions = "terminate". One goroutine per
// server does all of it, started with the first watched session:
//   - expiry: a heap of sessions by earliest notAfter and one timer for
//     the earliest;
//   - a reload (which may bring new ssl_crl_file or ssl_crl_dir CRLs) or
//     a fetched CRL's update: every session is rechecked from what is
//     held, without any request;
//   - a session that goes live after such an event but was verified
//     before it (its handshake, authentication and backend connect
//     straddled the event, which rechecked only the sessions already
//     live): that session is rechecked the same way when it is added;
//   - every ssl_ocsp_recheck_interval under ssl_ocsp: a pass that asks
//     the responders again (in a second goroutine, at most one at a time,
//     so that a slow responder never delays an expiry).
//
// Sessions are ended with sessionControl.stop, as the admin API's
// terminate ends them. Under "keep" nothing is ended; the setting in
// force when an event happens decides, so that switching to "terminate"
// and reloading ends the sessions already revoked or expired.
type sessionWatch struct {
	srv *Server

	// gen counts the events that may revoke a verified chain without a
	// new login: reloads and fetched CRLs' updates. A connection reads it
	// before its handshake (clientConn.crlGen); a session added under an
	// older generation was verified against what such an event has since
	// replaced.
	gen atomic.Uint64

	mu       sync.Mutex
	byExpiry expiryHeap
	// late lists the sessions added after an event their verification
	// predates, for the goroutine to recheck.
	late    []*liveSession
	started bool
	closed  bool
	// lastPass is when the last OCSP pass began; zero while no session
	// is watched.
	lastPass time.Time

	// recheck carries the reason of the pending recheck of every
	// session (endedCRLReload or endedCRLFetch); changed says the
	// earliest expiry may have moved.
	recheck chan string
	changed chan struct{}
	quit    chan struct{}
	done    chan struct{}

	passMu     sync.Mutex
	passCancel context.CancelFunc
	passDone   chan struct{} // closed when the pass in flight ends; nil for none
}

func newSessionWatch(s *Server) *sessionWatch {
	return &sessionWatch{
		srv:     s,
		recheck: make(chan string, 2),
		changed: make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// startSessionWatch makes the server's sessionWatch (its goroutine
// starts with the first session). Call it in New, once the revocation
// checker exists and before any handshake.
func (s *Server) startSessionWatch() {
	w := newSessionWatch(s)
	s.ext.watch = w
	// A fetched CRL that changes may revoke running sessions.
	s.revoker.SetOnCRLUpdate(func() { w.requestRecheck(endedCRLFetch) })
}

// generation is what a connection reads before its handshake checks
// revocation, and hands to add with the state it was verified under.
func (w *sessionWatch) generation() uint64 {
	if w == nil {
		return 0
	}
	return w.gen.Load()
}

// add watches ls, starting the goroutine on the first session. seen and
// st are the generation and the state its connection was verified
// under: if a reload or a fetched CRL's update has come since, the
// recheck it caused did not see ls (only sessions already live are
// rechecked), so ls is rechecked now. The state is compared too because
// a connection reads the generation after its state: a reload between
// the two shows in the state alone.
func (w *sessionWatch) add(ls *liveSession, seen uint64, st *state) {
	if ls.certs == nil {
		return
	}
	// ls is in the live registry already (startLive): the recheck of an
	// event after these loads lists it; an event before them has changed
	// the generation or the state.
	stale := seen != w.gen.Load() || st != w.srv.state.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if !w.started {
		w.started = true
		go w.run()
	}
	heap.Push(&w.byExpiry, ls)
	if stale {
		w.late = append(w.late, ls)
	}
	if stale || ls.certs.idx == 0 {
		w.signal()
	}
}

// remove stops watching ls (its session has ended).
func (w *sessionWatch) remove(ls *liveSession) {
	if ls.certs == nil {
		return
	}
	w.mu.Lock()
	if ls.certs.idx >= 0 {
		heap.Remove(&w.byExpiry, ls.certs.idx)
	}
	w.mu.Unlock()
}

func (w *sessionWatch) signal() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// requestRecheck asks for every session to be rechecked for reason. It
// starts a new generation first: a connection verified before this call
// but not yet live is rechecked when it is added.
func (w *sessionWatch) requestRecheck(reason string) {
	w.gen.Add(1)
	select {
	case w.recheck <- reason:
	default:
		// Two are pending already: one more would find the same.
	}
}

// reloaded is called after a reload has swapped in a new state.
func (w *sessionWatch) reloaded() { w.requestRecheck(endedCRLReload) }

// close stops the goroutines and waits for them.
func (w *sessionWatch) close() {
	w.mu.Lock()
	started := w.started
	if !w.closed {
		w.closed = true
		close(w.quit)
	}
	w.mu.Unlock()
	if started {
		<-w.done
	}
}

func (w *sessionWatch) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	defer w.stopPass()
	for {
		now := time.Now()
		st := w.srv.state.Load()
		cfg := st.rt.Config
		terminate := cfg.TerminateRevokedSessions()
		w.expire(now, terminate)
		w.recheckLate(st, terminate)
		wake := w.nextWake(now, st, terminate)
		var fire <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
			fire = timer.C
		}
		select {
		case <-fire:
		case <-w.changed:
		case reason := <-w.recheck:
			w.recheckAll(reason)
		case <-w.quit:
			return
		}
		timer.Stop()
	}
}

// expire pops the sessions whose chain has passed notAfter and, under
// terminate, ends them.
func (w *sessionWatch) expire(now time.Time, terminate bool) {
	var due []*liveSession
	w.mu.Lock()
	for w.byExpiry.Len() > 0 && !now.Before(w.byExpiry[0].certs.expires) {
		due = append(due, heap.Pop(&w.byExpiry).(*liveSession))
	}
	w.mu.Unlock()
	if !terminate {
		// Kept; a reload to "terminate" ends them (recheckAll).
		return
	}
	for _, ls := range due {
		w.end(ls, endedExpired, -1)
	}
}

// nextWake is when the loop must next run by itself: the earliest
// expiry, or the next OCSP pass, which it starts when due.
func (w *sessionWatch) nextWake(now time.Time, st *state, terminate bool) time.Time {
	w.mu.Lock()
	var wake time.Time
	n := w.byExpiry.Len()
	if n > 0 {
		wake = w.byExpiry[0].certs.expires
	}
	if n == 0 || !terminate || st.revocation.OCSP == revocation.Off {
		w.lastPass = time.Time{}
		w.mu.Unlock()
		return wake
	}
	if w.lastPass.IsZero() {
		w.lastPass = now
	}
	next := w.lastPass.Add(st.rt.Config.OCSPRecheckInterval())
	if !now.Before(next) {
		w.lastPass = now
		next = now.Add(st.rt.Config.OCSPRecheckInterval())
		w.mu.Unlock()
		w.startPass(st)
		w.mu.Lock()
	}
	w.mu.Unlock()
	if wake.IsZero() || next.Before(wake) {
		wake = next
	}
	return wake
}

// watched lists the sessions that have a verified client chain.
func (w *sessionWatch) watched() []*liveSession {
	var out []*liveSession
	for _, ls := range w.srv.ext.live.snapshot() {
		if ls.certs != nil {
			out = append(out, ls)
		}
	}
	return out
}

// recheckAll rechecks every session from what is held: the configured
// CRLs of the CA set that admitted it, as the state in force loads that
// set, cached OCSP answers and fetched CRLs, and expiry (for sessions
// kept under "keep" until a reload said "terminate").
func (w *sessionWatch) recheckAll(reason string) {
	st := w.srv.state.Load()
	if !st.rt.Config.TerminateRevokedSessions() {
		return
	}
	now := time.Now()
	crls := newConfiguredCRLs()
	for _, ls := range w.watched() {
		w.recheckOne(ls, st, crls, now, reason)
	}
}

// recheckLate rechecks the sessions add found verified before the last
// reload or fetched CRL's update. Under "keep" they are dropped from the
// list: a reload to "terminate" rechecks every session.
func (w *sessionWatch) recheckLate(st *state, terminate bool) {
	w.mu.Lock()
	late := w.late
	w.late = nil
	w.mu.Unlock()
	if len(late) == 0 || !terminate {
		return
	}
	now := time.Now()
	crls := newConfiguredCRLs()
	for _, ls := range late {
		// A configured CRL says crl_reload; a fetched CRL (or a cached
		// OCSP answer) crl_fetched, as after that CRL's update.
		w.recheckOne(ls, st, crls, now, endedCRLFetch)
	}
}

// recheckOne rechecks one session under st from what is held, and ends it
// if its chain has expired or is revoked.
func (w *sessionWatch) recheckOne(ls *liveSession, st *state, crls *configuredCRLs, now time.Time, reason string) {
	if !now.Before(ls.certs.expires) {
		w.end(ls, endedExpired, -1)
		return
	}
	set := sessionSet(st, ls.certs)
	configured := crls.of(set)
	status, depth := w.srv.revoker.RecheckWith(ls.certs.refs, sessionPolicy(st, set), configured)
	if status != revocation.Revoked {
		return
	}
	why := reason
	if configured.Revoked(ls.certs.refs[depth]) {
		why = endedCRLReload
	} else if reason == endedCRLReload {
		// Not the configured CRLs: a cached OCSP answer or a
		// fetched CRL, which a reload did not bring.
		why = endedCRLFetch
	}
	w.end(ls, why, depth)
}

// startPass starts an OCSP recheck pass over every session unless one is
// still running.
func (w *sessionWatch) startPass(st *state) {
	w.passMu.Lock()
	defer w.passMu.Unlock()
	if w.passDone != nil {
		select {
		case <-w.passDone:
		default:
			return
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w.passCancel, w.passDone = cancel, done
	sessions := w.watched()
	go func() {
		defer close(done)
		defer cancel()
		pass := w.srv.revoker.NewOCSPPass()
		for _, ls := range sessions {
			if ctx.Err() != nil {
				return
			}
			status, depth := pass.Recheck(ctx, ls.certs.refs, sessionPolicy(st, sessionSet(st, ls.certs)))
			if status != revocation.Revoked {
				continue
			}
			// The setting may have changed while the pass ran.
			if w.srv.state.Load().rt.Config.TerminateRevokedSessions() {
				w.end(ls, endedOCSP, depth)
			}
		}
	}()
}

// stopPass cancels the OCSP pass in flight and waits for it.
func (w *sessionWatch) stopPass() {
	w.passMu.Lock()
	cancel, done := w.passCancel, w.passDone
	w.passMu.Unlock()
	if done == nil {
		return
	}
	cancel()
	<-done
}

// end stops one session for its certificate, and logs and counts it once.
// depth is the revoked certificate's (0 the leaf); -1 for expiry.
func (w *sessionWatch) end(ls *liveSession, reason string, depth int) {
	e, event, msg := certRevokedError(), "session_revoked", "session ended: client certificate revoked"
	if reason == endedExpired {
		e, event, msg = certExpiredError(), "session_expired", "session ended: client certificate expired"
	}
	if !ls.ctl.stop(e) {
		return
	}
	w.srv.metrics.sessionEndedFor(reason)
	attrs := []slog.Attr{
		slog.String("event", event),
		slog.Uint64("conn_id", ls.info.ID),
		slog.String("client", ls.info.Client),
		slog.String("user", ls.info.User),
		slog.String("database", ls.info.Database),
		slog.String("cert_sha256", ls.fingerprint),
		slog.Uint64("backend_pid", uint64(ls.info.BackendPID)),
		slog.String("reason", reason),
	}
	if depth >= 0 {
		attrs = append(attrs, slog.Int("depth", depth))
	} else {
		attrs = append(attrs, slog.Time("not_after", ls.certs.expires))
	}
	w.srv.log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// sessionSet is the CA set whose CRLs a session's chain is held to under
// st: the set of the same name in st (a reload that replaced the set
// brings its new CRLs). A chain is never held to another set's CRLs, as
// at login.
//
// Nil, and so no configured CRLs, when st has no set of that name: a
// reload removed it, and with it the CRLs the operator configured for it.
// The session is still held to OCSP, fetched CRLs and expiry. Keeping
// the removed set's CRLs as loaded would keep every such set's CRL store
// alive for as long as its sessions last, to hold them to files the
// chain already passed at login (only a removed set's crl_dir could add
// to them); ending the session instead would make renaming a set end its
// sessions, which no other part of a reload does (sessions keep the
// configuration they authenticated under). An operator who wants the
// sessions of a removed set gone ends them through the admin API.
func sessionSet(st *state, sc *sessionCerts) *certauth.CASet {
	if t := st.rt.ClientCAs; t != nil && sc.set != "" {
		return t.Set(sc.set)
	}
	return nil
}

// sessionPolicy is st's revocation policy for a chain that set verified:
// only that set's CRLs have been applied to it (revocationCheck).
func sessionPolicy(st *state, set *certauth.CASet) revocation.Policy {
	p := st.revocation
	p.ConfiguredCRL = set != nil && set.ChecksCRLs()
	return p
}

// configuredCRLs holds, for one recheck of every session under one
// state, the configured CRLs of each CA set, looked up once per set and
// issuer.
type configuredCRLs struct {
	m map[crlKey]*certauth.ConfiguredCRLs
}

type crlKey struct {
	v      *certauth.Verifier
	issuer [32]byte
}

func newConfiguredCRLs() *configuredCRLs {
	return &configuredCRLs{m: make(map[crlKey]*certauth.ConfiguredCRLs)}
}

// of is revocation.ConfiguredCRLs for the chains set verified: that
// set's CRLs alone (none for a nil set).
func (c *configuredCRLs) of(set *certauth.CASet) setCRLs {
	out := setCRLs{c: c}
	if set != nil {
		out.v = set.Verifier()
	}
	return out
}

// setCRLs is one CA set's configured CRLs.
type setCRLs struct {
	c *configuredCRLs
	v *certauth.Verifier // nil: no set, no CRLs
}

// Revoked implements revocation.ConfiguredCRLs.
func (s setCRLs) Revoked(r revocation.CertRef) bool {
	if s.v == nil {
		return false
	}
	k := crlKey{s.v, r.IssuerKeyHash}
	x, ok := s.c.m[k]
	if !ok {
		x = s.v.ConfiguredCRLsFor(r.Issuer)
		s.c.m[k] = x
	}
	return x.Revoked(r.SerialOf())
}

// expiryHeap orders watched sessions by their chain's earliest notAfter.
type expiryHeap []*liveSession

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].certs.expires.Before(h[j].certs.expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].certs.idx, h[j].certs.idx = i, j
}
func (h *expiryHeap) Push(x any) {
	ls := x.(*liveSession)
	ls.certs.idx = len(*h)
	*h = append(*h, ls)
}
func (h *expiryHeap) Pop() any {
	old := *h
	ls := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	ls.certs.idx = -1
	return ls
}
