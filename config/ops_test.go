package config

import (
	"strings"
	"testing"
)

func TestParseOperationsKeys(t *testing.T) {
	c, err := Parse("/etc/pgcertgate/pgcertgate.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.WatchFiles || c.Admin.ListenAddress != "" {
		t.Fatalf("watch_files and admin.listen_address must default to off: %v %q", c.WatchFiles, c.Admin.ListenAddress)
	}
	c, err = Parse("c.toml", []byte("watch_files = true\n"+minimal+"[admin]\nlisten_address = \":9930\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.WatchFiles || c.Admin.ListenAddress != ":9930" {
		t.Fatalf("parsed: %v %q", c.WatchFiles, c.Admin.ListenAddress)
	}
	for _, tc := range []struct{ addr, want string }{
		{"9930", `c.toml:8: admin.listen_address: "9930" is not host:port`},
		{"localhost:http", `"localhost:http": port "http" is outside the valid range 0..65535`},
		{"[::1]:70000", `port "70000" is outside the valid range`},
	} {
		_, err := Parse("c.toml", []byte(minimal+"[admin]\nlisten_address = \""+tc.addr+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("listen_address %q: got %v, want %q", tc.addr, err, tc.want)
		}
	}
	if _, err := Parse("c.toml", []byte(minimal+"[admin]\nlisten_addresses = \":9930\"\n")); err == nil ||
		!strings.Contains(err.Error(), `c.toml:8: admin.listen_addresses: unrecognized configuration parameter`) {
		t.Errorf("unknown admin key: %v", err)
	}
}
