package pgwire

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/sockfd"
)

// The event-loop relay (relay_engine = "eventloop").
//
// After authentication and the greeting, a session's two sockets leave Go's
// poller: their descriptors are duplicated, the net.Conns closed (which
// removes them from the runtime's epoll set), and the duplicates join one
// of relay_event_loops loops (by default one per four of GOMAXPROCS: a
// loop that serves more sessions finds more of them ready each time it
// wakes, and a wake-up, not the copy, is what a transaction costs most
// here; see BENCHMARKS.md). Each loop is a goroutine locked to its OS thread,
// waiting in a level-triggered epoll_wait; for each ready socket it reads
// once, decrypts or encrypts through the client's crypto/tls connection,
// and writes to the peer in the same turn, so a query and its answer cost
// the system calls that move them and no goroutine wake-ups.
//
// Backpressure is PgBouncer's: what the peer will not take stays in a
// pooled buffer, the loop watches the peer for EPOLLOUT, and it reads
// nothing more from the side that sent it until the buffer drains. One
// side's pending bytes are thus at most one read's worth, and an idle
// session holds no buffer at all, only its tls.Conn and evSession.
//
// What runs where:
//   - in the loop: the byte copy both ways (COPY, replication streaming
//     and everything else are just bytes), the reuse tracker's message
//     scanning, and the client's Terminate that keeps the backend; the
//     stop (admin terminate, revoked or expired certificates) is noticed
//     there through the sessionControl's wake, and a stop waiting for a
//     message in progress is bounded by a timer posted to the loop;
//   - in a goroutine the loop starts for the session's end, once it has
//     let go of both descriptors: everything at the end of a session that may block
//     (the stop's ErrorResponse, close_notify, the backend's Terminate,
//     the reset query of a kept backend, the cancel of a stopped
//     session's query), exactly as the goroutine relay does it. Cancel
//     requests arrive on connections of their own and never touch the
//     loop.
//
// No goroutine waits for a session the loop relays: the connection's
// goroutine returns once the loop has taken the session (connExit keeps
// its deferred bookkeeping, the max_connections slot and the shutdown
// tracking, for later), and when the loop lets go it starts a goroutine
// for the session's end: the work above, then the session-end event and
// that bookkeeping.

// evOutCap is the capacity of a pending-write buffer: one copy buffer's
// plaintext, sealed into TLS records, fits.
const evOutCap = relayBufSize + 1024

var evOutBufs = sync.Pool{New: func() any { b := make([]byte, 0, evOutCap); return &b }}

// evReadsPerTurn bounds how many records one TLS side may decrypt in one
// turn of the loop before the other sockets get theirs.
const evReadsPerTurn = 32

// evJoined counts the sessions that joined an event loop, and
// evRingJoined those of them on io_uring (tests).
var evJoined, evRingJoined atomic.Int64

