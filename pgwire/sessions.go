package pgwire

import (
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgcertgate/pgcertgate/admin"
)

// codeAdminShutdown is admin_shutdown, what pg_terminate_backend's FATAL
// carries.
const codeAdminShutdown = "57P01"

// stopGrace is how long a stopping session's relay waits for the backend
// to finish a message it has begun, so that the client's ErrorResponse
// lands between two messages. Past it the session is closed without one:
// a message cut in the middle must never be followed by another.
const stopGrace = 2 * time.Second

// terminateWait bounds how long Terminate waits for the session to end.
const terminateWait = stopGrace + 3*time.Second

// sessionControl ends a running session from outside its relay, the way
// PostgreSQL's pg_terminate_backend does: the backend-to-client copier
// stops at the next message boundary (at once when the backend is idle),
// the client is sent one ErrorResponse there, the backend's query is
// cancelled and both connections are closed. The admin API's terminate
// uses it with 57P01; anything else that must end sessions (a certificate
// revoked or expired while its sessions run) uses it with its own error,
// through Server.stopSessions.
type sessionControl struct {
	requested atomic.Bool

	mu      sync.Mutex
	err     *Error
	backend net.Conn
	done    bool          // the relay is over: stops are refused
	ended   chan struct{} // closed when the session has ended
	// up and down are the relay's copiers, for live byte counts; nil
	// until the relay starts.
	up, down *copier
	// wake, when set, tells an event loop relaying the session that a
	// stop was requested (the deadline above reaches only Go's poller).
	wake func()
}

func newSessionControl(backend net.Conn) *sessionControl {
	return &sessionControl{backend: backend, ended: make(chan struct{})}
}

// stop asks the session to end with e. It reports false when the session
// is already over or stopping.
func (sc *sessionControl) stop(e *Error) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.done || sc.err != nil {
		return false
	}
	sc.err = e
	sc.requested.Store(true)
	// Wake the copier if it waits for the backend. Under the lock: once
	// the relay is over (done) the backend may go to another session,
	// whose reads this deadline must never touch.
	_ = sc.backend.SetReadDeadline(time.Now())
	if sc.wake != nil {
		sc.wake()
	}
	return true
}

