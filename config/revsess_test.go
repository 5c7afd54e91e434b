package config

import (
	"strings"
	"testing"
	"time"
)

func TestRevokedSessionsKeys(t *testing.T) {
	c, err := Parse("c.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.TerminateRevokedSessions() || c.OCSPRecheckInterval() != 5*time.Minute {
		t.Fatalf("defaults: terminate %v interval %s", c.TerminateRevokedSessions(), c.OCSPRecheckInterval())
	}
	c, err = Parse("c.toml", []byte("revoked_sessions = \"terminate\"\nssl_ocsp_recheck_interval = \"30s\"\n"+minimal))
	if err != nil {
		t.Fatal(err)
	}
	if !c.TerminateRevokedSessions() || c.OCSPRecheckInterval() != 30*time.Second {
		t.Fatalf("parsed: terminate %v interval %s", c.TerminateRevokedSessions(), c.OCSPRecheckInterval())
	}
	if c, err := Parse("c.toml", []byte("revoked_sessions = \"keep\"\n"+minimal)); err != nil || c.TerminateRevokedSessions() {
		t.Fatalf("keep: %v", err)
	}
	for _, tc := range []struct{ name, top, want string }{
		{"unknown value", "revoked_sessions = \"end\"\n", `c.toml:1: revoked_sessions: "end" (keep or terminate)`},
		{"not a string", "revoked_sessions = true\n", `c.toml:1: revoked_sessions:`},
		{"interval too short", "\nssl_ocsp_recheck_interval = \"100ms\"\n", `c.toml:2: ssl_ocsp_recheck_interval: 100ms (must be between 1s and 24h0m0s)`},
		{"interval too long", "ssl_ocsp_recheck_interval = \"48h\"\n", `c.toml:1: ssl_ocsp_recheck_interval: 48h0m0s (must be between`},
		{"negative interval", "ssl_ocsp_recheck_interval = \"-1m\"\n", `ssl_ocsp_recheck_interval`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tc.top+minimal))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
