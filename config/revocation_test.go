package config

import (
	"strings"
	"testing"
	"time"
)

func TestRevocationKeys(t *testing.T) {
	c, err := Parse("c.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.OCSPMode() != "off" || c.SSLCRLFetch || c.OCSPTimeout() != 3*time.Second ||
		c.OCSPCacheMaxAge() != time.Hour || c.CRLFetchMaxSize() != 10<<20 || c.SSLCRLGrace.Duration != 0 {
		t.Fatalf("defaults: mode %q fetch %v timeout %s max age %s size %d grace %s", c.OCSPMode(), c.SSLCRLFetch,
			c.OCSPTimeout(), c.OCSPCacheMaxAge(), c.CRLFetchMaxSize(), c.SSLCRLGrace.Duration)
	}
	set := `ssl_ca_file = "root.crt"
ssl_ocsp = "require"
ssl_ocsp_responder = "http://ocsp.example:8080/"
ssl_ocsp_timeout = "2s"
ssl_ocsp_cache_max_age = "10m"
ssl_crl_fetch = true
ssl_crl_fetch_max_size = 1048576
ssl_crl_grace = "1h"
`
	c, err = Parse("c.toml", []byte(set+minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.OCSPMode() != "require" || !c.SSLCRLFetch || c.OCSPTimeout() != 2*time.Second || c.OCSPCacheMaxAge() != 10*time.Minute ||
		c.CRLFetchMaxSize() != 1<<20 || c.SSLCRLGrace.Duration != time.Hour || c.SSLOCSPResponder != "http://ocsp.example:8080/" {
		t.Fatalf("parsed: %+v", c)
	}
	// With nothing to fetch, a short authentication_timeout is fine.
	if _, err := Parse("c.toml", []byte("authentication_timeout = \"2s\"\n"+minimal)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, top, want string }{
		{"mode", "ssl_ca_file = \"r\"\nssl_ocsp = \"on\"\n", `c.toml:2: ssl_ocsp: "on" (off, prefer or require)`},
		{"ocsp without ca", "ssl_ocsp = \"prefer\"\n", `c.toml:1: ssl_ocsp: "prefer" needs ssl_ca_file`},
		{"fetch without ca", "ssl_crl_fetch = true\n", `c.toml:1: ssl_crl_fetch: needs ssl_ca_file`},
		{"https responder", "ssl_ocsp_responder = \"https://ocsp.example/\"\n", `c.toml:1: ssl_ocsp_responder: "https://ocsp.example/": must be an http:// URL`},
		{"responder without host", "ssl_ocsp_responder = \"http:///x\"\n", `ssl_ocsp_responder: "http:///x": must be an http:// URL`},
		{"responder with credentials", "ssl_ocsp_responder = \"http://u:p@ocsp.example/\"\n", `must not carry credentials`},
		{"timeout beyond authentication_timeout", "ssl_ca_file = \"r\"\nssl_crl_fetch = true\nauthentication_timeout = \"5s\"\nssl_ocsp_timeout = \"5s\"\n", `c.toml:4: ssl_ocsp_timeout: 5s must be shorter than authentication_timeout (5s)`},
		{"default timeout beyond authentication_timeout", "ssl_ca_file = \"r\"\nssl_ocsp = \"prefer\"\nauthentication_timeout = \"2s\"\n", `c.toml: ssl_ocsp_timeout: 3s must be shorter`},
		{"negative size", "ssl_crl_fetch_max_size = -1\n", `c.toml:1: ssl_crl_fetch_max_size: -1 (must be 0 or more)`},
		{"negative grace", "ssl_crl_grace = \"-1h\"\n", `ssl_crl_grace`},
		{"fetch is a boolean", "ssl_crl_fetch = \"yes\"\n", `c.toml:1: ssl_crl_fetch: must be a boolean, not a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tc.top+minimal))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
