package config

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// TestHBAWarnings loads hba's golden pg_hba.conf and checks every warning
// an operator sees for it, in order: PostgreSQL's own (an invalid
// ldapscheme) next to pgcertgate's for the same record (a method it does
// not perform), and the records pgcertgate can never receive: local ones
// only while unix_socket_directories is empty.
func TestHBAWarnings(t *testing.T) {
	data, err := os.ReadFile("../hba/testdata/valid.conf")
	if err != nil {
		t.Fatal(err)
	}
	m := fstest.MapFS{"etc/pg/pg_hba.conf": {Data: data}}
	conf, err := hba.Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
	if err != nil {
		t.Fatal(err)
	}
	warnings := func(sockets bool) string {
		var got []string
		for _, w := range hbaWarnings(conf, sockets) {
			got = append(got, w.Error())
		}
		return strings.Join(got, "\n")
	}
	local := `/etc/pg/pg_hba.conf:6: connection type "local" never matches: unix_socket_directories is empty, so pgcertgate has no Unix-domain socket
/etc/pg/pg_hba.conf:7: connection type "local" never matches: unix_socket_directories is empty, so pgcertgate has no Unix-domain socket
`
	want := `/etc/pg/pg_hba.conf:11: connection type "hostgssenc" never matches: pgcertgate does not support GSSAPI encryption
/etc/pg/pg_hba.conf:12: authentication method "md5" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:52: authentication method "scram-sha-256" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:53: authentication method "password" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:54: authentication method "ident" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:55: authentication method "sspi" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:56: authentication method "gss" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:57: authentication method "pam" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:58: authentication method "bsd" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:59: authentication method "ldap" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:60: authentication method "ldap" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:61: authentication method "ldap" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:62: invalid ldapscheme value: "foo"
/etc/pg/pg_hba.conf:62: authentication method "ldap" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:63: authentication method "radius" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:64: authentication method "oauth" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:65: authentication method "oauth" is not performed by pgcertgate; connections matching this line will be refused
/etc/pg/pg_hba.conf:71: authentication method "scram-sha-256" is not performed by pgcertgate; connections matching this line will be refused`
	if g := warnings(false); g != local+want {
		t.Errorf("warnings without sockets:\n%s\nwant:\n%s", g, local+want)
	}
	// With a socket, local trust and local peer (ident on a local line)
	// are lines like any other.
	if g := warnings(true); g != want {
		t.Errorf("warnings with a socket:\n%s\nwant:\n%s", g, want)
	}
}