// ringLoopsUnavailable is why the loops on io_uring could not start, if
// they could not.
func ringLoopsUnavailable() error {
	if p := evLoops.onRing.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// evLoop is one event loop.
type evLoop struct {
	// ring is set on io_uring (evloop_uring_linux.go); epfd, on epoll.
	ring *evRing
	epfd int
	// wakefd is an eventfd in the epoll set: posting work writes it.
	wakefd int

	mu    sync.Mutex
	queue []evTask

	// Loop-owned from here on.
	sides  map[uint64]*evSide
	nextID uint64
	// again lists TLS sides that stopped at evReadsPerTurn with records
	// possibly still held by crypto/tls, which epoll cannot announce.
	again []*evSide
	// rbuf is what readSide reads into: the loop's own, since a read's
	// bytes are forwarded before the next read, so that no read pays for
	// a pool's round trip.
	rbuf []byte
}

// evLoopSet is the loops of one kind: epoll or io_uring.
type evLoopSet struct {
	once  sync.Once
	loops []*evLoop
	// failed is why the loops could not start, if they could not.
	failed atomic.Pointer[error]
	next   atomic.Uint32
}

var evLoops struct {
	// want is how many loops to start (relay_event_loops); 0 means
	// config.DefaultEventLoops.
	want          atomic.Int32
	epoll, onRing evLoopSet
}

// setEventLoops says how many loops to start. The loops are the
// process's, like the runtime's own poller, and start with the first
// session that joins one; a count given after that changes nothing.
func setEventLoops(n int) { evLoops.want.Store(int32(n)) }

// evLoopFor picks a loop for a new session, on io_uring when onRing,
// starting the loops the first time. They live as long as the process.
// Where the kernel gives no ring, the epoll loops serve instead.
func evLoopFor(onRing bool) (*evLoop, error) {
	if onRing {
		l, err := evLoops.onRing.pick(newRingLoop, "io_uring unavailable; relaying on the epoll event loops")
		if err == nil || !ringUnavailable(err) {
			return l, err
		}
	}
	return evLoops.epoll.pick(newEvLoop, "event loop unavailable; relaying with goroutines")
}

// pick starts the set's loops the first time, saying why once if it
// cannot, and picks one of them.
func (set *evLoopSet) pick(newLoop func() (*evLoop, error), unavailable string) (*evLoop, error) {
	set.once.Do(func() {
		n := int(evLoops.want.Load())
		if n <= 0 {
			n = config.DefaultEventLoops()
		}
		for range n {
			l, err := newLoop()
			if err != nil {
				// Said once for each kind of loop.
				slog.Default().Warn(unavailable, slog.Any("error", err))
				for _, l := range set.loops {
					l.close()
				}
				set.loops = nil
				set.failed.Store(&err)
				return
			}
			set.loops = append(set.loops, l)
		}
		for _, l := range set.loops {
			go l.run()
		}
	})
	if p := set.failed.Load(); p != nil {
		return nil, *p
	}
	i := set.next.Add(1)
	return set.loops[int(i)%len(set.loops)], nil
}

// close releases a loop that never ran.
func (l *evLoop) close() {
	if l.ring != nil {
		l.closeRing()
		return
	}
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}

func newEvLoop() (*evLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	// Data 0 is the wake descriptor; sides count from 1.
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return newLoopState(epfd, wakefd, nil), nil
}

// newLoopState is the state every loop starts with, on epoll (ring nil)
// or on io_uring (epfd -1).
func newLoopState(epfd, wakefd int, ring *evRing) *evLoop {
	return &evLoop{epfd: epfd, wakefd: wakefd, ring: ring, sides: make(map[uint64]*evSide), nextID: 1, rbuf: make([]byte, relayBufSize)}
}

// evTask is work posted to a loop for one session (nil for none).
type evTask struct {
	sess *evSession
	f    func()
}

// post runs f on the loop's thread, soon, after everything posted before
// it: the queue is first in, first out.
func (l *evLoop) post(sess *evSession, f func()) {
	l.mu.Lock()
	l.queue = append(l.queue, evTask{sess, f})
	l.mu.Unlock()
	one := [8]byte{1}
	for {
		_, err := unix.Write(l.wakefd, one[:])
		if err != unix.EINTR {
			// EAGAIN: the counter is full, and so already wakes
			// the loop.
			return
		}
	}
}

func (l *evLoop) run() {
	if l.ring != nil {
		l.runRing()
		return
	}
	// One thread per loop: the loop's epoll_wait and the system calls
	// it makes for every session stay on it.
	runtime.LockOSThread()
	events := make([]unix.EpollEvent, 256)
	var y evYield
	for {
		y.maybe()
		timeout := -1
		if len(l.again) > 0 {
			timeout = 0
		}
		n, err := unix.EpollWait(l.epfd, events, timeout)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			// Nothing else is expected of a valid epoll descriptor;
			// a loop that cannot wait cannot relay.
			panic(os.NewSyscallError("epoll_wait", err))
		}
		for i := range n {
			id := evID(&events[i])
			if id == 0 {
				l.drainQueue()
				continue
			}
			if s := l.sides[id]; s != nil {
				l.dispatch(s, events[i].Events)
			}
		}
		l.readAgainAll()
	}
}