// finish marks the relay over: later stops are refused. It returns the
// error the session was stopped with, if any. Safe on nil.
func (sc *sessionControl) finish() *Error {
	if sc == nil {
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.done = true
	return sc.err
}

// sendError writes the stop's error to the client, bounded in time: a
// client that does not read must not hold the relay.
func (sc *sessionControl) sendError(client net.Conn) {
	sc.mu.Lock()
	e := sc.err
	sc.mu.Unlock()
	if e == nil {
		return
	}
	buf, _ := encodeError(e)
	_ = client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = client.Write(buf)
}

func (sc *sessionControl) setCopiers(up, down *copier) {
	sc.mu.Lock()
	sc.up, sc.down = up, down
	sc.mu.Unlock()
}

// bytes is what the relay has moved so far: from and to the client.
func (sc *sessionControl) bytes() (in, out int64) {
	sc.mu.Lock()
	up, down := sc.up, sc.down
	sc.mu.Unlock()
	if up == nil {
		return 0, 0
	}
	return up.n.Load(), down.n.Load()
}

// backendScanner follows the backend's message boundaries for a relay,
// with the reuse tracker's scanner when there is one, or its own. When a
// stop is requested it cuts the stream before the next message, or right
// after the message in progress ends.
type backendScanner struct {
	f        *frameScanner
	keep     func(byte) bool
	body     func(byte, []byte)
	ctl      *sessionControl
	extended bool
}

func newBackendScanner(t *sessionTracker, ctl *sessionControl) *backendScanner {
	if t != nil {
		return &backendScanner{f: &t.backend, keep: backendKeeps, body: t.backendBody, ctl: ctl}
	}
	return &backendScanner{f: &frameScanner{}, keep: noBody, ctl: ctl}
}

func (b *backendScanner) header(byte) bool { return !b.ctl.requested.Load() }

func (b *backendScanner) scan(p []byte) (int, bool) {
	if b.body == nil && !b.ctl.requested.Load() {
		// Without a tracker only the lengths matter: the common case
		// skips the callbacks.
		skipFrames(b.f, p)
		return len(p), false
	}
	fwd, stop := b.f.feed(p, b.header, b.keep, b.body)
	if !stop && b.ctl.requested.Load() && b.f.atBoundary() {
		return fwd, true
	}
	return fwd, stop
}

// skipFrames advances f over p, following message lengths only. It keeps
// f's state exactly as feed would with no body kept, so feed can take
// over at any point (once a stop is requested).
func skipFrames(f *frameScanner, p []byte) {
	i := 0
	for i < len(p) && !f.broken {
		if f.remaining > 0 {
			n := min(f.remaining, len(p)-i)
			f.remaining -= n
			i += n
			continue
		}
		var length int
		if f.hdrN == 0 && len(p)-i >= len(f.hdr) {
			length = int(int32(binary.BigEndian.Uint32(p[i+1:]))) - 4
			f.typ = p[i]
			i += len(f.hdr)
		} else {
			// A header split between reads.
			n := copy(f.hdr[f.hdrN:], p[i:])
			f.hdrN += n
			i += n
			if f.hdrN < len(f.hdr) {
				return
			}
			f.hdrN = 0
			f.typ = f.hdr[0]
			length = int(int32(binary.BigEndian.Uint32(f.hdr[1:]))) - 4
		}
		if length < 0 {
			f.broken = true
			return
		}
		n := min(length, len(p)-i)
		i += n
		f.remaining = length - n
	}
}

// readFailed decides what a failed backend read means while stopping: a
// cut at a boundary, or one more bounded wait for the message in
// progress.
func (b *backendScanner) readFailed(err error) (cut, retry bool) {
	var ne net.Error
	if !b.ctl.requested.Load() || !errors.As(err, &ne) || !ne.Timeout() {
		return false, false
	}
	if b.f.atBoundary() {
		return true, false
	}
	if b.extended {
		return false, false
	}
	b.extended = true
	_ = b.ctl.backend.SetReadDeadline(time.Now().Add(stopGrace))
	return false, true
}

// liveSession is one relayed session, for the admin API and for stops.
type liveSession struct {
	info        admin.SessionInfo
	fingerprint string        // the client certificate's SHA-256; "" without one
	certs       *sessionCerts // for rechecks (revsess.go); nil without a verified chain
	ctl         *sessionControl
}

// liveSessions lists the sessions being relayed.
type liveSessions struct {
	mu sync.Mutex
	m  map[uint64]*liveSession
}

func (l *liveSessions) add(s *liveSession) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[uint64]*liveSession)
	}
	l.m[s.info.ID] = s
	l.mu.Unlock()
}

func (l *liveSessions) remove(id uint64) {
	l.mu.Lock()
	delete(l.m, id)
	l.mu.Unlock()
}

func (l *liveSessions) snapshot() []*liveSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*liveSession, 0, len(l.m))
	for _, s := range l.m {
		out = append(out, s)
	}
	return out
}

// Sessions implements admin.Sessions: every session being relayed, oldest
// first.
func (s *Server) Sessions() []admin.SessionInfo {
	live := s.ext.live.snapshot()
	out := make([]admin.SessionInfo, 0, len(live))
	for _, ls := range live {
		info := ls.info
		info.BytesIn, info.BytesOut = ls.ctl.bytes()
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b admin.SessionInfo) int { return a.Start.Compare(b.Start) })
	return out
}

// Terminate implements admin.Sessions: it ends one session as
// pg_terminate_backend would, with FATAL 57P01 "terminating connection
// due to administrator command", and waits (briefly) until it has ended.
func (s *Server) Terminate(id uint64) error {
	s.ext.live.mu.Lock()
	ls := s.ext.live.m[id]
	s.ext.live.mu.Unlock()
	if ls == nil || !ls.ctl.stop(adminTerminated()) {
		return admin.ErrNoSession
	}
	select {
	case <-ls.ctl.ended:
	case <-time.After(terminateWait):
	}
	return nil
}

// adminTerminated is what pg_terminate_backend makes a backend send.
func adminTerminated() *Error {
	return fatal(codeAdminShutdown, "admin_terminate", "terminating connection due to administrator command")
}

// stopSessions ends every session match selects with e, and returns how
// many it asked to stop.
func (s *Server) stopSessions(match func(*liveSession) bool, e *Error) int {
	n := 0
	for _, ls := range s.ext.live.snapshot() {
		if match(ls) && ls.ctl.stop(e) {
			n++
		}
	}
	return n
}
