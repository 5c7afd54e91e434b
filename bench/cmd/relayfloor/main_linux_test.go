package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns the test's end of a Unix socket pair as a net.Conn (with
// deadlines) and the loop's end as a non-blocking descriptor.
func pair(t *testing.T) (net.Conn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "test end")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := unix.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, fds[1]
}

func TestRelay(t *testing.T) {
	for _, mode := range []string{"epoll", "uring"} {
		t.Run(mode, func(t *testing.T) {
			var l loop
			if mode == "epoll" {
				l = newEpollLoop()
			} else {
				u, err := newUringLoop()
				if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
					t.Skipf("io_uring unavailable: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				l = u
			}
			done := make(chan struct{})
			go func() { l.run(); close(done) }()
			stopped := false
			stop := func() {
				if stopped {
					return
				}
				stopped = true
				l.stop()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("loop did not stop")
				}
			}
			defer stop()

			client, cfd := pair(t)
			backend, bfd := pair(t)
			l.add(cfd, bfd)

			if _, err := client.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := io.ReadFull(backend, got); err != nil || string(got) != "ping" {
				t.Fatalf("backend read %q, %v", got, err)
			}
			// More than one buffer and more than a socket holds: the
			// relay must carry it all, in order.
			big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
			wrote := make(chan error, 1)
			go func() { _, err := backend.Write(big); wrote <- err }()
			back := make([]byte, len(big))
			_, rerr := io.ReadFull(client, back)
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			if rerr != nil || !bytes.Equal(back, big) {
				t.Fatalf("client read %d bytes, %v", len(back), rerr)
			}
			client.Close()
			if n, err := backend.Read(got); err != io.EOF {
				t.Fatalf("after the client's close the backend read %d, %v; want EOF", n, err)
			}

			// A pair still open when the loop stops is closed by it.
			client2, cfd2 := pair(t)
			backend2, bfd2 := pair(t)
			l.add(cfd2, bfd2)
			if _, err := client2.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(backend2, got[:1]); err != nil {
				t.Fatal(err)
			}
			stop()
			if n, err := backend2.Read(got); err != io.EOF {
				t.Fatalf("after stop the backend read %d, %v; want EOF", n, err)
			}
		})
	}
}
