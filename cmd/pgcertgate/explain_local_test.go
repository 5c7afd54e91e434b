package main

import (
	"strings"
	"testing"
)

const explainLocalHBA = `host   all     all     127.0.0.1/32  trust
local  all     app     peer map=m
local  all     admin   peer
local  all     all     reject
`

const explainLocalIdent = `m  /^svc-(.*)$  \1
`

// TestExplainLocal: --local decides a Unix-domain socket connection, only
// local lines matching it, with --os-user as the name peer authentication
// would find; without --os-user a peer line refuses.
func TestExplainLocal(t *testing.T) {
	c := newTestConfig(t, explainLocalHBA, explainLocalIdent)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"peer through a map", []string{"--user", "app", "--local", "--os-user", "svc-app"}, 0, `connection: host=[local] user="app" database="app" no encryption replication=none
OS user: "svc-app"
pg_hba.conf:
  $DIR/pg_hba.conf:1  host   all     all     127.0.0.1/32  trust
      no:    connection type host does not match a Unix-domain socket connection
  $DIR/pg_hba.conf:2  local  all     app     peer map=m
      MATCH
matched: $DIR/pg_hba.conf:2: local  all     app     peer map=m
identity (peer): OS user "svc-app"
map "m": accepted by $DIR/pg_ident.conf:1
verdict: ACCEPT: connect to the backend as user "app", database "app"
`},
		{"peer, another OS user", []string{"--user", "admin", "--local", "--os-user", "web"}, 1, `connection: host=[local] user="admin" database="admin" no encryption replication=none
OS user: "web"
pg_hba.conf:
  $DIR/pg_hba.conf:1  host   all     all     127.0.0.1/32  trust
      no:    connection type host does not match a Unix-domain socket connection
  $DIR/pg_hba.conf:2  local  all     app     peer map=m
      no:    user "admin" not in [app]
  $DIR/pg_hba.conf:3  local  all     admin   peer
      MATCH
matched: $DIR/pg_hba.conf:3: local  all     admin   peer
identity (peer): OS user "web"
verdict: REJECT: the client gets FATAL 28000: Peer authentication failed for user "admin"
reason: peer_name_mismatch
server log: provided user name (admin) and authenticated user name (web) do not match
`},
		{"peer without --os-user", []string{"--user", "admin", "--local"}, 1, `verdict: REJECT: the client gets FATAL 28000: Peer authentication failed for user "admin"
reason: peer_no_credentials
server log: could not get peer credentials: no --os-user given
`},
		{"reject names [local]", []string{"--user", "bob", "--local", "--os-user", "bob"}, 1, `verdict: REJECT: the client gets FATAL 28000: pg_hba.conf rejects connection for host "[local]", user "bob", database "bob", no encryption
reason: hba_reject
`},
		{"TCP never matches local lines", []string{"--user", "admin", "--no-ssl"}, 0, `verdict: ACCEPT: connect to the backend as user "admin", database "admin"
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.explain(t, tc.args...)
			if code != tc.code || errOut != "" {
				t.Fatalf("exit %d (stderr %q), want %d", code, errOut, tc.code)
			}
			if !strings.HasSuffix(out, tc.want) {
				t.Errorf("output:\n%s\nwant it to end with:\n%s", out, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"--os-user without --local", []string{"--user", "admin", "--os-user", "web"}, "--os-user needs --local"},
		{"--cert with --local", []string{"--user", "admin", "--local", "--cert", "$DIR/alice.crt"}, "a Unix-domain socket connection has no TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := c.explain(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q, want 2 and %q", code, errOut, tc.want)
			}
		})
	}
}
