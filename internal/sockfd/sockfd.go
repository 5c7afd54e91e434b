//go:build unix

// Package sockfd takes a socket's descriptor out of a net.Conn, for code
// that drives the socket with its own system calls instead of through
// Go's poller.
package sockfd

import (
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dup returns a non-blocking, close-on-exec duplicate of c's descriptor,
// which the caller owns. c itself stays open: closing it takes the
// original descriptor out of Go's poller, which would otherwise wake for
// the socket too.
func Dup(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) {
		fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
