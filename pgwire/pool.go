package pgwire

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/hba"
)

// resetTimeout bounds the reset query a returned backend must answer.
const resetTimeout = 5 * time.Second

// backendPool keeps the backend connections of sessions that ended cleanly
// (PgBouncer's session pooling). A connection is reset with the configured
// server_reset_query (DISCARD ALL by default) before it is kept.
//
// What a reset leaves behind. DISCARD ALL clears settings, prepared
// statements, portals, temporary tables, advisory locks, LISTEN and plan
// caches, but not state that lives in loaded code or in other processes:
// named dblink connections and postgres_fdw's connection cache (both
// logged in as whoever opened them), the random() seed set by setseed,
// modules brought in with LOAD (auto_explain and its settings' effects),
// PL/Perl's %_SHARED and PL/Python's GD, and anything an extension keeps
// in backend memory. That state is safe only with the certificate holder
// who created it, so a kept backend is handed back only to a client whose
// reuseKey is identical: the same verified leaf certificate (by SHA-256)
// through the same pg_hba.conf line, on top of the same role, database and
// startup parameters. Two certificates that map to the same role never
// share a backend. Replication connections are never kept.
type backendPool struct {
	// Reused counts sessions served by a kept backend.
	Reused atomic.Int64

	mu     sync.Mutex
	idle   map[string][]*idleBackend
	closed bool
	stop   chan struct{}
}

type idleBackend struct {
	s     *session
	since time.Time
}

func newBackendPool() *backendPool {
	p := &backendPool{idle: make(map[string][]*idleBackend), stop: make(chan struct{})}
	go p.reap()
	return p
}

// reuseKey identifies the backend sessions a client may take. "" means
// never reuse. The key holds who the client proved to be (holder: the
// leaf certificate's SHA-256, a peer socket session's uid, or "-" for
// neither; see clientConn.reuseHolder) and the pg_hba.conf line that
// admitted it (file, line and text, so that a reload that rewrites the
// line starts a new key), whatever pass_client_identity says; then the
// backend DSN, user, database and startup parameters.
func reuseKey(st *state, si *startupInfo, entry *hba.Entry, holder string) string {
	b := st.rt.Config.Backend
	if !b.Reuse || si.replication != replicationNone {
		return ""
	}
	// What the backend receives is a map: for a repeated name the last
	// value wins, so the key keeps only that one.
	last := make(map[string]string, len(si.params))
	for _, p := range si.params {
		last[p[0]] = p[1]
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %q %q", holder, entry.Location(), entry.Raw)
	fmt.Fprintf(&sb, " %q %q %q", b.DSN, si.user, si.database)
	for _, name := range slices.Sorted(maps.Keys(last)) {
		fmt.Fprintf(&sb, " %q=%q", name, last[name])
	}
	return sb.String()
}

// acquire returns an idle backend for key that is still alive, or nil.
func (p *backendPool) acquire(key string) *session {
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		ib := list[len(list)-1]
		p.idle[key] = list[:len(list)-1]
		if len(p.idle[key]) == 0 {
			delete(p.idle, key)
		}
		p.mu.Unlock()
		if alive(ib.s.backend) {
			p.Reused.Add(1)
			return ib.s
		}
		terminate(ib.s.backend)
	}
}

// alive reports whether an idle backend connection is still open and
// silent. An idle backend sends nothing; anything readable (a FATAL from
// idle_session_timeout or pg_terminate_backend, or EOF) means it is gone.
func alive(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now())
	var one [1]byte
	_, err := c.Read(one[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// release resets a session's backend and keeps it; it closes it instead
// when the reset fails, the pool is closed, or reuse is off in st.
func (p *backendPool) release(st *state, s *session) bool {
	b := st.rt.Config.Backend
	// A kept backend skips the checks PostgreSQL makes at login
	// (NOLOGIN, VALID UNTIL, CONNECT privilege, ALTER ROLE … SET): its
	// age is bounded so that such changes reach every session in time.
	if p == nil || !b.Reuse || time.Since(s.created) > b.ReuseMaxLifetime.Duration {
		terminate(s.backend)
		return false
	}
	if err := resetBackend(s, b.ServerResetQuery); err != nil {
		s.backend.Close()
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// One cap for all keys together: every distinct set of startup
	// parameters is a key, and idle backends count against the
	// backend's own max_connections.
	if p.closed || p.countLocked() >= b.ReuseMaxIdle {
		terminate(s.backend)
		return false
	}
	s.maxLifetime = b.ReuseMaxLifetime.Duration
	p.idle[s.reuseKey] = append(p.idle[s.reuseKey], &idleBackend{s: s, since: time.Now()})
	return true
}

// terminate ends a backend connection politely, with the Terminate
// message a client would send, so PostgreSQL logs no "unexpected EOF".
// Callers only use it on a connection that sits between messages.
func terminate(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{'X', 0, 0, 0, 4})
	c.Close()
}

// resetBackend runs the reset query and reads its answer up to an idle
// ReadyForQuery, recording any ParameterStatus changes it reports (RESET
// ALL puts application_name, TimeZone … back to the session defaults).
func resetBackend(s *session, query string) error {
	if query == "" {
		return nil
	}
	_ = s.backend.SetDeadline(time.Now().Add(resetTimeout))
	defer s.backend.SetDeadline(time.Time{})
	buf, err := (&pgproto3.Query{String: query}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := s.backend.Write(buf); err != nil {
		return err
	}
	fe := pgproto3.NewFrontend(s.backend, nil)
	var failed error
	for {
		msg, err := fe.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			failed = fmt.Errorf("reset query: %s", m.Message)
		case *pgproto3.ParameterStatus:
			s.params[m.Name] = m.Value
		case *pgproto3.ReadyForQuery:
			if failed != nil {
				return failed
			}
			if m.TxStatus != 'I' {
				return fmt.Errorf("reset query left transaction status %q", m.TxStatus)
			}
			return nil
		}
	}
}

// reap closes backends idle longer than their state's reuse_idle_timeout.
func (p *backendPool) reap() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.expire(now)
		}
	}
}

func (p *backendPool) expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, list := range p.idle {
		kept := list[:0]
		for _, ib := range list {
			if now.Sub(ib.since) > ib.s.idleTimeout || now.Sub(ib.s.created) > ib.s.maxLifetime {
				terminate(ib.s.backend)
				continue
			}
			kept = append(kept, ib)
		}
		if len(kept) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = kept
		}
	}
}

// idleCount is the number of kept backends.
func (p *backendPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.countLocked()
}

func (p *backendPool) countLocked() int {
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

// close closes every idle backend and stops the reaper.
func (p *backendPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.stop)
	for _, list := range p.idle {
		for _, ib := range list {
			terminate(ib.s.backend)
		}
	}
	p.idle = nil
}
