// Command relayfloor measures what a plaintext byte relay costs on this
// machine with two designs of its loop, so that the event-loop relay's
// CPU can be compared with the floor of each design rather than with a
// guess: an epoll loop that reads once and writes to the peer (what
// PgBouncer and pgcertgate's event loop do, without TLS), and an io_uring
// loop that keeps one receive per socket in flight and submits every send
// and receive of a turn in one io_uring_enter.
//
//	relayfloor -listen 127.0.0.1:7010 -backend /path/to/.s.PGSQL.5432 -mode uring
//
// Point pgbench at it with sslmode=disable and a pg_hba.conf that trusts
// the Unix socket; measure the process with perf stat.
package main

import (
	"errors"
	"flag"
	"log"
	"net"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pgcertgate/pgcertgate/internal/sockfd"
	"github.com/pgcertgate/pgcertgate/internal/uring"
)

const bufSize = 32 << 10

func main() {
	listen := flag.String("listen", "127.0.0.1:7010", "TCP address to accept clients on")
	backend := flag.String("backend", "", "PostgreSQL's Unix socket path (.s.PGSQL.PORT)")
	mode := flag.String("mode", "epoll", "epoll or uring")
	flag.Parse()
	if *backend == "" {
		log.Fatal("relayfloor: -backend is required")
	}
	var l loop
	switch *mode {
	case "epoll":
		l = newEpollLoop()
	case "uring":
		u, err := newUringLoop()
		if err != nil {
			log.Fatalf("relayfloor: io_uring: %v", err)
		}
		l = u
	default:
		log.Fatalf("relayfloor: -mode %q: want epoll or uring", *mode)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	go l.run()
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		b, err := net.Dial("unix", *backend)
		if err != nil {
			log.Printf("relayfloor: backend: %v", err)
			c.Close()
			continue
		}
		cfd, err1 := detach(c)
		bfd, err2 := detach(b)
		if err := errors.Join(err1, err2); err != nil {
			log.Printf("relayfloor: %v", err)
			for _, fd := range []int{cfd, bfd} {
				if fd >= 0 {
					unix.Close(fd)
				}
			}
			continue
		}
		l.add(cfd, bfd)
	}
}

// detach takes a socket out of Go's poller, so that only the loop
// watches it.
func detach(c net.Conn) (int, error) {
	defer c.Close()
	return sockfd.Dup(c)
}

type loop interface {
	add(client, backend int)
	// run relays until stop is called.
	run()
	stop()
}

// pending hands new pairs, and the stop, to a loop's thread.
type pending struct {
	mu      sync.Mutex
	pairs   [][2]int
	stopped bool
	wake    int // eventfd
}

func (p *pending) push(a, b int) {
	p.mu.Lock()
	p.pairs = append(p.pairs, [2]int{a, b})
	p.mu.Unlock()
	p.ring()
}

func (p *pending) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.ring()
}

func (p *pending) ring() {
	one := [8]byte{1}
	for {
		if _, err := unix.Write(p.wake, one[:]); err != unix.EINTR {
			return
		}
	}
}

// take returns the new pairs, and whether the loop is to stop.
func (p *pending) take() ([][2]int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.pairs
	p.pairs = nil
	return out, p.stopped
}

// epollLoop: level-triggered, one read per ready socket, written to the
// peer in the same turn.
type epollLoop struct {
	pending
	epfd int
	peer map[int]int
	buf  []byte
}

func newEpollLoop() *epollLoop {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatal(err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		log.Fatal(err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		log.Fatal(err)
	}
	return &epollLoop{pending: pending{wake: wake}, epfd: epfd, peer: map[int]int{}, buf: make([]byte, bufSize)}
}

func (l *epollLoop) add(a, b int) { l.push(a, b) }

func (l *epollLoop) run() {
	runtime.LockOSThread()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		for i := range n {
			fd := int(events[i].Fd)
			if fd == l.wake {
				var v [8]byte
				unix.Read(l.wake, v[:])
				pairs, stop := l.take()
				if stop {
					l.shut()
					return
				}
				for _, p := range pairs {
					l.peer[p[0]], l.peer[p[1]] = p[1], p[0]
					for _, fd := range p {
						ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
						if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
							log.Fatal(err)
						}
					}
				}
				continue
			}
			peer, ok := l.peer[fd]
			if !ok {
				continue
			}
			m, err := unix.Read(fd, l.buf)
			if err == unix.EAGAIN {
				continue
			}
			if m <= 0 || writeAll(peer, l.buf[:m]) != nil {
				l.close(fd, peer)
			}
		}
	}
}

// shut closes every socket and the loop's own descriptors.
func (l *epollLoop) shut() {
	for fd := range l.peer {
		unix.Close(fd)
	}
	unix.Close(l.epfd)
	unix.Close(l.wake)
}