// evYield makes a loop pass through Go's scheduler now and then. A loop
// goroutine is never descheduled on its own: it blocks in system calls,
// not in the runtime. The runtime's monitor thread (sysmon) takes a
// goroutine that has run on one scheduling tick for 10 ms as one that
// hogs its P: it asks it to yield, takes its P away whenever it finds it
// in a system call, and, having taken one, polls again every 20 µs. With
// a loop busy, the monitor woke 1,200 to 1,800 times a second and took 6
// to 10 % of the process's CPU (BENCHMARKS.md). Yielding inside those
// 10 ms costs a hand-off of the locked thread instead: two threads woken
// and put back to sleep, some 45 µs of CPU here.
type evYield struct {
	turns int
	next  time.Time
}

// evYieldEvery is how long a loop runs between two yields: as rare as the
// monitor allows, with room for the 16 turns between two looks at the
// clock. Every 2 ms, the hand-offs took 8 % of the process's CPU.
const evYieldEvery = 8 * time.Millisecond

func (y *evYield) maybe() {
	// The clock is read every 16 turns: a turn is microseconds.
	y.turns++
	if y.turns&15 != 0 {
		return
	}
	now := time.Now()
	if now.Before(y.next) {
		return
	}
	if !y.next.IsZero() {
		runtime.Gosched()
		now = time.Now()
	}
	y.next = now.Add(evYieldEvery)
}

// dispatch, readAgain and runTask are the loop's three ways into a
// session, each guarded so that a bug in one session ends that session
// alone: the loop's other sessions, and the rest of its queue, carry on.
func (l *evLoop) dispatch(s *evSide, events uint32) {
	defer l.recoverSession(s.s)
	l.handle(s, events)
}

// readAgainAll reads the sides that stopped at evReadsPerTurn in an
// earlier turn, each once more.
func (l *evLoop) readAgainAll() {
	again := l.again
	l.again = nil
	for _, s := range again {
		l.readAgain(s)
	}
}

func (l *evLoop) readAgain(s *evSide) {
	defer l.recoverSession(s.s)
	if !s.s.over {
		l.readSide(s)
		l.update(s.s)
	}
}

func (l *evLoop) runTask(t evTask) {
	defer l.recoverSession(t.sess)
	t.f()
}

