package pgwire

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// relayBufSize is the copy buffer per direction. 32 KiB holds two full TLS
// records, so a busy COPY moves in few syscalls; buffers are pooled so an
// idle session's cost is its goroutines, not its buffers' allocation churn.
const relayBufSize = 32 << 10

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// copier moves bytes one way between client and backend. There is one
// copier type for both directions, so the two can never drift apart; its
// name shows in goroutine dumps.
type copier struct {
	name string
	dst  net.Conn
	src  io.Reader
	// scan, when set, follows message boundaries (for backend reuse) and
	// may cut the stream; nil means a blind byte copy.
	scan func(p []byte) (forward int, stop bool)
	n    int64
	err  error
	// cut is set when scan stopped the stream (the client's Terminate).
	cut bool
}

// run copies until src ends, a write fails, or scan cuts the stream. It
// allocates nothing per read: the buffer comes from the pool once per
// session.
func (cp *copier) run() {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		nr, rerr := cp.src.Read(buf)
		if nr > 0 {
			fwd := nr
			if cp.scan != nil {
				fwd, cp.cut = cp.scan(buf[:nr])
			}
			if fwd > 0 {
				nw, werr := cp.dst.Write(buf[:fwd])
				cp.n += int64(nw)
				if werr != nil {
					cp.err = werr
					return
				}
			}
			if cp.cut {
				return
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				cp.err = rerr
			}
			return
		}
	}
}

// relay joins client and backend until either side ends and returns the
// bytes moved each way. With a tracker, a client that leaves cleanly
// (Terminate, backend idle) leaves the backend open and keep is true: the
// caller may reset and reuse it. Otherwise both connections are closed.
func relay(client net.Conn, clientR io.Reader, backend net.Conn, t *sessionTracker) (fromClient, toClient int64, keep bool) {
	up := &copier{name: "client->backend", dst: backend, src: clientR}
	down := &copier{name: "backend->client", dst: client, src: backend}
	if t != nil {
		up.scan, down.scan = t.fromClient, t.fromBackend
	}
	done := make(chan *copier, 2)
	for _, cp := range []*copier{up, down} {
		go func() { cp.run(); done <- cp }()
	}
	first := <-done
	client.Close()
	if first == up && up.cut {
		// The client said Terminate. Stop reading the backend without
		// closing it: an expired read deadline ends the other copier
		// where it stands, and the tracker says whether that was
		// between messages.
		_ = backend.SetReadDeadline(time.Now())
		<-done
		_ = backend.SetReadDeadline(time.Time{})
		if t.reusable() {
			return up.n, down.n, true
		}
		backend.Close()
		return up.n, down.n, false
	}
	// The first side to end ends the session: a client that drops, or a
	// backend's FATAL. Closing both unblocks the other copier.
	backend.Close()
	<-done
	return up.n, down.n, false
}

// runSession relays an authenticated session and logs its end.
func (c *clientConn) runSession(ctx context.Context, s *session) {
	// Authentication is over: its deadline no longer applies. Idle
	// sessions are PostgreSQL's business (idle_session_timeout).
	_ = c.raw.SetDeadline(time.Time{})
	c.srv.cancels.add(s.cancel)
	defer c.srv.cancels.remove(s.cancel)
	c.srv.setBackend(c, s.backend)
	c.srv.metrics.sessionStarted()
	defer c.srv.metrics.sessionEnded()
	began := time.Now()
	var tracker *sessionTracker
	if s.reuseKey != "" {
		tracker = newSessionTracker(s.params)
	}
	in, out, keep := relay(c.conn, c.r, s.backend, tracker)
	c.srv.metrics.relayed(in, out)
	reused := false
	if keep {
		s.params = tracker.params
		reused = c.srv.pool.release(c.state, s)
	}
	c.srv.log.LogAttrs(ctx, slog.LevelInfo, "session ended",
		slog.String("event", "session_end"),
		slog.Uint64("conn_id", c.id),
		slog.String("client", c.addr.String()),
		slog.String("user", c.user),
		slog.String("database", c.database),
		slog.Uint64("backend_pid", uint64(s.cancel.pid)),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
		slog.Bool("backend_kept", reused),
		slog.Duration("session_duration", time.Since(began)))
}
