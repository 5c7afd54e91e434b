package pgwire

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pgcertgate/pgcertgate/config"
)

// relayBufSize is the copy buffer. 32 KiB holds two full TLS records from
// the backend side, and any record's plaintext (at most 16 KiB) from the
// client side, so a busy COPY moves in few system calls.
// Buffers are pooled and held only while data is moving (see run).
const relayBufSize = 32 << 10

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// copier moves bytes one way between client and backend. There is one
// copier type for both directions, so the two can never drift apart; its
// name shows in goroutine dumps.
type copier struct {
	name string
	dst  net.Conn
	src  io.Reader
	// pending is what the session had read from src but not consumed
	// when the relay began (a query pipelined behind the startup packet);
	// it goes first.
	pending []byte
	// scan, when set, follows message boundaries (for backend reuse) and
	// may cut the stream; nil means a blind byte copy.
	scan func(p []byte) (forward int, stop bool)
	// readFailed, when set, is asked about a failed read before it ends
	// the copy: it may turn it into a cut, or ask for one more read
	// (sessionControl's stop, on the backend side).
	readFailed func(err error) (cut, retry bool)
	// n counts the bytes written to dst; the admin API reads it live.
	n   atomic.Int64
	err error
	// cut is set when scan stopped the stream: the client's Terminate,
	// or a stop between two backend messages.
	cut bool
}

// run copies until src ends, a write fails, or scan cuts the stream. It
// allocates nothing per read, and an idle session holds no copy buffer
// while it waits, so that an idle client costs at most 64 KiB:
//   - a socket, raw (the backend, Unix or TCP) or under the client's TLS,
//     is read from inside the runtime poller's callback
//     (syscall.RawConn.Read), into a pooled buffer taken once the socket is
//     readable and given back before the copier waits again;
//   - anything else (a TLS backend) reads into a pooled buffer held for
//     the session.
func (cp *copier) run() {
	if p := cp.pending; len(p) > 0 {
		if cp.forward(p) {
			return
		}
	}
	// Forwarded: the startup reader's buffer behind it can go.
	cp.pending = nil
	switch src := cp.src.(type) {
	case *tls.Conn:
		if t, ok := src.NetConn().(*transport); ok {
			if rc := t.rawConn(); rc != nil {
				cp.runTLS(src, t, rc)
				return
			}
		}
	case syscall.Conn:
		if rc, err := src.SyscallConn(); err == nil {
			cp.runRaw(rc)
			return
		}
	}
	cp.runPooled()
}

// forward hands p to scan and writes what it lets through; it reports
// whether the copier must stop.
func (cp *copier) forward(p []byte) (stop bool) {
	fwd := len(p)
	if cp.scan != nil {
		fwd, cp.cut = cp.scan(p)
	}
	if fwd > 0 {
		nw, werr := cp.dst.Write(p[:fwd])
		cp.n.Add(int64(nw))
		if werr != nil {
			cp.err = werr
			return true
		}
	}
	return cp.cut
}

// failed handles a read error: it reports true when the copier must
// stop, having recorded why, and false when it may read again.
func (cp *copier) failed(rerr error) bool {
	if cp.readFailed != nil {
		cut, retry := cp.readFailed(rerr)
		if cut {
			cp.cut = true
			return true
		}
		if retry {
			return false
		}
	}
	cp.end(rerr)
	return true
}

// end records why the source ended; EOF is a clean end.
func (cp *copier) end(rerr error) {
	if !errors.Is(rerr, io.EOF) {
		cp.err = rerr
	}
}

// runRaw and runTLS read inside the runtime poller's callback
// (syscall.RawConn.Read), so that a buffer is taken only once the socket
// is readable, but they forward outside it. Two rules keep them safe:
//   - The callback reads until the socket says EAGAIN before it lets the
//     runtime wait. A short read does not mean the socket is drained: a
//     FIN, a peer's close or an error can sit behind the data, and Go's
//     edge-triggered poller reports data and close as one event, so
//     waiting after a short read could wait forever for an EOF already
//     there.
//   - Nothing is forwarded while the source's read lock is held (inside
//     the callback): closing a socket waits for its lock holders, and a
//     copier blocked writing to a peer that does not read would then
//     block relay's Close of its source. (crypto/tls may write a KeyUpdate
//     reply or an alert inside the callback, but to the same socket, and
//     closing that socket wakes the write.)