// recoverSession, deferred, turns a panic on the loop's thread into the
// end of sess.
func (l *evLoop) recoverSession(sess *evSession) {
	r := recover()
	if r == nil {
		return
	}
	slog.Default().Error("panic in an event loop; ending its session", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
	if sess != nil && !sess.over {
		if sess.up.err == nil {
			sess.up.err = fmt.Errorf("pgwire: event loop panic: %v", r)
		}
		l.end(sess, sess.up)
	}
}

func evID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

func (l *evLoop) drainQueue() {
	var buf [8]byte
	_, _ = unix.Read(l.wakefd, buf[:])
	l.runQueue()
}

// runQueue runs what was posted, once the wake has been read.
func (l *evLoop) runQueue() {
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, t := range q {
		l.runTask(t)
	}
}

// evSession is one session in a loop. Its fields belong to the loop's
// thread until end starts the session's ending goroutine, and to that
// goroutine after.
type evSession struct {
	loop            *evLoop
	client, backend evSide
	up, down        *copier
	ctl             *sessionControl
	bs              *backendScanner
	pending         []byte
	over            bool
	// settled: on io_uring, nothing of the session's is in flight any
	// more and its ending has started.
	settled bool
	// first is the copier whose end ended the session, as in relayWith.
	first *copier
	// stopTimer bounds a stop that waits for a message in progress.
	stopTimer *time.Timer

	// For the session's end (ending): what relayEvents was given, and
	// the stand-in setBackend was given.
	t               *sessionTracker
	tc              *tls.Conn
	cc, backendConn net.Conn
	stand           *evBackend
	done            func(relayResult)
}

// evSide is one socket of a session.
type evSide struct {
	s    *evSession
	id   uint64
	fd   int
	tc   *tls.Conn // the client's TLS connection; nil on a plain socket
	peer *evSide
	// from is the copier that reads this side.
	from *copier
	// ob[off:] is what waits to be written to this socket; nil when
	// nothing does.
	ob  *[]byte
	off int
	// mask is the interest registered with epoll; 0 when not registered.
	mask uint32
	// drained: the last read found the socket empty (or short), so a
	// read before the next EPOLLIN would only meet EAGAIN.
	drained bool
	// err is a failed write: the socket is done for.
	err error
	// ending: the loop has let go of the socket and a goroutine writes
	// the session's last bytes, bounded by evEndWrite.
	ending bool
	closed bool
	// rs is the side's state on a loop on io_uring.
	rs ringSide
}

// evEndWrite bounds each write at a session's end (the stop's
// ErrorResponse, close_notify), as sendError's deadline does.
const evEndWrite = time.Second

func (s *evSide) pending() []byte {
	if s.ob == nil {
		return nil
	}
	return (*s.ob)[s.off:]
}

// pendingLen is how many bytes wait to be written to s: on io_uring
// those of the send in flight too.
func (s *evSide) pendingLen() int {
	n := len(s.pending())
	if s.rs.fl != nil {
		n += len(*s.rs.fl) - s.rs.flOff
	}
	return n
}

// onRing: the side is relayed by a loop on io_uring, which has not let
// go of it yet.
func (s *evSide) onRing() bool { return s.s.loop.ring != nil && !s.ending }

func (s *evSide) queue(p []byte) {
	if s.ob == nil {
		s.ob = evOutBufs.Get().(*[]byte)
		*s.ob = (*s.ob)[:0]
		s.off = 0
	} else if s.off > 0 {
		n := copy(*s.ob, (*s.ob)[s.off:])
		*s.ob = (*s.ob)[:n]
		s.off = 0
	}
	*s.ob = append(*s.ob, p...)
}

// full reports that so much waits to be written to s that s must not be
// read until it drains. Reading a TLS side may queue output to the same
// side (crypto/tls answers a KeyUpdate request there), so a client that
// sends and never reads would otherwise grow its buffer without bound.
// The threshold lies above one read's worth from the peer, sealed: a
// client that writes a COPY while leaving the backend's notices unread
// is still read, and the backend, which stops for it, still drains.
func (s *evSide) full() bool {
	return s.pendingLen() > evOutCap
}

func (s *evSide) consume(n int) {
	s.off += n
	if s.off == len(*s.ob) {
		s.dropPending()
	}
}

func (s *evSide) dropPending() {
	if s.ob == nil {
		return
	}
	putOutBuf(s.ob)
	s.ob, s.off = nil, 0
}

// putOutBuf returns a pending-write buffer to the pool, unless a large
// write grew it past what the pool should keep.
func putOutBuf(b *[]byte) {
	if cap(*b) <= 4*evOutCap {
		evOutBufs.Put(b)
	}
}

// read is loopIO's read: one non-blocking read, none at all while the
// socket is known to be empty.
func (s *evSide) read(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	if s.onRing() {
		return s.readRing(p)
	}
	if s.drained {
		return 0, errWouldBlock
	}
	n, err := rawRead(s.fd, p)
	switch {
	case err == unix.EAGAIN:
		s.drained = true
		return 0, errWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	case n < len(p):
		s.drained = true
	}
	return n, nil
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking
// descriptor without the runtime's system-call bookkeeping (entersyscall
// and exitsyscall, and the chance of losing the P to sysmon): they never
// block, so the loop's thread keeps its P from one to the next.
func rawRead(fd int, p []byte) (int, error)  { return rawIO(syscall.SYS_READ, fd, p) }
func rawWrite(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, p) }

// rawIO is read(2) or write(2) (trap) of p on fd, retried on EINTR.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	for {
		n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)))
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		}
		return 0, e
	}
}

