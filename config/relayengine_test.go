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
		{name: "default", want: RelayGoroutine},
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
