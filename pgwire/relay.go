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
	n    int64
	err  error
}

// run copies until src ends or a write fails. It allocates nothing per
// read: the buffer comes from the pool once per session.
func (cp *copier) run() {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		nr, rerr := cp.src.Read(buf)
		if nr > 0 {
			nw, werr := cp.dst.Write(buf[:nr])
			cp.n += int64(nw)
			if werr != nil {
				cp.err = werr
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

// relay joins client and backend until either side ends, then closes both
// and waits for both copiers. It returns the bytes moved each way.
func relay(client net.Conn, clientR io.Reader, backend net.Conn) (fromClient, toClient int64) {
	up := &copier{name: "client->backend", dst: backend, src: clientR}
	down := &copier{name: "backend->client", dst: client, src: backend}
	done := make(chan *copier, 2)
	for _, cp := range []*copier{up, down} {
		go func() { cp.run(); done <- cp }()
	}
	// The first side to end ends the session: a client's Terminate closes
	// its socket, and a backend's FATAL closes its own. Closing both
	// unblocks the other copier.
	<-done
	client.Close()
	backend.Close()
	<-done
	return up.n, down.n
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
	in, out := relay(c.conn, c.r, s.backend)
	c.srv.metrics.relayed(in, out)
	c.srv.log.LogAttrs(ctx, slog.LevelInfo, "session ended",
		slog.String("client", c.addr.String()),
		slog.Uint64("backend_pid", uint64(s.cancel.pid)),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
		slog.Duration("session_duration", time.Since(began)))
}
