package pgwire

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/pgerr"
)

// drainState is a replica's way out of a balancer's rotation. A balancer
// notices a replica leaving only through its health checks (interval ×
// fall), and a CancelRequest for one of the replica's sessions can arrive
// at any replica, the draining one included, or be forwarded to it by a
// peer: so the replica first fails /readyz while it still accepts, then
// refuses new sessions on a listener that stays open for cancels, and
// closes it only once its last session has ended.
type drainState struct {
	// draining: Drain has begun; /readyz fails from here on.
	draining atomic.Bool
	// refusing: drain_delay has passed; startup packets are answered
	// with 57P03, CancelRequests are still served.
	refusing atomic.Bool
	// mu orders a new session's test of refusing after the slot it has
	// taken, and Drain's count of the slots after it sets refusing: each
	// new session is either counted by Drain or refused.
	mu sync.Mutex
	// wake is signalled (without blocking) each time a session ends.
	wake chan struct{}

	// Tests only: delay replaces the wait of drain_delay; slotTaken runs
	// between a new session's slot and its test of refusing.
	delay     func(ctx context.Context, d time.Duration)
	slotTaken func()
}

func newDrainState() drainState { return drainState{wake: make(chan struct{}, 1)} }

// sessionEnded wakes a Drain waiting for the sessions to end.
func (d *drainState) sessionEnded() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// errShuttingDown is PostgreSQL's answer to a startup packet during a
// smart shutdown (ProcessStartupPacket's CAC_SHUTDOWN; verified with
// PostgreSQL 15: "FATAL: the database system is shutting down", 57P03),
// sent after TLS and the startup packet, before authentication.
func errShuttingDown() *Error {
	return fatal(pgerr.CodeCannotConnectNow, "shutting_down", "the database system is shutting down")
}

// admitSession takes a max_connections slot for a new session, or says
// why there is none: the replica is refusing new sessions (drain_delay has
// passed), or max_connections are in use. The slot is taken before the
// drain is tested: Drain counts the slots after it starts refusing, so a
// session is either refused here or counted there, and Drain never closes
// the listener, where its cancels arrive, under a session that slipped in.
// A draining replica answers 57P03 before it counts, as PostgreSQL's
// postmaster tests its shutdown state (canAcceptConnections) before a
// backend finds max_connections in use.
func (s *Server) admitSession() error {
	ok := s.acquireSession()
	if s.drain.slotTaken != nil {
		s.drain.slotTaken()
	}
	s.drain.mu.Lock()
	refusing := s.drain.refusing.Load()
	s.drain.mu.Unlock()
	if refusing {
		if ok {
			s.releaseSession()
		}
		return errShuttingDown()
	}
	if !ok {
		return fatal(codeTooManyConnections, "too_many_connections", "sorry, too many clients already")
	}
	return nil
}

// startRefusing makes every later admitSession refuse, and returns the
// sessions that hold a slot: those the drain waits for.
func (s *Server) startRefusing() int {
	s.drain.mu.Lock()
	s.drain.refusing.Store(true)
	s.drain.mu.Unlock()
	return len(s.sessionSlots)
}

// waitDrainDelay waits d, or until ctx is done.
func (s *Server) waitDrainDelay(ctx context.Context, d time.Duration) {
	if s.drain.delay != nil {
		s.drain.delay(ctx, d)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Drain is SIGTERM's smart shutdown, for a replica behind a balancer:
//
//  1. /readyz fails at once (Serving reports false), while new sessions
//     are still accepted for drain_delay, long enough for the balancer's
//     health checks to take the replica out of rotation;
//  2. then the listeners stay open, but answer every startup packet with
//     57P03 "the database system is shutting down", as PostgreSQL does in
//     a smart shutdown: CancelRequests for this replica's sessions, from
//     clients or forwarded by peers, are still delivered, and cancels for
//     other replicas' sessions still forwarded;
//  3. once no session remains, or shutdown_timeout (counted from the end
//     of drain_delay) has passed, Shutdown closes the listeners and what
//     is left.
//
// Without [cluster] and with drain_delay 0 it is Shutdown with
// shutdown_timeout, as before: a lone proxy closes its listeners at once.
// Cancelling ctx (SIGINT) cuts every step short and closes everything.
func (s *Server) Drain(ctx context.Context) error {
	cfg := s.Config()
	delay, timeout := cfg.DrainDelay.Duration, cfg.ShutdownTimeout.Duration
	if delay <= 0 && !cfg.ClusterOn() {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return s.Shutdown(sctx)
	}
	s.drain.draining.Store(true)
	s.log.Info("draining: readiness fails, new sessions are still accepted until drain_delay has passed",
		slog.Duration("drain_delay", delay))
	if delay > 0 {
		s.waitDrainDelay(ctx, delay)
	}
	n := s.startRefusing()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if n > 0 && sctx.Err() == nil {
		deadline, _ := sctx.Deadline()
		s.log.Info("refusing new sessions; cancel requests are still served until the open sessions end",
			slog.Int("sessions", n), slog.Time("deadline", deadline))
	}
	for len(s.sessionSlots) > 0 && sctx.Err() == nil {
		select {
		case <-s.drain.wake:
		case <-sctx.Done():
		}
	}
	return s.Shutdown(sctx)
}
