package pgwire

import (
	"errors"
	"io"
	"os"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/pgcertgate/pgcertgate/internal/uring"
)

// The event loop on io_uring (relay_engine = "io_uring").
//
// The same loop, the same sessions and the same rules as on epoll, with
// one difference: the loop no longer asks which sockets are ready and then
// reads and writes each in a system call of its own. Every side that may
// be read keeps one receive in flight, every byte to write goes out as a
// send, and one io_uring_enter per turn submits all of them and waits for
// the next completion. On this kind of machine a system call, not the
// copy, is what a relayed transaction costs most (BENCHMARKS.md), and a
// turn that serves several sessions now makes one.
//
// What changes underneath the loop's logic:
//   - reads: a receive completes into a buffer the kernel takes from the
//     loop's ring of provided buffers only when data is there, so a
//     waiting session still holds no buffer. The side's read hands out
//     that buffer's bytes and gives it back once they are taken; when it
//     has none, it says errWouldBlock, as a drained socket does.
//   - writes: a side's write queues the bytes, and the loop sends them at
//     the end of the turn. While a send is in flight its bytes stay put;
//     what is written meanwhile waits behind them. Backpressure is the
//     epoll loop's: a side is not read while its peer has bytes waiting,
//     sent or not.
//   - the end: before the session's ending goroutine may touch the
//     descriptors, everything in flight for them is cancelled and its
//     completion awaited; a send cut short by that leaves its rest for
//     the ending, which writes it as the epoll loop's ending does.

// User data of a completion: the side's id shifted left by two, and the
// operation; 0 is the wake eventfd's read.
const (
	ukRecv   = 0
	ukSend   = 1
	ukCancel = 2
)

// Each loop's provided buffers: one TLS record's worth each, and enough
// that the sessions served in one turn seldom wait for one. The kernel
// takes them in turn, so every one of them is soon resident: 64 of 16 KiB
// are 1 MiB a loop, against 4 MiB for 128 of a copy buffer's 32 KiB,
// which showed as 2 KiB more per session with 1000 idle sessions.
//
// The submission queue holds a turn's operations for 64 busy sessions
// (a fuller turn submits on the way). The kernel and the loop walk its
// entries in turn, and 256 of 64 bytes stay in the CPU's cache where
// 1024 did not: 7 % less proxy CPU per transaction together with the
// receives that poll first and the rarer yield (BENCHMARKS.md).
const (
	evRingEntries = 256
	evRingBufSize = 16 << 10
	evBufGroup    = 0
)

// evRingBufs is how many provided buffers each loop has (a variable for
// the test that starves a loop of them).
var evRingBufs = 64

// evRingStarved counts receives that found no free buffer (tests).
var evRingStarved atomic.Int64

// evRing is what a loop on io_uring has besides the epoll loop's.
type evRing struct {
	r    *uring.Ring
	bufs *uring.Buffers
	// wakeBuf receives the wake eventfd's counter.
	wakeBuf [8]byte
	// starved lists sides whose receive found no free buffer; they get a
	// new one once a buffer has come back (freed), not before: a receive
	// queued while none has would find none again.
	starved []*evSide
	freed   bool
}

// recycle gives a provided buffer back to the kernel.
func (g *evRing) recycle(id uint16) {
	g.bufs.Recycle(id)
	g.freed = true
}

// ringSide is a side's state on a loop on io_uring.
type ringSide struct {
	// in is what the last receive brought and the read has not taken,
	// in buffer bid; empty when there is nothing.
	in  []byte
	bid uint16
	// inErr is how the socket ended (io.EOF, an error), once a receive
	// said so.
	inErr error
	recv  bool // a receive is in flight
	// fl[flOff:] is what the send in flight has still to take; fl is
	// nil when no send is in flight.
	fl    *[]byte
	flOff int
	// ops counts operations in flight for this side, cancels included.
	ops     int
	starved bool
	// unread: the session ended with bytes received from this side that
	// nobody read.
	unread bool
}

// newRing sets up a loop's ring (a variable for the test of a kernel
// that refuses one).
var newRing = uring.New