// write is loopIO's write: it takes all of p, writing what the socket
// takes now and keeping the rest for EPOLLOUT. At a session's end it
// writes through, bounded in time.
func (s *evSide) write(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	if s.err != nil {
		return 0, s.err
	}
	total := len(p)
	if s.onRing() {
		// Sent at the turn's end (updateRing), behind what is in
		// flight.
		s.queue(p)
		return total, nil
	}
	if s.ob == nil {
		n, err := writeFD(s.fd, p)
		if err != nil {
			s.err = err
			return 0, err
		}
		p = p[n:]
	}
	if len(p) > 0 {
		s.queue(p)
	}
	if s.ending {
		if err := s.flushBlocking(time.Now().Add(evEndWrite)); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// flush writes what is pending once; it reports a failed socket.
func (s *evSide) flush() error {
	p := s.pending()
	if len(p) == 0 {
		return nil
	}
	n, err := writeFD(s.fd, p)
	if err != nil {
		s.err = err
		return err
	}
	s.consume(n)
	return nil
}

// flushBlocking writes what is pending, waiting in poll(2) for room until
// deadline. Only a goroutine does this, never the loop.
func (s *evSide) flushBlocking(deadline time.Time) error {
	for len(s.pending()) > 0 {
		if err := s.flush(); err != nil {
			return err
		}
		if len(s.pending()) == 0 {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			s.err = os.ErrDeadlineExceeded
			return s.err
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil && err != unix.EINTR {
			s.err = os.NewSyscallError("poll", err)
			return s.err
		}
	}
	return nil
}

func (s *evSide) close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.dropPending()
	return unix.Close(s.fd)
}

// writeFD is one non-blocking write(2), retried on EINTR; a full socket
// writes 0 bytes without error.
func writeFD(fd int, p []byte) (int, error) {
	n, err := rawWrite(fd, p)
	switch err {
	case nil:
		return n, nil
	case unix.EAGAIN:
		return 0, nil
	}
	return 0, os.NewSyscallError("write", err)
}

// handle serves one epoll event of side s.
func (l *evLoop) handle(s *evSide, events uint32) {
	sess := s.s
	if events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.drained = false
	}
	if len(s.pending()) > 0 && events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		wasFull := s.full()
		if err := s.flush(); err != nil {
			// The copier writing to s failed.
			w := s.peer.from
			w.err = err
			l.end(sess, w)
			return
		}
		if len(s.pending()) == 0 {
			// Drained: the peer may be read again, and a TLS peer may
			// hold records epoll knows nothing of.
			l.readSide(s.peer)
			if sess.over {
				return
			}
		}
		if wasFull && !s.full() && events&unix.EPOLLIN == 0 {
			// No longer full: s may be read again, and crypto/tls may
			// hold records of its own.
			l.readSide(s)
			if sess.over {
				return
			}
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.readSide(s)
	}
	l.update(sess)
}

// readSide reads src and forwards to its peer: once for a plain socket
// (the loop is level-triggered, so anything left is announced again), and
// for TLS until crypto/tls has nothing more to give without a new read
// (records it read ahead are invisible to epoll). It stops as soon as the
// peer has bytes waiting.
func (l *evLoop) readSide(src *evSide) {
	sess := src.s
	dst := src.peer
	for i := 0; ; i++ {
		if sess.over || dst.pendingLen() > 0 || src.full() {
			return
		}
		if i == evReadsPerTurn {
			l.again = append(l.again, src)
			return
		}
		var (
			n   int
			err error
		)
		if src.tc != nil {
			n, err = src.tc.Read(l.rbuf)
		} else {
			n, err = src.read(l.rbuf)
		}
		stop := n > 0 && l.forward(src, l.rbuf[:n])
		switch {
		case stop:
			return
		case err == nil:
			if src.tc == nil {
				return
			}
		case err == errWouldBlock:
			// With data, crypto/tls looked ahead for a close_notify:
			// read on.
			if n == 0 {
				return
			}
		default:
			src.from.end(err)
			l.end(sess, src.from)
			return
		}
	}
}

// forward hands p to the reading copier's scan and writes what it lets
// through to the peer; it reports whether the session ended.
func (l *evLoop) forward(src *evSide, p []byte) bool {
	cp := src.from
	fwd := len(p)
	if cp.scan != nil {
		fwd, cp.cut = cp.scan(p)
	}
	if fwd > 0 {
		dst := src.peer
		var err error
		if dst.tc != nil {
			_, err = dst.tc.Write(p[:fwd])
		} else {
			_, err = dst.write(p[:fwd])
		}
		if err != nil {
			cp.err = err
			l.end(src.s, cp)
			return true
		}
		cp.n.Add(int64(fwd))
	}
	if cp.cut {
		l.end(src.s, cp)
		return true
	}
	return false
}

// update brings both sides' epoll interest in line with their state: a
// side is read while its peer has nothing waiting, and watched for room
// while it has. A side wanting neither leaves the set, so that a hang-up
// epoll reports regardless of interest cannot spin the loop.
func (l *evLoop) update(sess *evSession) {
	if sess.over {
		return
	}
	if l.ring != nil {
		l.updateRing(sess)
		return
	}
	for _, s := range []*evSide{&sess.client, &sess.backend} {
		var want uint32
		if len(s.peer.pending()) == 0 && !s.full() {
			want |= unix.EPOLLIN
		}
		if len(s.pending()) > 0 {
			want |= unix.EPOLLOUT
		}
		if want == s.mask {
			continue
		}
		op := unix.EPOLL_CTL_MOD
		switch {
		case s.mask == 0:
			op = unix.EPOLL_CTL_ADD
		case want == 0:
			op = unix.EPOLL_CTL_DEL
		}
		ev := unix.EpollEvent{Events: want, Fd: int32(uint32(s.id)), Pad: int32(uint32(s.id >> 32))}
		if err := unix.EpollCtl(l.epfd, op, s.fd, &ev); err != nil {
			s.from.err = os.NewSyscallError("epoll_ctl", err)
			l.end(sess, s.from)
			return
		}
		s.mask = want
	}
}

// start runs on the loop: it registers the session, forwards what the
// startup reader held, and reads what crypto/tls may already hold.
func (l *evLoop) start(sess *evSession) {
	if sess.over {
		// Nothing of the session's may run before start (see
		// relayEvents); should anything have ended it, its descriptors
		// belong to its ending goroutine now.
		return
	}
	for _, s := range []*evSide{&sess.client, &sess.backend} {
		s.id = l.nextID
		l.nextID++
		l.sides[s.id] = s
	}
	if len(sess.pending) > 0 {
		p := sess.pending
		sess.pending = nil
		if l.forward(&sess.client, p) {
			return
		}
	}
	if sess.ctl != nil && sess.ctl.requested.Load() {
		l.stopRequested(sess)
		if sess.over {
			return
		}
	}
	if sess.client.tc != nil {
		l.readSide(&sess.client)
	}
	l.update(sess)
}

// end takes the session out of the loop, and starts a goroutine for the
// rest, which may block.
func (l *evLoop) end(sess *evSession, first *copier) {
	if sess.over {
		return
	}
	sess.over = true
	sess.first = first
	if sess.stopTimer != nil {
		sess.stopTimer.Stop()
	}
	if l.ring != nil {
		l.endRing(sess)
		return
	}
	for _, s := range []*evSide{&sess.client, &sess.backend} {
		if s.mask != 0 {
			_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
			s.mask = 0
		}
		delete(l.sides, s.id)
	}
	go sess.ending()
}

// stopRequested runs on the loop when the sessionControl asks for a stop:
// at a backend message boundary the session is cut there; inside a
// message the backend gets stopGrace to finish it (the scanner cuts as
// soon as it does), then the session is closed without an ErrorResponse.
func (l *evLoop) stopRequested(sess *evSession) {
	if sess.over || !sess.ctl.requested.Load() {
		return
	}
	if sess.bs.f.atBoundary() {
		sess.down.cut = true
		l.end(sess, sess.down)
		return
	}
	if sess.stopTimer == nil {
		sess.stopTimer = time.AfterFunc(stopGrace, func() {
			l.post(sess, func() {
				if !sess.over {
					sess.down.err = os.ErrDeadlineExceeded
					l.end(sess, sess.down)
				}
			})
		})
	}
}

// abort ends the session at once (server Close).
func (l *evLoop) abort(sess *evSession) {
	if !sess.over {
		sess.up.err = net.ErrClosed
		l.end(sess, sess.up)
	}
}

// evBackend stands for a loop session's backend where the server keeps
// its connections (setBackend), so that a fast shutdown's Close reaches
// the loop. After the relay it closes the backend connection the session
// ended with, if it kept one.
type evBackend struct {
	net.Conn
	loop *evLoop
	sess *evSession
	mu   sync.Mutex
	kept net.Conn
	fin  bool
}

func (b *evBackend) Close() error {
	b.mu.Lock()
	fin, kept := b.fin, b.kept
	b.mu.Unlock()
	if !fin {
		b.loop.post(b.sess, func() { b.loop.abort(b.sess) })
		return nil
	}
	if kept != nil {
		return kept.Close()
	}
	return nil
}

// evClient is a plain client socket after the loop: what sendError and
// Close need.
type evClient struct {
	net.Conn
	s *evSide
}

func (c *evClient) Write(p []byte) (int, error)           { return c.s.write(p) }
func (c *evClient) Close() error                          { return c.s.close() }
func (c *evClient) SetWriteDeadline(time.Time) error      { return nil }
func (c *evClient) SetDeadline(time.Time) error           { return nil }
func (c *evClient) SetReadDeadline(time.Time) error       { return nil }
func (c *evClient) Read([]byte) (int, error)              { return 0, net.ErrClosed }
func (c *evClient) CloseWrite() error                     { return nil }
func (c *evClient) SyscallConn() (syscall.RawConn, error) { return nil, errors.ErrUnsupported }

// relayEvents is relayWith on an event loop. It returns once the session
// has joined a loop, and done is called with the outcome on a goroutine
// the loop starts when it lets go of the session; the kept backend
// connection is then a new net.Conn over the same socket. ok is false
// when the session cannot join a loop (a backend over TLS, a client that
// is not a socket, no loop): nothing has been touched then, done is never
// called, and the caller relays the session with goroutines. setBackend,
// when set, is given the stand-in for the backend that a fast shutdown
// closes.
func relayEvents(onRing bool, client net.Conn, pending []byte, backendConn net.Conn, t *sessionTracker, ctl *sessionControl, setBackend func(net.Conn), done func(relayResult)) (ok bool) {
	var (
		tc *tls.Conn
		tr *transport
		cc = client
	)
	if c, isTLS := client.(*tls.Conn); isTLS {
		tc = c
		if tr, _ = c.NetConn().(*transport); tr == nil || (tr.pre != nil && tr.pre.Buffered() > 0) || tr.alerts != nil {
			return false
		}
		cc = tr.Conn
	}
	switch cc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return false
	}
	switch backendConn.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return false
	}
	l, err := evLoopFor(onRing)
	if err != nil {
		return false
	}
	cfd, err := sockfd.Dup(cc)
	if err != nil {
		return false
	}
	bfd, err := sockfd.Dup(backendConn)
	if err != nil {
		unix.Close(cfd)
		return false
	}
	// The net.Conns go: closing them takes the sockets out of Go's
	// poller, which would otherwise wake for every packet too.
	cc.Close()
	backendConn.Close()

	evJoined.Add(1)
	if l.ring != nil {
		evRingJoined.Add(1)
	}
	sess := &evSession{loop: l, ctl: ctl, pending: pending, t: t, tc: tc, cc: cc, backendConn: backendConn, done: done}
	sess.up = &copier{name: "client->backend"}
	sess.down = &copier{name: "backend->client"}
	sess.client = evSide{s: sess, fd: cfd, tc: tc, peer: &sess.backend, from: sess.up}
	sess.backend = evSide{s: sess, fd: bfd, peer: &sess.client, from: sess.down}
	if t != nil {
		sess.up.scan, sess.down.scan = t.fromClient, t.fromBackend
	}
	if ctl != nil {
		sess.bs = newBackendScanner(t, ctl)
		sess.down.scan = sess.bs.scan
		ctl.setCopiers(sess.up, sess.down)
	}
	if tr != nil {
		tr.lio = &sess.client
	}
	sess.stand = &evBackend{Conn: backendConn, loop: l, sess: sess}
	// start is queued before anything else of the session's can be, and
	// the queue is first in, first out: a stop's wake and a fast
	// shutdown's abort through the stand-in, handed out only below, run
	// after it. Run before it, they could end the session and let its
	// ending goroutine close the descriptors that start then registers.
	l.post(sess, func() { l.start(sess) })
	if ctl != nil {
		ctl.mu.Lock()
		ctl.wake = func() { l.post(sess, func() { l.stopRequested(sess) }) }
		// A stop that came before the wake was there woke nobody.
		missed := ctl.requested.Load()
		ctl.mu.Unlock()
		if missed {
			l.post(sess, func() { l.stopRequested(sess) })
		}
	}
	if setBackend != nil {
		setBackend(sess.stand)
	}
	return true
}

