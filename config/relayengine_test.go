package config

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestRelayKeys covers relay_engine and relay_event_loops: their defaults,
// each valid value, and each refusal with its file:line.
func TestRelayKeys(t *testing.T) {
	auto := DefaultEventLoops()
	for _, tc := range []struct {
		name, toml, engine string
		loops              int
		err                string
	}{
		{name: "defaults", engine: defaultRelayEngine(), loops: auto},
		{name: "goroutine", toml: "relay_engine = \"goroutine\"\n", engine: RelayGoroutine, loops: auto},
		{name: "eventloop", toml: "relay_engine = \"eventloop\"\n", engine: RelayEventLoop, loops: auto},
		{name: "io_uring", toml: "relay_engine = \"io_uring\"\n", engine: RelayIOUring, loops: auto},
		{name: "unknown engine", toml: "relay_engine = \"epoll\"\n", err: `c.toml:1: relay_engine: "epoll" (goroutine, eventloop or io_uring)`},
		{name: "engine not a string", toml: "relay_engine = 1\n", err: `c.toml:1: relay_engine:`},
		{name: "zero loops is the default", toml: "relay_event_loops = 0\n", engine: defaultRelayEngine(), loops: auto},
		{name: "one loop", toml: "relay_event_loops = 1\n", engine: defaultRelayEngine(), loops: 1},
		{name: "the most loops", toml: "relay_event_loops = 256\n", engine: defaultRelayEngine(), loops: 256},
		{name: "too many loops", toml: "relay_event_loops = 257\n", err: "c.toml:1: relay_event_loops: 257 is outside the valid range 0..256"},
		{name: "negative loops", toml: "relay_event_loops = -1\n", err: "c.toml:1: relay_event_loops: -1 is outside the valid range 0..256"},
		{name: "loops not a number", toml: "relay_event_loops = \"2\"\n", err: "c.toml:1: relay_event_loops:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if EventLoopEngine(tc.engine) && runtime.GOOS != "linux" {
				tc.err = fmt.Sprintf("c.toml:1: relay_engine: %q is available on Linux only", tc.engine)
			}
			c, err := Parse("c.toml", []byte(tc.toml+minimal))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Engine(); got != tc.engine {
				t.Errorf("engine %q, want %q", got, tc.engine)
			}
			if got := c.EventLoops(); got != tc.loops {
				t.Errorf("loops %d, want %d", got, tc.loops)
			}
		})
	}
}

func TestEventLoopsFor(t *testing.T) {
	for procs, want := range map[int]int{1: 1, 2: 1, 4: 1, 5: 2, 8: 2, 9: 3, 64: 16} {
		if got := eventLoopsFor(procs); got != want {
			t.Errorf("eventLoopsFor(%d) = %d, want %d", procs, got, want)
		}
	}
}
