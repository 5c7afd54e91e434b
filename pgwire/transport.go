package pgwire

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"os"
	"syscall"
)

// transport is the client's socket as crypto/tls sees it. Until the relay
// starts it is the plain net.Conn (deadlines and all), read after whatever
// the startup reader still holds: with direct TLS the ClientHello's first
// bytes were peeked into it.
//
// In the relay, the client copier reads the socket from inside the
// runtime poller's callback (syscall.RawConn.Read) and lets crypto/tls
// decrypt what it read there; see (*copier).runTLS. Read then never blocks:
// with nothing to read it returns errWouldBlock, a temporary net.Error that
// crypto/tls passes up without poisoning the connection (a partial record
// stays in its buffer). That gives the relay two things net.Conn can't:
//   - no read that only reports EAGAIN: once a read has left the socket
//     empty, the next read waits for the poller first (one system call of
//     the six a proxied query costs; issue 7);
//   - no plaintext buffer held between messages, so an idle session keeps
//     none.
type transport struct {
	net.Conn
	// pre is the startup reader while it holds bytes (direct TLS only);
	// dropped, with its buffer, once they have been read.
	pre *bufio.Reader
	// fd is the socket while the relay reads it inside the poller's
	// callback, and -1 otherwise.
	fd int
	// empty: the last read of fd left the socket empty.
	empty bool
	// The record boundaries of everything handed to crypto/tls, from the
	// first byte of the TLS stream (always a record header): hdrN header
	// bytes seen of the current record, hdrLen its length bytes, body
	// bytes of its body still to come, and records completed since the
	// relay last reset the count. With them the relay knows when
	// crypto/tls holds no complete record and need not be asked again.
	hdrN    int
	hdrLen  [2]byte
	body    int
	records int
}

func newTransport(c net.Conn, pre *bufio.Reader) *transport {
	t := &transport{Conn: c, fd: -1}
	if pre != nil && pre.Buffered() > 0 {
		t.pre = pre
	}
	return t
}

func (t *transport) Read(p []byte) (int, error) {
	n, err := t.read(p)
	t.count(p[:n])
	return n, err
}

func (t *transport) read(p []byte) (int, error) {
	if t.pre != nil {
		if t.pre.Buffered() > 0 {
			return t.pre.Read(p)
		}
		t.pre = nil
	}
	if t.fd < 0 {
		return t.Conn.Read(p)
	}
	if t.empty || len(p) == 0 {
		return 0, errWouldBlock
	}
	n, err := readFD(t.fd, p)
	switch {
	case err == syscall.EAGAIN:
		t.empty = true
		return 0, errWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	// A stream socket's read returns less than asked only when it has
	// emptied the receive queue; anything that arrives later makes the
	// socket readable again, and the poller records that even before
	// the copier waits (its notifications are edge-triggered).
	t.empty = n < len(p)
	return n, nil
}

// count follows TLS record boundaries (5-byte headers, length in the last
// two) through p.
func (t *transport) count(p []byte) {
	for len(p) > 0 {
		if t.body > 0 {
			k := min(t.body, len(p))
			t.body -= k
			p = p[k:]
			if t.body == 0 {
				t.records++
			}
			continue
		}
		if t.hdrN >= 3 {
			t.hdrLen[t.hdrN-3] = p[0]
		}
		t.hdrN++
		p = p[1:]
		if t.hdrN == 5 {
			t.hdrN = 0
			t.body = int(binary.BigEndian.Uint16(t.hdrLen[:]))
			if t.body == 0 {
				t.records++
			}
		}
	}
}

// rawConn is the socket's RawConn, or nil when the client is not a plain
// socket (tests over net.Pipe).
func (t *transport) rawConn() syscall.RawConn {
	sc, ok := t.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// errWouldBlock is transport's answer when the socket has nothing to read.
var errWouldBlock error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string { return "pgwire: socket would block" }

// Temporary is what crypto/tls checks before it records a read error as
// permanent.
func (wouldBlockError) Temporary() bool { return true }
func (wouldBlockError) Timeout() bool   { return false }

// readFD is read(2), retried on EINTR.
func readFD(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}
