package config

import (
	"runtime"
	"strings"
	"testing"
)

func TestRelayEngineKey(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want, err string
	}{
		{name: "default", want: defaultRelayEngine()},
		{name: "goroutine", toml: "relay_engine = \"goroutine\"\n", want: RelayGoroutine},
		{name: "eventloop", toml: "relay_engine = \"eventloop\"\n", want: RelayEventLoop},
		{name: "unknown", toml: "relay_engine = \"epoll\"\n", err: `c.toml:1: relay_engine: "epoll" (goroutine or eventloop)`},
		{name: "not a string", toml: "relay_engine = 1\n", err: `c.toml:1: relay_engine:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == RelayEventLoop && runtime.GOOS != "linux" {
				tc.want, tc.err = "", `c.toml:1: relay_engine: "eventloop" is available on Linux only`
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
			if got := c.Engine(); got != tc.want {
				t.Fatalf("engine %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRelayEventLoopsKey(t *testing.T) {
	auto := max(1, (runtime.GOMAXPROCS(0)+3)/4)
	for _, tc := range []struct {
		name, toml string
		want       int
		err        string
	}{
		{name: "default", want: auto},
		{name: "zero is the default", toml: "relay_event_loops = 0\n", want: auto},
		{name: "one", toml: "relay_event_loops = 1\n", want: 1},
		{name: "the most", toml: "relay_event_loops = 256\n", want: 256},
		{name: "too many", toml: "relay_event_loops = 257\n", err: "c.toml:1: relay_event_loops: 257 is outside the valid range 0..256"},
		{name: "negative", toml: "relay_event_loops = -1\n", err: "c.toml:1: relay_event_loops: -1 is outside the valid range 0..256"},
		{name: "not a number", toml: "relay_event_loops = \"2\"\n", err: "c.toml:1: relay_event_loops:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			if got := c.EventLoops(); got != tc.want {
				t.Fatalf("loops %d, want %d", got, tc.want)
			}
		})
	}
}
