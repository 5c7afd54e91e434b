package pgwire

import (
	"bufio"
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
// decrypt what it read there; see (*copier).runTLS. Read then never
// blocks: with nothing to read it returns errWouldBlock, a temporary
// net.Error that crypto/tls passes up without poisoning the connection (a
// partial record stays in its buffer). The relay then holds no plaintext
// buffer while a session is idle, where a bufio.Reader over the TLS
// connection would hold 8 KiB for the session's life, an eighth of the
// 64 KiB an idle client may cost.
type transport struct {
	net.Conn
	// pre is the startup reader while it holds bytes (direct TLS only);
	// dropped, with its buffer, once they have been read.
	pre *bufio.Reader
	// fd is the socket while the relay reads it inside the poller's
	// callback, and -1 otherwise.
	fd int
	// alerts is set only during a handshake that verifies client
	// certificates: it may rewrite the alert record that follows a
	// failed verification (see tlsalert.go).
	alerts *alertRewrite
	// lio is the socket once the session has left Go's poller for an
	// event loop (evloop_linux.go): Conn is closed then, and every read,
	// write and close goes to the loop's duplicate of the descriptor.
	// Its Write never fails for want of room: crypto/tls treats any
	// write error as final, so what the socket will not take waits in the
	// loop's buffer instead.
	lio loopIO
}

// loopIO is a socket as an event loop drives it.
type loopIO interface {
	// read is one non-blocking read: errWouldBlock when there is
	// nothing yet.
	read(p []byte) (int, error)
	// write takes all of p, or fails for good.
	write(p []byte) (int, error)
	close() error
}

func newTransport(c net.Conn, pre *bufio.Reader) *transport {
	t := &transport{Conn: c, fd: -1}
	if pre != nil && pre.Buffered() > 0 {
		t.pre = pre
	}
	return t
}

func (t *transport) Read(p []byte) (int, error) {
	if t.pre != nil {
		if t.pre.Buffered() > 0 {
			return t.pre.Read(p)
		}
		t.pre = nil
	}
	if t.lio != nil {
		return t.lio.read(p)
	}
	if t.fd < 0 {
		return t.Conn.Read(p)
	}
	return readSocket(t.fd, p)
}

// Write sends p to the socket. During a handshake that verifies client
// certificates, the record that follows a failed verification may be
// replaced by one carrying OpenSSL's alert; see tlsalert.go.
func (t *transport) Write(p []byte) (int, error) {
	if t.alerts != nil {
		p = t.alerts.rewrite(p)
	}
	if t.lio != nil {
		return t.lio.write(p)
	}
	return t.Conn.Write(p)
}

// Close closes the socket, or the event loop's descriptor once the
// session has moved there.
func (t *transport) Close() error {
	if t.lio != nil {
		return t.lio.close()
	}
	return t.Conn.Close()
}

// readSocket is one non-blocking read(2) of a stream socket, in io.Reader
// terms: errWouldBlock when it has nothing yet, io.EOF at its end.
func readSocket(fd int, p []byte) (int, error) {
	n, err := readFD(fd, p)
	switch {
	case err == syscall.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
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