// runRaw copies from a plain socket.
func (cp *copier) runRaw(rc syscall.RawConn) {
	cp.runPolled(rc, readSocket)
}

// runTLS copies from the client's TLS connection: crypto/tls reads the
// socket through transport inside the callback, and a read that would
// block comes back as errWouldBlock.
func (cp *copier) runTLS(tc *tls.Conn, t *transport, rc syscall.RawConn) {
	cp.runPolled(rc, func(fd int, p []byte) (int, error) {
		// fd is valid only while the callback runs.
		t.fd = fd
		defer func() { t.fd = -1 }()
		// The first call may find a record crypto/tls already holds.
		return tc.Read(p)
	})
}

// runPolled is runRaw's and runTLS's loop. readOnce reads once from the
// socket fd into p, returning errWouldBlock (with no data) when the
// socket has nothing; the buffer is taken when the socket is readable and
// given back before the runtime waits.
func (cp *copier) runPolled(rc syscall.RawConn, readOnce func(fd int, p []byte) (int, error)) {
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	read := func(fd uintptr) bool {
		if bp == nil {
			bp = relayBufs.Get().(*[]byte)
		}
		n, rerr = readOnce(int(fd), *bp)
		if n == 0 && rerr == errWouldBlock {
			relayBufs.Put(bp)
			bp = nil
			return false
		}
		return true
	}
	defer func() {
		if bp != nil {
			relayBufs.Put(bp)
		}
	}()
	for {
		// Errors here are the poller's: the deadline relay sets to stop
		// this copier, or the socket closed under it.
		if err := rc.Read(read); err != nil {
			if cp.failed(err) {
				return
			}
			continue
		}
		if n > 0 && cp.forward((*bp)[:n]) {
			return
		}
		// errWouldBlock with data (crypto/tls looked ahead for a
		// close_notify) just means: read again. io.EOF is a clean end.
		if rerr != nil && rerr != errWouldBlock {
			cp.end(rerr)
			return
		}
	}
}

func (cp *copier) runPooled() {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		nr, rerr := cp.src.Read(buf)
		if nr > 0 && cp.forward(buf[:nr]) {
			return
		}
		if rerr != nil && cp.failed(rerr) {
			return
		}
	}
}

// relay joins client and backend until either side ends and returns the
// bytes moved each way. With a tracker, a client that leaves cleanly
// (Terminate, backend idle) leaves the backend open and keep is true: the
// caller may reset and reuse it. Otherwise both connections are closed.
func relay(client net.Conn, pending []byte, backend net.Conn, t *sessionTracker) (fromClient, toClient int64, keep bool) {
	return relayWith(client, pending, backend, t, nil)
}

// relayWith is relay under a sessionControl (nil for none), which can
// stop the session between two backend messages and send the client an
// ErrorResponse there. With a control the backend side always follows
// message boundaries, with the tracker's scanner or its own.
func relayWith(client net.Conn, pending []byte, backend net.Conn, t *sessionTracker, ctl *sessionControl) (fromClient, toClient int64, keep bool) {
	up := &copier{name: "client->backend", dst: backend, src: client, pending: pending}
	down := &copier{name: "backend->client", dst: client, src: backend}
	if t != nil {
		up.scan, down.scan = t.fromClient, t.fromBackend
	}
	if ctl != nil {
		bs := newBackendScanner(t, ctl)
		down.scan, down.readFailed = bs.scan, bs.readFailed
		ctl.setCopiers(up, down)
	}
	done := make(chan *copier, 2)
	for _, cp := range []*copier{up, down} {
		go func() { cp.run(); done <- cp }()
	}
	first := <-done
	if first == down && down.cut {
		// Stopped between two backend messages: the client's stream
		// is at a boundary, and gets the stop's error there, as
		// PostgreSQL's own FATAL would arrive.
		ctl.finish()
		ctl.sendError(client)
		client.Close()
		backend.Close()
		<-done
		return up.n.Load(), down.n.Load(), false
	}
	client.Close()
	if first == up && up.cut {
		// The client said Terminate. Stop reading the backend without
		// closing it: an expired read deadline ends the other copier
		// where it stands, and the tracker says whether that was
		// between messages.
		_ = backend.SetReadDeadline(time.Now())
		<-done
		// No stop may touch the backend from here on: it may pass to
		// another session.
		ctl.finish()
		_ = backend.SetReadDeadline(time.Time{})
		if t.reusable() {
			return up.n.Load(), down.n.Load(), true
		}
		if t.client.atBoundary() && t.backend.atBoundary() {
			terminate(backend)
		} else {
			backend.Close()
		}
		return up.n.Load(), down.n.Load(), false
	}
	// The first side to end ends the session: a client that drops, or a
	// backend's FATAL. Closing both unblocks the other copier.
	backend.Close()
	<-done
	ctl.finish()
	return up.n.Load(), down.n.Load(), false
}

