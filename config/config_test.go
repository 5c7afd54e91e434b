package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
[backend]
dsn = "host=/var/run/postgresql port=5432"
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse("/etc/pgcertgate/pgcertgate.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddresses != "127.0.0.1" || c.Port != 6432 || c.MaxConnections != 1000 || c.MaxStartupConnections != 2000 ||
		c.AuthenticationTimeout.Duration != time.Minute || c.Backend.ConnectTimeout.Duration != 10*time.Second ||
		c.ShutdownTimeout.Duration != 30*time.Second || c.SSLMinProtocolVersion != "TLSv1.2" {
		t.Fatalf("defaults: %+v", c)
	}
	// Relative paths resolve against the configuration file's directory.
	if c.HBAFile != "/etc/pgcertgate/pg_hba.conf" || c.SSLKeyFile != "/etc/pgcertgate/server.key" {
		t.Fatalf("paths: %q %q", c.HBAFile, c.SSLKeyFile)
	}
	if c.IdentFile != "" || c.SSLCAFile != "" {
		t.Fatalf("unset files must stay empty: %q %q", c.IdentFile, c.SSLCAFile)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, extra, want string }{
		{"unknown key", "bogus = 1\n", `c.toml:7: backend.bogus: unrecognized configuration parameter`},
		{"bad duration", "connect_timeout = \"soon\"\n", `c.toml:7: backend.connect_timeout: time: invalid duration "soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(minimal+tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, top, want string }{
		{"unknown top-level key", "listen_address = \"*\"\n", `c.toml:1: listen_address: unrecognized configuration parameter`},
		{"port range", "port = 70000\n", `c.toml:1: port: 70000 is outside the valid range 1..65535`},
		{"tls version", "ssl_min_protocol_version = \"TLSv1.1\"\n", `c.toml:1: ssl_min_protocol_version: "TLSv1.1" (TLSv1.2 or TLSv1.3)`},
		{"auth timeout too long", "authentication_timeout = \"11m\"\n", `c.toml:1: authentication_timeout: 11m0s is outside the valid range 1s..600s`},
		{"crl without ca", "ssl_crl_file = \"x.crl\"\n", "c.toml:1: ssl_crl_file: CRLs are set but ssl_ca_file is empty"},
		{"log format", "log_format = \"xml\"\n", `c.toml:1: log_format: "xml" (text or json)`},
		{"toml syntax names the line", "port = \n", "c.toml:1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tc.top+minimal))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestListenAddrs(t *testing.T) {
	c := Defaults()
	c.ListenAddresses = "127.0.0.1, ::1,*"
	got := strings.Join(c.ListenAddrs(), " ")
	if got != "127.0.0.1:6432 [::1]:6432 :6432" {
		t.Fatalf("got %q", got)
	}
}

func TestParseBackendDSN(t *testing.T) {
	for dsn, bad := range map[string]bool{
		"host=/tmp port=5432 sslmode=disable":        false,
		"postgres://localhost:5433/?sslmode=require": false,
		"host=/tmp user=postgres":                    true,
		"host=/tmp dbname=x":                         true,
		"host=/tmp options='-c x=y'":                 true,
		"host=/tmp application_name=x":               true,
		"postgres://bob@localhost/db":                true,
	} {
		_, err := ParseBackendDSN(dsn)
		if (err != nil) != bad {
			t.Errorf("ParseBackendDSN(%q) = %v, want error %v", dsn, err, bad)
		}
	}
}

func TestKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "server.key")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkKeyFilePermissions(key); err != nil {
		t.Fatalf("0600: %v", err)
	}
	os.Chmod(key, 0o644)
	if err := checkKeyFilePermissions(key); err == nil || !strings.Contains(err.Error(), "has group or world access") {
		t.Fatalf("0644: %v", err)
	}
	if err := checkKeyFilePermissions(filepath.Join(dir, "missing.key")); err == nil {
		t.Fatal("missing key accepted")
	}
	if err := checkKeyFilePermissions(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
}