func newRingLoop() (*evLoop, error) {
	r, err := newRing(evRingEntries)
	if err != nil {
		return nil, err
	}
	// Registered here, before the loop's thread enables the ring and
	// becomes its only issuer: a kernel without provided-buffer rings
	// (before 5.19) says so now, and the epoll loops serve instead.
	bufs, err := r.NewBuffers(evBufGroup, evRingBufs, evRingBufSize)
	if err != nil {
		r.Close()
		return nil, err
	}
	// The ring reads the eventfd: a blocking one, so that the read waits
	// for a post rather than failing with EAGAIN.
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		r.Close()
		bufs.Free()
		return nil, os.NewSyscallError("eventfd", err)
	}
	return newLoopState(-1, wakefd, &evRing{r: r, bufs: bufs}), nil
}

func (l *evLoop) closeRing() {
	l.ring.r.Close()
	l.ring.bufs.Free()
	unix.Close(l.wakefd)
}

// runRing is run on io_uring. The ring is enabled on the loop's thread,
// its only issuer; a ring that cannot be enabled there cannot relay.
func (l *evLoop) runRing() {
	runtime.LockOSThread()
	g := l.ring
	if err := g.r.Enable(); err != nil {
		panic(err)
	}
	l.armWake()
	var y evYield
	for {
		y.maybe()
		wait := len(l.again) == 0
		if err := g.r.Enter(wait); err != nil {
			// Nothing else is expected of a valid ring; a loop that
			// cannot submit cannot relay.
			panic(err)
		}
		g.r.Reap(l.complete)
		l.readAgainAll()
		l.feedStarved()
	}
}

func (l *evLoop) armWake() {
	if err := l.ring.r.Read(l.wakefd, l.ring.wakeBuf[:], 0); err != nil {
		panic(err)
	}
}

// complete serves one completion.
func (l *evLoop) complete(c uring.Completion) {
	if c.UserData == 0 {
		l.runQueue()
		l.armWake()
		return
	}
	s := l.sides[c.UserData>>2]
	if s == nil {
		// Not ours: nothing is queued without its side in the map.
		return
	}
	s.rs.ops--
	switch c.UserData & 3 {
	case ukRecv:
		l.received(s, c)
	case ukSend:
		l.sent(s, c)
	}
	if s.s.over {
		l.settle(s.s)
	}
}

func (l *evLoop) received(s *evSide, c uring.Completion) {
	defer l.recoverSession(s.s)
	rs := &s.rs
	rs.recv = false
	if id, ok := c.Buffer(); ok {
		if c.Res <= 0 || s.s.over {
			l.ring.recycle(id)
		} else {
			rs.in, rs.bid = l.ring.bufs.Bytes(id)[:c.Res], id
		}
	}
	if s.s.over {
		if c.Res > 0 {
			rs.unread = true
		}
		return
	}
	switch {
	case c.Res == 0:
		rs.inErr = io.EOF
	case c.Res == -int32(unix.ENOBUFS):
		evRingStarved.Add(1)
		rs.starved = true
		l.ring.starved = append(l.ring.starved, s)
		return
	case c.Res < 0:
		rs.inErr = os.NewSyscallError("recv", c.Err())
	}
	l.readSide(s)
	l.update(s.s)
}

func (l *evLoop) sent(s *evSide, c uring.Completion) {
	defer l.recoverSession(s.s)
	rs := &s.rs
	if c.Res > 0 {
		rs.flOff += int(c.Res)
	}
	if s.s.over {
		return
	}
	if c.Res < 0 {
		s.err = os.NewSyscallError("send", c.Err())
		w := s.peer.from
		w.err = s.err
		l.end(s.s, w)
		return
	}
	if rs.flOff < len(*rs.fl) {
		// Taken in part: the rest goes next, before anything queued
		// behind it.
		l.submitSend(s)
		return
	}
	wasFull := s.full()
	putOutBuf(rs.fl)
	rs.fl, rs.flOff = nil, 0
	if s.pendingLen() == 0 {
		// Drained: the peer may be read again, and a TLS peer may hold
		// records nobody announces.
		l.readSide(s.peer)
		if s.s.over {
			return
		}
	}
	if wasFull && !s.full() {
		l.readSide(s)
		if s.s.over {
			return
		}
	}
	l.update(s.s)
}

// sendNext puts what waits for s in flight, when nothing is.
func (l *evLoop) sendNext(s *evSide) {
	rs := &s.rs
	if rs.fl != nil || len(s.pending()) == 0 {
		return
	}
	rs.fl, rs.flOff = s.ob, s.off
	s.ob, s.off = nil, 0
	l.submitSend(s)
}