// relayResult is how a relay ended: the bytes moved each way, and the
// backend connection to keep when keep is true (the event loop hands back
// a new net.Conn over the same socket).
type relayResult struct {
	in, out int64
	keep    bool
	kept    net.Conn
}

// startRelay relays on the named relay engine (an event loop, on epoll
// or io_uring, or the goroutine relay). When an event loop takes the
// session it returns at once with detached true, and done is called with
// the outcome once the loop has let go, on a goroutine of its own (never
// the loop's). Otherwise (the goroutine relay, or a session the event loop cannot
// take, see relayEvents) it relays with goroutines and returns the
// outcome; done is not called. setBackend, when set, is told of the
// connection a fast shutdown must close to end the session.
func startRelay(engine string, client net.Conn, pending []byte, backend net.Conn, t *sessionTracker, ctl *sessionControl, setBackend func(net.Conn), done func(relayResult)) (r relayResult, detached bool) {
	if config.EventLoopEngine(engine) && relayEvents(engine == config.RelayIOUring, client, pending, backend, t, ctl, setBackend, done) {
		return relayResult{}, true
	}
	in, out, keep := relayWith(client, pending, backend, t, ctl)
	return relayResult{in: in, out: out, keep: keep, kept: backend}, false
}

// connExit is the work a connection's goroutine defers to its end, in
// handle and serve: the max_connections slot, the tracking Shutdown and
// Close reach connections by, the WaitGroup Shutdown waits on. A session
// relayed by an event loop outlives that goroutine, which returns as soon
// as the loop takes the session, so that an idle session holds no
// goroutine stack; the deferred work is then collected rather than run,
// and runs after the session's end, once the loop has let go. Until then
// the session counts as running for Shutdown, Close and Drain.
type connExit struct {
	log *slog.Logger
	// detached: the relay went on without the connection's goroutine.
	// That goroutine alone sets and reads it.
	detached bool

	mu sync.Mutex
	// later is the deferred work collected once detached, in the order
	// the goroutine's deferred calls came to it.
	later []func()
	// returned: the connection's goroutine has made its last deferred
	// call; later is complete.
	returned bool
	// end is the session's end, waiting for returned.
	end func()
}

// atExit runs f now, as the connection's goroutine leaves, or when the
// session has gone on without it, once the session has ended.
func (x *connExit) atExit(f func()) {
	if x == nil || !x.detached {
		f()
		return
	}
	x.mu.Lock()
	x.later = append(x.later, f)
	x.mu.Unlock()
}

// goroutineDone is the connection goroutine's last deferred call. Should
// the relay have ended before (it is quick to, when the client sent
// Terminate with its first bytes), the goroutine runs the session's end
// itself.
func (x *connExit) goroutineDone() {
	x.mu.Lock()
	x.returned = true
	end := x.end
	x.mu.Unlock()
	if end != nil {
		x.finish(end)
	}
}

// relayEnded runs end, then the collected work, once the connection's
// goroutine has returned (at once, nearly always).
func (x *connExit) relayEnded(end func()) {
	x.mu.Lock()
	if !x.returned {
		x.end = end
		x.mu.Unlock()
		return
	}
	x.mu.Unlock()
	x.finish(end)
}

