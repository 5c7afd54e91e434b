package uring

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// newRing sets up a ring enabled on the calling thread, which the test
// keeps locked; it skips where the kernel refuses io_uring.
func newRing(t *testing.T) *Ring {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r, err := New(8)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("io_uring unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Enable(); err != nil {
		t.Fatal(err)
	}
	return r
}

func socketPair(t *testing.T) (int, int) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// next submits what is queued and returns the next completion, waiting
// for it; completions that come together are handed out one by one.
func next(t *testing.T, r *Ring) Completion {
	t.Helper()
	if q := queued[r]; len(q) > 0 {
		queued[r] = q[1:]
		return q[0]
	}
	for range 100 {
		if err := r.Enter(true); err != nil {
			t.Fatal(err)
		}
		var got []Completion
		r.Reap(func(c Completion) { got = append(got, c) })
		if len(got) > 0 {
			queued[r] = got[1:]
			return got[0]
		}
	}
	t.Fatal("no completion after 100 waits")
	return Completion{}
}

// queued holds completions reaped but not yet handed out by next.
var queued = map[*Ring][]Completion{}

// TestRecvProvidedBuffers: a receive takes a buffer from its group only
// when data comes, says which, and finds none once they are all taken
// (ENOBUFS) until one is given back.
func TestRecvProvidedBuffers(t *testing.T) {
	r := newRing(t)
	a, b := socketPair(t)
	bufs, err := r.NewBuffers(3, 2, 16)
	if err != nil {
		t.Fatal(err)
	}
	held := map[uint16]bool{}
	for i, msg := range []string{"first", "second"} {
		if err := r.Recv(a, 3, 16, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
		// Submitted before the data is there: it waits for it.
		if err := r.Enter(false); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(b, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		c := next(t, r)
		id, ok := c.Buffer()
		if c.UserData != uint64(10+i) || c.Err() != nil || !ok {
			t.Fatalf("completion %+v, want user data %d with a buffer", c, 10+i)
		}
		if got := bufs.Bytes(id)[:c.Res]; string(got) != msg {
			t.Fatalf("buffer %d holds %q, want %q", id, got, msg)
		}
		if held[id] {
			t.Fatalf("buffer %d handed out twice", id)
		}
		held[id] = true
	}
	if _, err := unix.Write(b, []byte("third")); err != nil {
		t.Fatal(err)
	}
	if err := r.Recv(a, 3, 16, 12); err != nil {
		t.Fatal(err)
	}
	if c := next(t, r); !errors.Is(c.Err(), unix.ENOBUFS) {
		t.Fatalf("with every buffer taken: %+v, want ENOBUFS", c)
	}
	for id := range held {
		bufs.Recycle(id)
	}
	if err := r.Recv(a, 3, 16, 13); err != nil {
		t.Fatal(err)
	}
	c := next(t, r)
	id, ok := c.Buffer()
	if !ok || string(bufs.Bytes(id)[:c.Res]) != "third" {
		t.Fatalf("after recycling: %+v, want \"third\" in a buffer", c)
	}
}

// TestSendRecvInto: a send's bytes arrive whole, a receive into the
// caller's buffer gets them, and a peer's close is a receive of 0.
func TestSendRecvInto(t *testing.T) {
	r := newRing(t)
	a, b := socketPair(t)
	msg := bytes.Repeat([]byte("x"), 1000)
	if err := r.Send(a, msg, 1); err != nil {
		t.Fatal(err)
	}
	if c := next(t, r); c.UserData != 1 || int(c.Res) != len(msg) {
		t.Fatalf("send: %+v, want %d bytes", c, len(msg))
	}
	got := make([]byte, 2000)
	if err := r.RecvInto(b, got, 2); err != nil {
		t.Fatal(err)
	}
	if c := next(t, r); c.UserData != 2 || !bytes.Equal(got[:c.Res], msg) {
		t.Fatalf("receive: %+v", c)
	}
	unix.Shutdown(a, unix.SHUT_WR)
	if err := r.RecvInto(b, got, 3); err != nil {
		t.Fatal(err)
	}
	if c := next(t, r); c.UserData != 3 || c.Res != 0 {
		t.Fatalf("receive after the peer's close: %+v, want 0", c)
	}
	if err := r.Send(a, msg, 4); err != nil {
		t.Fatal(err)
	}
	if c := next(t, r); !errors.Is(c.Err(), unix.EPIPE) {
		t.Fatalf("send after shutdown: %+v, want EPIPE", c)
	}
}

// TestCancel: a cancelled receive completes with ECANCELED, and the
// cancel itself completes too; an eventfd read waits for a write.
func TestCancel(t *testing.T) {
	r := newRing(t)
	a, _ := socketPair(t)
	buf := make([]byte, 8)
	if err := r.RecvInto(a, buf, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Enter(false); err != nil {
		t.Fatal(err)
	}
	if err := r.Cancel(1, 2); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]Completion{}
	for len(seen) < 2 {
		c := next(t, r)
		seen[c.UserData] = c
	}
	if c := seen[1]; !errors.Is(c.Err(), unix.ECANCELED) {
		t.Errorf("cancelled receive: %+v, want ECANCELED", c)
	}
	if c := seen[2]; c.Err() != nil {
		t.Errorf("cancel: %+v, want success", c)
	}

	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := r.Read(efd, buf, 3); err != nil {
		t.Fatal(err)
	}
	if err := r.Enter(false); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if c := next(t, r); c.UserData != 3 || c.Res != 8 {
		t.Fatalf("eventfd read: %+v, want 8 bytes", c)
	}
}

// TestSubmissionQueueFull: queueing more entries than the queue holds
// submits the queued ones rather than failing.
func TestSubmissionQueueFull(t *testing.T) {
	r := newRing(t)
	a, b := socketPair(t)
	msg := []byte("y")
	const n = 20 // the ring has 8 entries
	for i := range n {
		if err := r.Send(a, msg, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	done := 0
	for done < n {
		c := next(t, r)
		if c.Res != 1 {
			t.Fatalf("send %d: %+v", c.UserData, c)
		}
		done++
	}
	got := make([]byte, 64)
	m, err := unix.Read(b, got)
	if err != nil || m != n {
		t.Fatalf("peer read %d, %v; want %d bytes", m, err, n)
	}
}

func TestNewBuffersCount(t *testing.T) {
	r := newRing(t)
	for _, n := range []int{0, 3, 1 << 16} {
		if _, err := r.NewBuffers(1, n, 16); err == nil {
			t.Errorf("%d buffers accepted", n)
		}
	}
}
