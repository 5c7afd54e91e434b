package integration

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/config"
)

// The pg_hba.conf matching differential: PostgreSQL 15 and pgcertgate get
// the same pg_hba.conf (and @files), the same client makes the same
// attempt against each, and both must give the expected outcome. Each
// scenario is one file, installed on both sides by a reload; the cases
// cover every keyword, address form and connection type PostgreSQL 15
// supports. A line whose method pgcertgate does not perform is the one
// documented difference: PostgreSQL asks for a password, pgcertgate
// refuses with a FATAL that names the method.

// hbaMatchCase is one connection attempt.
type hbaMatchCase struct {
	name string
	conn conn
	// src is the client's source address; "" means 127.0.0.1. Every
	// 127/8 address and the host's own addresses reach the loopback
	// listeners, which lets the tests vary the address PostgreSQL sees.
	src string
	// repl makes the session check use the replication protocol (simple
	// queries only): IDENTIFY_SYSTEM, then SHOW session_authorization.
	repl bool
	// want is the outcome both sides must show.
	want string
	// gateWant, when set, marks a by-design difference: want is then
	// PostgreSQL's outcome only and gateWant pgcertgate's.
	gateWant string
}

type hbaMatchScenario struct {
	name  string
	hba   string
	files map[string]string
	cases []hbaMatchCase
}

// hbaLongUser is a 63-byte role name (NAMEDATALEN-1): a client asking for
// a longer name is truncated to it before pg_hba.conf is consulted.
var hbaLongUser = "u" + strings.Repeat("x", 62)

var hbaMatchSetup = []string{
	"CREATE ROLE grp NOLOGIN",
	"CREATE ROLE sub NOLOGIN IN ROLE grp",
	"CREATE ROLE alice LOGIN IN ROLE grp", // direct member of grp
	"CREATE ROLE bob LOGIN IN ROLE sub",   // indirect member of grp
	"CREATE ROLE carol LOGIN",
	"CREATE ROLE boss LOGIN SUPERUSER", // superuser, member of nothing
	`CREATE ROLE "all" LOGIN`,
	`CREATE ROLE "+grp" LOGIN`,
	"CREATE ROLE dave LOGIN", "CREATE ROLE erin LOGIN",
	`CREATE ROLE "` + hbaLongUser + `" LOGIN`,
	"CREATE ROLE repl LOGIN REPLICATION", "CREATE ROLE rejuser LOGIN REPLICATION",
	"CREATE ROLE a_v6 LOGIN", "CREATE ROLE a_cidr LOGIN", "CREATE ROLE a_mask LOGIN",
	"CREATE ROLE a_ncmask LOGIN", "CREATE ROLE a_same LOGIN", "CREATE ROLE a_net LOGIN",
	"CREATE ROLE a_name LOGIN", "CREATE ROLE a_suffix LOGIN", "CREATE ROLE a_other LOGIN",
	"CREATE ROLE a_all LOGIN",
	"CREATE ROLE ct_local LOGIN", "CREATE ROLE ct_gss LOGIN", "CREATE ROLE ct_nossl LOGIN",
	"CREATE ROLE ct_ssl LOGIN", "CREATE ROLE ct_host LOGIN", "CREATE ROLE ct_nogss LOGIN",
	"CREATE ROLE scram LOGIN", "CREATE ROLE md5u LOGIN", "CREATE ROLE ldapu LOGIN",
	"CREATE DATABASE alice", "CREATE DATABASE grp", `CREATE DATABASE "all"`,
	"CREATE DATABASE db1", "CREATE DATABASE db2", "CREATE DATABASE db3",
	`CREATE DATABASE "db 4"`, "CREATE DATABASE db5",
}

// Every scenario starts with "local replication all trust": PostgreSQL's
// copy of the file gets "local all all trust" in front (the proxy's
// backend connections use the Unix socket), and a physical walsender
// needs the replication keyword. pgcertgate never matches local lines.

