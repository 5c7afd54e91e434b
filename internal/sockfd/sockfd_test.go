//go:build unix

package sockfd

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(5 * time.Second))

	fd, err := Dup(c)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// The duplicate outlives the net.Conn.
	c.Close()

	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || flags&unix.O_NONBLOCK == 0 {
		t.Fatalf("flags %#x, %v: want O_NONBLOCK", flags, err)
	}
	fdflags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || fdflags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("fd flags %#x, %v: want FD_CLOEXEC", fdflags, err)
	}
	if _, err := unix.Read(fd, make([]byte, 1)); err != unix.EAGAIN {
		t.Fatalf("read with nothing sent: %v, want EAGAIN", err)
	}
	if _, err := unix.Write(fd, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	if _, err := peer.Read(got); err != nil || string(got) != "hi" {
		t.Fatalf("peer read %q, %v", got, err)
	}
}

func TestDupNotASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if fd, err := Dup(a); err == nil {
		unix.Close(fd)
		t.Fatal("Dup of a net.Pipe succeeded")
	}
}