// ending runs on a goroutine of its own once the loop has let go of the
// session: the goroutine relay's ending, then done.
func (sess *evSession) ending() {
	r := relayResult{kept: sess.backendConn}
	defer func() {
		// A bug in one session's end must neither take the process down
		// nor leave done uncalled: Shutdown waits for every session's.
		if p := recover(); p != nil {
			slog.Default().Error("panic while ending an event-loop session", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			sess.client.close()
			sess.backend.close()
			sess.ctl.finish()
			if sess.stand != nil {
				sess.stand.mu.Lock()
				sess.stand.fin, sess.stand.kept = true, nil
				sess.stand.mu.Unlock()
			}
			r = relayResult{kept: sess.backendConn}
		}
		r.in, r.out = sess.up.n.Load(), sess.down.n.Load()
		sess.done(r)
	}()
	r.keep, r.kept = sess.finish()
}

// finish closes what the session leaves behind, as relayWith does after
// its copiers, and returns the backend connection to keep, if any.
func (sess *evSession) finish() (keep bool, kept net.Conn) {
	t, ctl, stand, backendConn := sess.t, sess.ctl, sess.stand, sess.backendConn
	up, down := sess.up, sess.down
	clientSide, backendSide := &sess.client, &sess.backend
	clientSide.ending, backendSide.ending = true, true
	var clientEnd net.Conn = &evClient{Conn: sess.cc, s: clientSide}
	if sess.tc != nil {
		clientEnd = sess.tc
	}
	settle := func(kept net.Conn) {
		stand.mu.Lock()
		stand.fin, stand.kept = true, kept
		stand.mu.Unlock()
	}
	first := sess.first
	if first == down && down.cut {
		// Stopped between two backend messages: what the client was
		// owed up to there goes first, then the stop's error.
		ctl.finish()
		ctl.sendError(clientEnd)
		closeClient(clientEnd, clientSide)
		backendSide.close()
		settle(nil)
		return false, backendConn
	}
	if first == up && !errors.Is(up.err, net.ErrClosed) {
		// The client's side ended first: what waits for it may end with
		// the alert crypto/tls sent for a record it could not decrypt.
		// It goes out, bounded like every write at the end.
		_ = clientSide.flushBlocking(time.Now().Add(evEndWrite))
	} else {
		// Nothing more is owed to a client whose backend ended the
		// session, or whose session the server closed.
		clientSide.dropPending()
	}
	closeClient(clientEnd, clientSide)
	if first == up && up.cut {
		// The client said Terminate. Every byte forwarded before it
		// must have reached the backend for the tracker's verdict to
		// hold.
		ctl.finish()
		flushed := backendSide.flushBlocking(time.Now().Add(evEndWrite)) == nil
		// A backend that sent what nobody read is not known to be
		// where the tracker says.
		if flushed && !backendSide.rs.unread && (t.reusable() || (t.client.atBoundary() && t.backend.atBoundary())) {
			if nc, err := fdConn(backendSide); err == nil {
				if t.reusable() {
					settle(nc)
					return true, nc
				}
				terminate(nc)
				settle(nil)
				return false, backendConn
			}
		}
		backendSide.close()
		settle(nil)
		return false, backendConn
	}
	if first == up && up.err == nil {
		// The client ended cleanly: crypto/tls hands over a record's data
		// and the close_notify behind it in one read, and the loop ended
		// the session with what the backend had not taken yet still
		// queued. Those bytes were the client's last words (a COPY's
		// end, a Terminate): they go first, bounded like every write at
		// the end.
		_ = backendSide.flushBlocking(time.Now().Add(evEndWrite))
	}
	backendSide.close()
	ctl.finish()
	settle(nil)
	return false, backendConn
}

// closeClient closes the client after the loop: close_notify for TLS
// (bounded like every write at the end), then the descriptor.
func closeClient(c net.Conn, s *evSide) {
	c.Close()
	s.close()
}

// fdConn turns a side's descriptor back into a net.Conn in Go's poller,
// for a backend that outlives the session.
func fdConn(s *evSide) (net.Conn, error) {
	s.dropPending()
	f := os.NewFile(uintptr(s.fd), "backend")
	s.closed = true
	nc, err := net.FileConn(f)
	f.Close()
	return nc, err
}