// hbaRej is PostgreSQL's refusal by a reject line for a TCP client.
func hbaRej(host, user, db, enc string) string {
	return `FATAL 28000 pg_hba.conf rejects connection for host "` + host + `", user "` + user + `", database "` + db + `", ` + enc
}

const (
	hbaSSL   = "SSL encryption"
	hbaPlain = "no encryption"
	hbaLo    = "127.0.0.1"
	// hbaOtherIface stands for an address of a non-loopback interface,
	// found when the test runs (for samehost/samenet beyond 127/8).
	hbaOtherIface = "other-interface"
)

var hbaMatchScenarios = []hbaMatchScenario{
	{
		name: "database and user keywords",
		hba: `local  replication all   trust
host   sameuser    all                 127.0.0.1/32  trust
host   samegroup   bob,boss            127.0.0.1/32  trust
host   samerole    alice,carol,boss    127.0.0.1/32  trust
host   "all"       carol               127.0.0.1/32  trust
host   db1         "all"               127.0.0.1/32  trust
host   db1         +grp                127.0.0.1/32  trust
host   db2         "+grp"              127.0.0.1/32  trust
host   @dbs        @users              127.0.0.1/32  trust
host   "db 4",db5  alice, bob          127.0.0.1/32  trust
host   db5         +nosuchrole         127.0.0.1/32  trust
host   db1         ` + hbaLongUser + `  127.0.0.1/32  trust
host   all         all                 127.0.0.1/32  reject
`,
		files: map[string]string{
			// @file lists: comments, commas, nesting, +role inside a file,
			// and paths relative to the including file (sub/nested reads
			// ../more_users).
			"dbs":        "db3   # the only database\n",
			"users":      "dave, +sub  # sub's members\n@sub/nested\n",
			"sub/nested": "@../more_users\n",
			"more_users": "erin\n",
		},
		cases: []hbaMatchCase{
			{name: "sameuser", conn: conn{user: "alice", database: "alice"}, want: "ok as alice"},
			{name: "sameuser, other user", conn: conn{user: "carol", database: "alice"}, want: hbaRej(hbaLo, "carol", "alice", hbaSSL)},
			{name: "samegroup, indirect member", conn: conn{user: "bob", database: "grp"}, want: "ok as bob"},
			{name: "samegroup, superuser not a member", conn: conn{user: "boss", database: "grp"}, want: hbaRej(hbaLo, "boss", "grp", hbaSSL)},
			{name: "samerole, direct member", conn: conn{user: "alice", database: "grp"}, want: "ok as alice"},
			{name: "samerole, not a member", conn: conn{user: "carol", database: "grp"}, want: hbaRej(hbaLo, "carol", "grp", hbaSSL)},
			{name: `quoted "all" database is a name`, conn: conn{user: "carol", database: "all"}, want: "ok as carol"},
			{name: `quoted "all" database, other database`, conn: conn{user: "carol", database: "postgres"}, want: hbaRej(hbaLo, "carol", "postgres", hbaSSL)},
			{name: `quoted "all" user is a name`, conn: conn{user: "all", database: "db1"}, want: "ok as all"},
			{name: "+grp, direct member", conn: conn{user: "alice", database: "db1"}, want: "ok as alice"},
			{name: "+grp, indirect member", conn: conn{user: "bob", database: "db1", sslmode: "disable"}, want: "ok as bob"},
			{name: "+grp, superuser not a member", conn: conn{user: "boss", database: "db1"}, want: hbaRej(hbaLo, "boss", "db1", hbaSSL)},
			{name: "+grp, not a member", conn: conn{user: "carol", database: "db1"}, want: hbaRej(hbaLo, "carol", "db1", hbaSSL)},
			{name: `quoted "+grp" is a role name`, conn: conn{user: "+grp", database: "db2"}, want: "ok as +grp"},
			{name: `quoted "+grp" checks no membership`, conn: conn{user: "alice", database: "db2"}, want: hbaRej(hbaLo, "alice", "db2", hbaSSL)},
			{name: "@file name", conn: conn{user: "dave", database: "db3"}, want: "ok as dave"},
			{name: "@file +role", conn: conn{user: "bob", database: "db3"}, want: "ok as bob"},
			{name: "@file nested, relative to the including file", conn: conn{user: "erin", database: "db3"}, want: "ok as erin"},
			{name: "@file, not listed", conn: conn{user: "alice", database: "db3"}, want: hbaRej(hbaLo, "alice", "db3", hbaSSL)},
			{name: "list with a space after the comma", conn: conn{user: "bob", database: "db 4"}, want: "ok as bob"},
			{name: "list, second database", conn: conn{user: "alice", database: "db5"}, want: "ok as alice"},
			{name: "list, user not listed", conn: conn{user: "carol", database: "db5"}, want: hbaRej(hbaLo, "carol", "db5", hbaSSL)},
			{name: "+role of a role that does not exist", conn: conn{user: "dave", database: "db5"}, want: hbaRej(hbaLo, "dave", "db5", hbaSSL)},
			{name: "user name truncated to 63 bytes", conn: conn{user: hbaLongUser + "zzzz", database: "db1"}, want: "ok as " + hbaLongUser},
			{name: "names are case-sensitive", conn: conn{user: "Alice", database: "db1"}, want: hbaRej(hbaLo, "Alice", "db1", hbaSSL)},
		},
	},
	{
		name: "addresses",
		hba: `local  replication all   trust
host   all  a_v6      ::1/128                    trust
host   all  a_v6      ::ffff:127.0.0.1/128       trust
host   all  a_v6      ::/0                       trust
host   all  a_v6      127.0.0.1/32               reject
host   all  a_cidr    127.0.0.1/32               trust
host   all  a_cidr    127.0.0.0/8                reject
host   all  a_mask    127.0.0.1 255.255.255.255  trust
host   all  a_mask    127.0.0.0 255.0.0.0        reject
host   all  a_ncmask  127.0.0.0 255.0.255.254    trust
host   all  a_ncmask  all                        reject
host   all  a_same    samehost                   trust
host   all  a_same    samenet                    reject
host   all  a_net     samenet                    trust
host   all  a_net     all                        reject
host   all  a_all     all                        trust
host   all  a_name    $LOOPBACK_NAME_UPPER       trust
host   all  a_name    all                        reject
host   all  a_suffix  .$LOOPBACK_NAME            trust
host   all  a_suffix  all                        reject
host   all  a_other   nosuchhost.invalid         trust
host   all  a_other   all                        reject
`,
		cases: []hbaMatchCase{
			{name: "IPv6 lines never match an IPv4 client, v4-mapped included", conn: conn{user: "a_v6"}, want: hbaRej(hbaLo, "a_v6", "postgres", hbaSSL)},
			{name: "CIDR /32", conn: conn{user: "a_cidr"}, want: "ok as a_cidr"},
			{name: "CIDR /32, other address", src: "127.0.0.2", conn: conn{user: "a_cidr"}, want: hbaRej("127.0.0.2", "a_cidr", "postgres", hbaSSL)},
			{name: "address and mask", conn: conn{user: "a_mask", sslmode: "disable"}, want: "ok as a_mask"},
			{name: "address and mask, other address", src: "127.0.0.2", conn: conn{user: "a_mask", sslmode: "disable"}, want: hbaRej("127.0.0.2", "a_mask", "postgres", hbaPlain)},
			{name: "non-contiguous mask", conn: conn{user: "a_ncmask"}, want: "ok as a_ncmask"},
			{name: "non-contiguous mask, masked bit differs", src: "127.0.0.2", conn: conn{user: "a_ncmask"}, want: hbaRej("127.0.0.2", "a_ncmask", "postgres", hbaSSL)},
			{name: "non-contiguous mask, unmasked byte differs", src: "127.9.0.1", conn: conn{user: "a_ncmask"}, want: "ok as a_ncmask"},
			{name: "samehost", conn: conn{user: "a_same"}, want: "ok as a_same"},
			{name: "samehost, another interface's address", src: hbaOtherIface, conn: conn{user: "a_same"}, want: "ok as a_same"},
			{name: "samehost, same subnet but not the host's address", src: "127.0.0.2", conn: conn{user: "a_same"}, want: hbaRej("127.0.0.2", "a_same", "postgres", hbaSSL)},
			{name: "samenet", src: "127.0.0.2", conn: conn{user: "a_net"}, want: "ok as a_net"},
			{name: "samenet, another interface's subnet", src: hbaOtherIface, conn: conn{user: "a_net"}, want: "ok as a_net"},
			{name: "all", src: "127.0.0.3", conn: conn{user: "a_all"}, want: "ok as a_all"},
			{name: "host name, compared without case", conn: conn{user: "a_name"}, want: "ok as a_name"},
			{name: "leading-dot suffix does not match the bare name", conn: conn{user: "a_suffix"}, want: hbaRej(hbaLo, "a_suffix", "postgres", hbaSSL)},
			{name: "other host name", conn: conn{user: "a_other", sslmode: "disable"}, want: hbaRej(hbaLo, "a_other", "postgres", hbaPlain)},
		},
	},
	{
		name: "connection types",
		hba: `local        replication all  trust
local        all  ct_local  trust
hostgssenc   all  ct_gss    127.0.0.1/32  trust
hostnossl    all  ct_nossl  127.0.0.1/32  trust
hostssl      all  ct_ssl    127.0.0.1/32  trust
host         all  ct_host   127.0.0.1/32  trust
hostnogssenc all  ct_nogss  127.0.0.1/32  trust
host         all  all       127.0.0.1/32  reject
`,
		cases: []hbaMatchCase{
			{name: "local never matches TCP", conn: conn{user: "ct_local"}, want: hbaRej(hbaLo, "ct_local", "postgres", hbaSSL)},
			{name: "local never matches TCP, plaintext", conn: conn{user: "ct_local", sslmode: "disable"}, want: hbaRej(hbaLo, "ct_local", "postgres", hbaPlain)},
			{name: "hostgssenc, SSL", conn: conn{user: "ct_gss"}, want: hbaRej(hbaLo, "ct_gss", "postgres", hbaSSL)},
			{name: "hostgssenc, plaintext", conn: conn{user: "ct_gss", sslmode: "disable"}, want: hbaRej(hbaLo, "ct_gss", "postgres", hbaPlain)},
			{name: "hostnossl, plaintext", conn: conn{user: "ct_nossl", sslmode: "disable"}, want: "ok as ct_nossl"},
			{name: "hostnossl, SSL", conn: conn{user: "ct_nossl"}, want: hbaRej(hbaLo, "ct_nossl", "postgres", hbaSSL)},
			{name: "hostssl, SSL", conn: conn{user: "ct_ssl"}, want: "ok as ct_ssl"},
			{name: "hostssl, plaintext", conn: conn{user: "ct_ssl", sslmode: "disable"}, want: hbaRej(hbaLo, "ct_ssl", "postgres", hbaPlain)},
			{name: "host, SSL", conn: conn{user: "ct_host"}, want: "ok as ct_host"},
			{name: "host, plaintext", conn: conn{user: "ct_host", sslmode: "disable"}, want: "ok as ct_host"},
			{name: "hostnogssenc, SSL", conn: conn{user: "ct_nogss"}, want: "ok as ct_nogss"},
			{name: "hostnogssenc, plaintext", conn: conn{user: "ct_nogss", sslmode: "disable"}, want: "ok as ct_nogss"},
		},
	},
	{
		name: "replication",
		hba: `local   replication all                    trust
host    replication repl      127.0.0.1/32 trust
host    replication rejuser   127.0.0.1/32 reject
host    repdb       repl      127.0.0.1/32 reject
host    all         all       127.0.0.1/32 trust
`,
		cases: []hbaMatchCase{
			{name: "physical, replication keyword", repl: true, conn: conn{user: "repl", extra: "replication=true"}, want: "ok as repl"},
			{name: "physical, plaintext", repl: true, conn: conn{user: "repl", sslmode: "disable", extra: "replication=true"}, want: "ok as repl"},
			{name: "physical, reject line", repl: true, conn: conn{user: "rejuser", extra: "replication=true"},
				want: `FATAL 28000 pg_hba.conf rejects replication connection for host "127.0.0.1", user "rejuser", SSL encryption`},
			{name: "physical, reject line, plaintext", repl: true, conn: conn{user: "rejuser", sslmode: "disable", extra: "replication=yes"},
				want: `FATAL 28000 pg_hba.conf rejects replication connection for host "127.0.0.1", user "rejuser", no encryption`},
			{name: "physical, all does not match", repl: true, conn: conn{user: "alice", extra: "replication=1"},
				want: `FATAL 28000 no pg_hba.conf entry for replication connection from host "127.0.0.1", user "alice", SSL encryption`},
			{name: "physical, database name ignored", repl: true, conn: conn{user: "alice", database: "repdb", extra: "replication=on"},
				want: `FATAL 28000 no pg_hba.conf entry for replication connection from host "127.0.0.1", user "alice", SSL encryption`},
			{name: "logical, matched by database name", repl: true, conn: conn{user: "repl", database: "repdb", extra: "replication=database"}, want: hbaRej(hbaLo, "repl", "repdb", hbaSSL)},
			{name: "logical, all matches", repl: true, conn: conn{user: "repl", database: "postgres", extra: "replication=database"}, want: "ok as repl"},
			{name: "logical, replication keyword does not match a database named replication", repl: true,
				conn: conn{user: "rejuser", database: "replication", extra: "replication=database"}, want: `FATAL 3D000 database "replication" does not exist`},
			{name: "replication=false is an ordinary connection", conn: conn{user: "rejuser", extra: "replication=false"}, want: "ok as rejuser"},
		},
	},
	{
		name: "methods pgcertgate does not perform",
		hba: `local  replication all  trust
host   all  scram   127.0.0.1/32  scram-sha-256
host   all  md5u    127.0.0.1/32  md5
host   all  ldapu   127.0.0.1/32  ldap ldapserver=127.0.0.1 ldapbasedn="dc=example"
host   all  all     127.0.0.1/32  trust
`,
		cases: []hbaMatchCase{
			{name: "scram-sha-256", conn: conn{user: "scram"},
				want:     `FATAL 28P01 password authentication failed for user "scram"`,
				gateWant: `FATAL 28000 authentication method "scram-sha-256" is not supported by pgcertgate for user "scram"`},
			{name: "md5", conn: conn{user: "md5u", sslmode: "disable"},
				want:     `FATAL 28P01 password authentication failed for user "md5u"`,
				gateWant: `FATAL 28000 authentication method "md5" is not supported by pgcertgate for user "md5u"`},
			{name: "ldap", conn: conn{user: "ldapu"},
				want:     `FATAL 28P01 empty password returned by client`,
				gateWant: `FATAL 28000 authentication method "ldap" is not supported by pgcertgate for user "ldapu"`},
			{name: "the next line still works", conn: conn{user: "carol"}, want: "ok as carol"},
		},
	},
}