func (x *connExit) finish(end func()) {
	// The deferred work runs whatever happens to end: a session that
	// never released its slot and WaitGroup would hold Shutdown forever.
	defer func() {
		for _, f := range x.later {
			f()
		}
	}()
	// As handle does: a bug in one session's end must not take every
	// session down with it.
	defer func() {
		if r := recover(); r != nil {
			x.log.Error("panic while ending a session", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		}
	}()
	end()
}

// runSession relays an authenticated session. On an event loop it
// returns once the loop has taken the session, and endSession runs when
// the loop lets go; otherwise it returns when the session has ended.
func (c *clientConn) runSession(ctx context.Context, s *session) {
	// The greeting still goes out under the authentication deadline.
	if _, err := c.conn.Write(s.greeting); err != nil {
		// The client left before its greeting: the backend never saw
		// a query and sits between messages.
		terminate(s.backend)
		s.meta.ledger.Release()
		return
	}
	s.greeting = nil
	// Authentication is over: its deadline no longer applies. Idle
	// sessions are PostgreSQL's business (idle_session_timeout).
	_ = c.raw.SetDeadline(time.Time{})
	c.srv.cancels.add(s.cancel)
	c.srv.setBackend(c, s.backend)
	c.srv.metrics.sessionStarted()
	began := time.Now()
	var tracker *sessionTracker
	if s.reuseKey != "" {
		tracker = newSessionTracker(s.params)
	}
	// What the startup reader still holds goes first; then the reader
	// and its buffer go, and the client copier reads the connection
	// itself. (Even an empty slice of the buffer would keep all of it.)
	var pending []byte
	if n := c.r.Buffered(); n > 0 {
		pending, _ = c.r.Peek(n)
	}
	c.r = startupReader{}
	ctl := newSessionControl(s.backend)
	live := c.startLive(s, ctl)
	engine := c.state.rt.Config.Engine()
	if c.exit == nil {
		// A connection not started by handle cannot leave its
		// session to the loop: it relays with goroutines.
		engine = config.RelayGoroutine
	}
	r, detached := startRelay(engine, c.conn, pending, s.backend, tracker, ctl,
		func(b net.Conn) { c.srv.setBackend(c, b) },
		func(r relayResult) {
			c.exit.relayEnded(func() { c.endSession(ctx, s, tracker, ctl, live, began, r) })
		})
	if detached {
		c.exit.detached = true
		return
	}
	c.endSession(ctx, s, tracker, ctl, live, began, r)
}

// endSession is a relayed session's end on every engine: the cancel of a
// stopped session's query, the backend's release or close, the
// session-end event.
func (c *clientConn) endSession(ctx context.Context, s *session, tracker *sessionTracker, ctl *sessionControl, live *liveSession, began time.Time, r relayResult) {
	defer c.srv.metrics.sessionEnded()
	in, out, keep := r.in, r.out, r.keep
	s.backend = r.kept
	if ctl.finish() != nil {
		if keep {
			// The client's Terminate came first, but a stop arrived
			// before the relay could refuse it: the stopped session's
			// backend is not kept, and no cancel is sent to a backend
			// between messages, where another session's query would be
			// next to meet it.
			terminate(s.backend)
			keep = false
		} else {
			// A stopped session's backend may be mid-query: cancel it,
			// as pg_terminate_backend would end it.
			c.srv.cancels.forward(cancelRequest{pid: s.cancel.pid, key: s.cancel.clientKey}, c.srv.log)
		}
	}
	// The session is over before its backend can pass to another client,
	// which takes this *session and rewrites its fields: nothing after
	// release may read s.
	c.endLive(s, live)
	pid := s.cancel.pid
	// Before the backend can pass to another client, no cancel of this
	// client's may still be on its way to it.
	c.srv.cancels.remove(s.cancel)
	c.srv.metrics.relayed(in, out)
	// The backend is the pool's or closed from here on: a fast
	// shutdown must not reach it through this connection, which is
	// still tracked until its goroutine's deferred work has run.
	c.srv.setBackend(c, nil)
	reused := false
	if keep {
		s.params = tracker.params
		reused = c.srv.pool.release(c.state, s)
	}
	c.srv.log.LogAttrs(ctx, slog.LevelInfo, "session ended",
		slog.String("event", "session_end"),
		slog.Uint64("conn_id", c.id),
		slog.String("client", c.clientHost()),
		slog.String("user", c.user),
		slog.String("database", c.database),
		slog.Uint64("backend_pid", uint64(pid)),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
		slog.Bool("backend_kept", reused),
		slog.Duration("session_duration", time.Since(began)))
}