func (l *epollLoop) close(a, b int) {
	delete(l.peer, a)
	delete(l.peer, b)
	unix.Close(a)
	unix.Close(b)
}

// writeAll writes p, waiting in poll when the socket is full (rare with
// select-only traffic; the loop stalls, which a measurement tool can
// afford).
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		switch {
		case err == unix.EAGAIN:
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			unix.Poll(pfd, -1)
		case err == unix.EINTR:
		case err != nil:
			return err
		default:
			p = p[n:]
		}
	}
	return nil
}

type side struct {
	fd      int
	other   *side // the pair's other socket, where this side's bytes go
	buf     []byte
	sending []byte // what the send in flight still has to take
	closed  bool
}

type uringLoop struct {
	pending
	r        *uring.Ring
	sides    map[uint64]*side
	next     uint64
	wakeBuf  [8]byte
	stopping bool
	inflight int // operations submitted or queued, not yet completed
}

func newUringLoop() (*uringLoop, error) {
	r, err := uring.New(1024)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &uringLoop{pending: pending{wake: wake}, r: r, sides: map[uint64]*side{}, next: 1}, nil
}

func (l *uringLoop) add(a, b int) { l.push(a, b) }

func (l *uringLoop) queued(err error) {
	if err != nil {
		log.Fatalf("relayfloor: %v", err)
	}
	l.inflight++
}

func (l *uringLoop) run() {
	// The ring was set up single-issuer: only this thread submits.
	runtime.LockOSThread()
	if err := l.r.Enable(); err != nil {
		log.Fatalf("relayfloor: enabling the ring: %v", err)
	}
	l.queued(l.r.Read(l.wake, l.wakeBuf[:], 0))
	draining := false
	for !draining || l.inflight > 0 {
		if err := l.r.Enter(true); err != nil {
			log.Fatalf("relayfloor: %v", err)
		}
		l.r.Reap(func(c uring.Completion) {
			l.inflight--
			if !draining {
				l.complete(c.UserData, c.Res)
			}
		})
		if l.stopping && !draining {
			// The kernel writes into the sides' buffers until their
			// operations complete: end them all, and wait for that.
			draining = true
			for _, s := range l.sides {
				unix.Shutdown(s.fd, unix.SHUT_RDWR)
			}
		}
	}
	for _, s := range l.sides {
		unix.Close(s.fd)
		if s.closed {
			// Its other side is gone from the map.
			unix.Close(s.other.fd)
		}
	}
	l.r.Close()
	unix.Close(l.wake)
}

// User data: 0 the wake read; otherwise side id<<1 | 1 for a send, 0
// for a receive.
func (l *uringLoop) complete(ud uint64, res int32) {
	if ud == 0 {
		pairs, stop := l.take()
		if stop {
			l.stopping = true
			return
		}
		for _, p := range pairs {
			a := &side{fd: p[0], buf: make([]byte, bufSize)}
			b := &side{fd: p[1], buf: make([]byte, bufSize), other: a}
			a.other = b
			ia, ib := l.next, l.next+1
			l.next += 2
			l.sides[ia], l.sides[ib] = a, b
			l.queued(l.r.RecvInto(a.fd, a.buf, ia<<1))
			l.queued(l.r.RecvInto(b.fd, b.buf, ib<<1))
		}
		l.queued(l.r.Read(l.wake, l.wakeBuf[:], 0))
		return
	}
	id, send := ud>>1, ud&1 == 1
	s := l.sides[id]
	if s == nil {
		return
	}
	if res <= 0 || s.closed {
		l.closeSide(id, s)
		return
	}
	if send {
		s.sending = s.sending[res:]
		if len(s.sending) > 0 {
			l.queued(l.r.Send(s.other.fd, s.sending, id<<1|1))
			return
		}
		l.queued(l.r.RecvInto(s.fd, s.buf, id<<1))
		return
	}
	s.sending = s.buf[:res]
	l.queued(l.r.Send(s.other.fd, s.sending, id<<1|1))
}

// closeSide ends a pair on its first error or EOF; the other side's
// operations then complete with errors (their sockets are shut down) and
// find it gone.
func (l *uringLoop) closeSide(id uint64, s *side) {
	if s.closed {
		// The pair's second side: nothing of it is in flight any more.
		delete(l.sides, id)
		unix.Close(s.fd)
		unix.Close(s.other.fd)
		return
	}
	s.closed, s.other.closed = true, true
	unix.Shutdown(s.fd, unix.SHUT_RDWR)
	unix.Shutdown(s.other.fd, unix.SHUT_RDWR)
	delete(l.sides, id)
}