// hbaFindOtherInterfaceAddr returns an IPv4 address of a non-loopback
// interface that can reach 127.0.0.1, or fails the test.
func hbaFindOtherInterfaceAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	t.Fatal("no non-loopback IPv4 interface address: the samehost/samenet cases need one")
	return ""
}

// hbaLoopbackName is the name 127.0.0.1 reverse-resolves to ("localhost"
// from /etc/hosts here), which the host-name lines are written with: a
// host-name line matches when the reverse lookup of the client address
// gives the name (compared without case) and the forward lookup of that
// name gives the address back (hba.c check_hostname).
func hbaLoopbackName(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, "127.0.0.1")
	if err != nil || len(names) == 0 {
		t.Fatalf("127.0.0.1 has no host name (%v): the host-name cases need one, e.g. from /etc/hosts", err)
	}
	return strings.TrimSuffix(names[0], ".")
}

// hbaInstall gives both sides the same pg_hba.conf and extra files and
// waits until both apply them: PostgreSQL reloads (it must accept the
// file) and the proxy gets a freshly loaded configuration.
func hbaInstall(t *testing.T, w *world, hbaText string, files map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, body := range files {
		if err := w.cluster.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(w.dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.cluster.WriteHBA(localTrust + hbaText); err != nil {
		t.Fatal(err)
	}
	if err := w.cluster.Reload(ctx); err != nil {
		t.Fatalf("PostgreSQL refused the file: %v", err)
	}
	w.writeFile("pg_hba.conf", hbaText)
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatalf("pgcertgate refused the file: %v", err)
	}
	w.proxy.Reload(rt)
}

// hbaAttempt is world.attempt with a chosen source address and, for
// replication connections, a check that speaks the replication protocol.
func hbaAttempt(w *world, tg target, c conn, src string, repl bool) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(w.conninfo(tg, c))
	if err != nil {
		w.t.Fatal(err)
	}
	if src != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 20 * time.Second}
		cfg.DialFunc = d.DialContext
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return classify(err)
	}
	defer pc.Close(ctx)
	if !repl {
		res := pc.ExecParams(ctx, "select current_user", nil, nil, nil, nil).Read()
		if res.Err != nil {
			return classify(res.Err)
		}
		return outcome{ok: true, user: string(res.Rows[0][0])}
	}
	// A walsender speaks only the simple protocol. IDENTIFY_SYSTEM proves
	// the session is one (an ordinary backend would call it a syntax
	// error); SHOW works in both kinds of walsender.
	if _, err := pc.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll(); err != nil {
		return classify(err)
	}
	res, err := pc.Exec(ctx, "SHOW session_authorization").ReadAll()
	if err != nil {
		return classify(err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return outcome{raw: "SHOW returned no row"}
	}
	return outcome{ok: true, user: string(res[0].Rows[0][0])}
}

