package pgwire

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// TestKeepalives: accepted client sockets carry tcp_keepalives_idle,
// _interval and _count, as PostgreSQL's do.
func TestKeepalives(t *testing.T) {
	ts := newTestServer(t)
	rt := ts.srv.state.Load().rt
	cfg := *rt.Config
	cfg.ListenAddresses, cfg.Port = "127.0.0.1", freePort(t)
	cfg.TCPKeepalivesIdle, cfg.TCPKeepalivesInterval, cfg.TCPKeepalivesCount = 37, 11, 4
	rt2 := *rt
	rt2.Config = &cfg
	srv := New(Options{Runtime: &rt2, Logger: ts.srv.log})
	lns, err := srv.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer lns[0].Close()
	c, err := net.Dial("tcp", lns[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	accepted, err := lns[0].Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	raw, err := accepted.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	raw.Control(func(fd uintptr) {
		for name, opt := range map[string][2]int{
			"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
			"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
			"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
			"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
		} {
			v, err := syscall.GetsockoptInt(int(fd), opt[0], opt[1])
			if err != nil {
				t.Fatal(err)
			}
			got[name] = v
		}
	})
	want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 37, "TCP_KEEPINTVL": 11, "TCP_KEEPCNT": 4}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