// submitSend queues the send of what the buffer in flight has still to
// give.
func (l *evLoop) submitSend(s *evSide) {
	rs := &s.rs
	if err := l.ring.r.Send(s.fd, (*rs.fl)[rs.flOff:], s.id<<2|ukSend); err != nil {
		panic(err)
	}
	rs.ops++
}

// updateRing is update on io_uring: a receive in flight for each side
// that may be read and has nothing unread, and a send for each side with
// bytes waiting.
func (l *evLoop) updateRing(sess *evSession) {
	for _, s := range []*evSide{&sess.client, &sess.backend} {
		l.sendNext(s)
	}
	for _, s := range []*evSide{&sess.client, &sess.backend} {
		rs := &s.rs
		if s.peer.pendingLen() > 0 || s.full() || rs.recv || rs.starved || rs.inErr != nil {
			continue
		}
		if len(rs.in) > 0 {
			// Bytes are there that no receive will announce: read them
			// in this turn.
			l.again = append(l.again, s)
			continue
		}
		if err := l.ring.r.Recv(s.fd, evBufGroup, evRingBufSize, s.id<<2|ukRecv); err != nil {
			panic(err)
		}
		rs.recv = true
		rs.ops++
	}
}

// feedStarved gives the sides that found no buffer another receive, once
// the turn has given buffers back.
func (l *evLoop) feedStarved() {
	st, freed := l.ring.starved, l.ring.freed
	l.ring.freed = false
	if len(st) == 0 || !freed {
		return
	}
	l.ring.starved = nil
	for _, s := range st {
		s.rs.starved = false
		if !s.s.over {
			l.update(s.s)
		}
	}
}

// readRing is the side's read on io_uring: the bytes the last receive
// brought, then errWouldBlock until the next.
func (s *evSide) readRing(p []byte) (int, error) {
	rs := &s.rs
	if len(rs.in) > 0 {
		n := copy(p, rs.in)
		rs.in = rs.in[n:]
		if len(rs.in) == 0 {
			s.s.loop.ring.recycle(rs.bid)
		}
		return n, nil
	}
	if rs.inErr != nil {
		return 0, rs.inErr
	}
	return 0, errWouldBlock
}

// endRing takes the session's operations out of flight; settle starts
// its ending once the last has completed.
func (l *evLoop) endRing(sess *evSession) {
	for _, s := range []*evSide{&sess.client, &sess.backend} {
		rs := &s.rs
		if len(rs.in) > 0 {
			l.ring.recycle(rs.bid)
			rs.in, rs.unread = nil, true
		}
		if rs.recv {
			l.cancel(s, ukRecv)
		}
		if rs.fl != nil {
			l.cancel(s, ukSend)
		}
	}
	l.settle(sess)
}

// cancel queues the cancellation of s's operation of that kind.
func (l *evLoop) cancel(s *evSide, kind uint64) {
	if err := l.ring.r.Cancel(s.id<<2|kind, s.id<<2|ukCancel); err != nil {
		panic(err)
	}
	s.rs.ops++
}

// settle starts the ending of a session that is over once nothing of its
// is in flight: what a cut-short send left goes back in front of what
// waits, for the ending to write.
func (l *evLoop) settle(sess *evSession) {
	if sess.client.rs.ops > 0 || sess.backend.rs.ops > 0 || sess.settled {
		return
	}
	sess.settled = true
	for _, s := range []*evSide{&sess.client, &sess.backend} {
		delete(l.sides, s.id)
		rs := &s.rs
		if rs.fl == nil {
			continue
		}
		// The send's rest becomes the pending buffer, and what was
		// queued behind it goes on its end.
		queued, off := s.ob, s.off
		s.ob, s.off = rs.fl, rs.flOff
		rs.fl, rs.flOff = nil, 0
		if queued != nil {
			s.queue((*queued)[off:])
			putOutBuf(queued)
		}
	}
	go sess.ending()
}

// ringUnavailable reports an error that means the kernel will not give
// this process the ring the loop needs: no io_uring (ENOSYS), refused by
// a seccomp profile or kernel.io_uring_disabled (EPERM, EACCES), or too
// old for single-issuer rings with deferred task work (6.1) or rings of
// provided buffers (EINVAL, or a missing feature), as against a failure
// of a ring it gave.
func ringUnavailable(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, errors.ErrUnsupported)
}