func TestHBAMatchDifferential(t *testing.T) {
	otherIface := hbaFindOtherInterfaceAddr(t)
	loName := hbaLoopbackName(t)
	w := newWorld(t, newPKI(t), worldOptions{hba: "host all all 127.0.0.1/32 reject\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, q := range hbaMatchSetup {
		if err := w.cluster.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	compared, byDesign := 0, 0
	for _, sc := range hbaMatchScenarios {
		t.Run(sc.name, func(t *testing.T) {
			hbaText := strings.NewReplacer("$LOOPBACK_NAME_UPPER", strings.ToUpper(loName), "$LOOPBACK_NAME", loName).Replace(sc.hba)
			hbaInstall(t, w, hbaText, sc.files)
			for _, tc := range sc.cases {
				t.Run(tc.name, func(t *testing.T) {
					if tc.conn.sslmode == "" {
						// The cases need no certificate: encryption only.
						tc.conn.sslmode = "require"
					}
					if tc.src == hbaOtherIface {
						tc.src = otherIface
					}
					pg := hbaAttempt(w, direct, tc.conn, tc.src, tc.repl)
					gate := hbaAttempt(w, proxy, tc.conn, tc.src, tc.repl)
					if pg.String() != tc.want {
						t.Errorf("PostgreSQL: got %q, want %q (raw: %s)", pg, tc.want, pg.raw)
					}
					if tc.gateWant != "" {
						if gate.String() != tc.gateWant {
							t.Errorf("pgcertgate: got %q, want %q (raw: %s)", gate, tc.gateWant, gate.raw)
						}
						byDesign++
						return
					}
					if gate.String() != pg.String() {
						t.Errorf("pgcertgate differs from PostgreSQL:\n  postgres:   %s\n  pgcertgate: %s (raw: %s)", pg, gate, gate.raw)
					}
					compared++
				})
			}
		})
	}
	t.Logf("hba matching: %d cases equal to PostgreSQL, %d documented differences (methods pgcertgate does not perform)", compared, byDesign)
}
