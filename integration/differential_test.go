package integration

import (
	"context"
	"testing"
	"time"
)

// The differential test gives PostgreSQL and pgcertgate the same
// pg_hba.conf, pg_ident.conf, CA, CRL and server certificate, makes the
// same connection attempt against each, and requires the same outcome:
// the same role on success, the same severity, SQLSTATE and message on
// failure, and a TLS-level failure where PostgreSQL fails the handshake.

const diffHBA = `# TYPE   DATABASE   USER  ADDRESS       METHOD
hostssl  certdb     all   127.0.0.1/32  cert
hostssl  mapdb      all   127.0.0.1/32  cert map=m
hostssl  dndb       all   127.0.0.1/32  cert clientname=DN map=dn
hostssl  trustfull  all   127.0.0.1/32  trust clientcert=verify-full
hostssl  trustca    all   127.0.0.1/32  trust clientcert=verify-ca
hostssl  trustdb    all   127.0.0.1/32  trust
hostssl  rejectdb   all   127.0.0.1/32  reject
hostnossl plaindb   all   127.0.0.1/32  trust
hostssl  all        all   127.0.0.1/32  cert
`

const diffIdent = `# MAP  SYSTEM-NAME                                  PG-USER
m      alice                                        alice
m      /^(.*)@example\.com$                         \1
m      bob                                          alice
dn     "CN=alice,OU=Engineering+OU=Testing,O=PGDG"  alice
dn     "/^CN=bob(,|$)"                              bob
`

var diffSetup = []string{
	"CREATE ROLE alice LOGIN", "CREATE ROLE bob LOGIN", "CREATE ROLE carol LOGIN",
	"CREATE DATABASE certdb", "CREATE DATABASE mapdb", "CREATE DATABASE dndb",
	"CREATE DATABASE trustfull", "CREATE DATABASE trustca", "CREATE DATABASE trustdb",
	"CREATE DATABASE rejectdb", "CREATE DATABASE plaindb",
}

type diffCase struct {
	name string
	conn conn
	// want is the expected outcome's String(), checked against
	// PostgreSQL too, so a case documents what PostgreSQL does.
	want string
}

var diffCases = []diffCase{
	{"cert ok", conn{user: "alice", database: "certdb", cert: "alice"}, "ok as alice"},
	{"cert wrong user", conn{user: "bob", database: "certdb", cert: "alice"}, `FATAL 28000 certificate authentication failed for user "bob"`},
	{"cert without certificate", conn{user: "alice", database: "certdb"}, "FATAL 28000 connection requires a valid client certificate"},
	{"plaintext on hostssl", conn{user: "alice", database: "certdb", sslmode: "disable"}, `FATAL 28000 no pg_hba.conf entry for host "127.0.0.1", user "alice", database "certdb", no encryption`},
	{"plaintext on hostnossl", conn{user: "alice", database: "plaindb", sslmode: "disable"}, "ok as alice"},
	{"SSL on hostnossl", conn{user: "alice", database: "plaindb", cert: "alice"}, "ok as alice"}, // falls through to the last line
	{"expired certificate", conn{user: "alice", database: "certdb", cert: "expired"}, "TLS failure"},
	{"not yet valid certificate", conn{user: "alice", database: "certdb", cert: "notyet"}, "TLS failure"},
	{"revoked certificate", conn{user: "alice", database: "certdb", cert: "revoked"}, "TLS failure"},
	// Go's TLS client sends a certificate only when its issuer is in the
	// server's list of acceptable CAs, which both servers send.
	{"unknown CA (pgx withholds the certificate)", conn{user: "alice", database: "certdb", cert: "wrongca"}, "FATAL 28000 connection requires a valid client certificate"},
	{"serverAuth-only EKU", conn{user: "alice", database: "certdb", cert: "serverauth"}, "TLS failure"},
	{"intermediate sent by client", conn{user: "alice", database: "certdb", cert: "inter-alice"}, "ok as alice"},
	{"regex map with \\1", conn{user: "carol", database: "mapdb", cert: "carol-example"}, "ok as carol"},
	{"regex map, other user", conn{user: "alice", database: "mapdb", cert: "carol-example"}, `FATAL 28000 certificate authentication failed for user "alice"`},
	{"literal map", conn{user: "alice", database: "mapdb", cert: "bob"}, "ok as alice"},
	{"literal map, no line", conn{user: "bob", database: "mapdb", cert: "alice"}, `FATAL 28000 certificate authentication failed for user "bob"`},
	{"map for own name", conn{user: "alice", database: "mapdb", cert: "alice"}, "ok as alice"},
	{"clientname=DN literal", conn{user: "alice", database: "dndb", cert: "alice-dn"}, "ok as alice"},
	{"clientname=DN mismatch", conn{user: "alice", database: "dndb", cert: "alice"}, `FATAL 28000 certificate authentication failed for user "alice"`},
	{"clientname=DN regex", conn{user: "bob", database: "dndb", cert: "bob"}, "ok as bob"},
	{"trust verify-full ok", conn{user: "alice", database: "trustfull", cert: "alice"}, "ok as alice"},
	{"trust verify-full wrong user", conn{user: "alice", database: "trustfull", cert: "bob"}, `FATAL 28000 "trust" authentication failed for user "alice"`},
	{"trust verify-full no cert", conn{user: "alice", database: "trustfull"}, "FATAL 28000 connection requires a valid client certificate"},
	{"trust verify-ca any name", conn{user: "alice", database: "trustca", cert: "bob"}, "ok as alice"},
	{"trust verify-ca no cert", conn{user: "alice", database: "trustca"}, "FATAL 28000 connection requires a valid client certificate"},
	{"trust without cert", conn{user: "bob", database: "trustdb", sslmode: "require"}, "ok as bob"},
	{"reject line", conn{user: "alice", database: "rejectdb", cert: "alice"}, `FATAL 28000 pg_hba.conf rejects connection for host "127.0.0.1", user "alice", database "rejectdb", SSL encryption`},
	{"unknown database", conn{user: "alice", database: "nosuchdb", cert: "alice"}, `FATAL 3D000 database "nosuchdb" does not exist`},
	{"unknown role", conn{user: "dave", database: "certdb", cert: "dave"}, `FATAL 28000 role "dave" does not exist`},
	{"database named like the user", conn{user: "alice", database: "alice", cert: "alice"}, `FATAL 3D000 database "alice" does not exist`},
}

func TestDifferential(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: diffHBA, ident: diffIdent})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range diffSetup {
		if err := w.cluster.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	compared := 0
	for _, tc := range diffCases {
		t.Run(tc.name, func(t *testing.T) {
			w.differ(t, tc.conn, tc.want)
			compared++
		})
	}
	t.Logf("differential: %d cases compared against PostgreSQL", compared)
}
