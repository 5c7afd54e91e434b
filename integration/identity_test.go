package integration

import (
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// Identity parity, so that files written for PostgreSQL grant the same
// roles here: pg_ident.conf maps and certificate names as PostgreSQL sees
// them. An identCase is differential: the same files go to
// PostgreSQL directly and to pgcertgate, the same client connects to both,
// and the outcomes must be equal (and equal to want, so that each case also
// documents what PostgreSQL does). Where PostgreSQL writes a server-log
// line that explains a failure, the same text must appear in pgcertgate's
// log. The files identity_*_test.go hold the rest: odd DNs, TLS failures
// seen by psql, CRLs, chains, session resumption, and the SAN extensions,
// which only pgcertgate has.

// identCase is one differential connection attempt.
type identCase struct {
	name string
	conn conn
	want string
	// logs must appear, verbatim, in PostgreSQL's server log and in
	// pgcertgate's log after the attempt.
	logs []string
}

// identRun runs cases against both sides of w and returns how many were
// compared.
func identRun(t *testing.T, w *world, cases []identCase) int {
	t.Helper()
	n := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.differ(t, tc.conn, tc.want)
			for _, want := range tc.logs {
				identWaitLog(t, w, want)
			}
			n++
		})
	}
	return n
}

// identWaitLog waits until want appears in PostgreSQL's log and in
// pgcertgate's. Both are written around the moment the client gets its
// error (pgcertgate logs the attempt after replying), so this polls with a
// deadline rather than reading once.
func identWaitLog(t *testing.T, w *world, want string) {
	t.Helper()
	// slog's text handler quotes values with strconv.Quote.
	quoted := strconv.Quote(want)
	quoted = quoted[1 : len(quoted)-1]
	pgLog := func() string {
		s, err := w.cluster.Log()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		inPG := strings.Contains(pgLog(), want)
		inGate := strings.Contains(w.logBuf.String(), quoted)
		if inPG && inGate {
			return
		}
		if time.Now().After(deadline) {
			if !inPG {
				t.Errorf("PostgreSQL's log lacks %q; tail:\n%s", want, identTail(pgLog(), 15))
			}
			if !inGate {
				t.Errorf("pgcertgate's log lacks %q; tail:\n%s", quoted, identTail(w.logBuf.String(), 5))
			}
			return
		}
		// Polling the two logs for a line both servers write after
		// replying; each round re-reads them.
		time.Sleep(10 * time.Millisecond)
	}
}

func identTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// identSQLIdent quotes an SQL identifier.
func identSQLIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// identSetup creates roles and databases on the cluster.
func identSetup(t *testing.T, w *world, roles, databases []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range roles {
		if err := w.cluster.Exec(ctx, "CREATE ROLE "+identSQLIdent(r)+" LOGIN"); err != nil {
			t.Fatalf("creating role %q: %v", r, err)
		}
	}
	for _, d := range databases {
		if err := w.cluster.Exec(ctx, "CREATE DATABASE "+identSQLIdent(d)); err != nil {
			t.Fatalf("creating database %q: %v", d, err)
		}
	}
}

// The maps of TestIdentMaps. PostgreSQL 15 is the reference, so the
// database-user field uses only what 15 knows (no all, +group or /regex:
// those are 16+, see TestIdentMapsPG16Syntax).
const identMapHBA = `# TYPE  DATABASE   USER  ADDRESS       METHOD
hostssl  certdb     all   127.0.0.1/32  cert
hostssl  litdb      all   127.0.0.1/32  cert map=lit
hostssl  redb       all   127.0.0.1/32  cert map=re
hostssl  subdb      all   127.0.0.1/32  cert map=sub
hostssl  nogroupdb  all   127.0.0.1/32  cert map=nogroup
hostssl  optdb      all   127.0.0.1/32  cert map=opt
hostssl  quotedb    all   127.0.0.1/32  cert map=quoted
hostssl  casedb     all   127.0.0.1/32  cert map=case
hostssl  icasedb    all   127.0.0.1/32  cert map=icase
hostssl  undefdb    all   127.0.0.1/32  cert map=undefined
hostssl  fulldb     all   127.0.0.1/32  cert clientcert=verify-full map=lit
hostssl  trustfull  all   127.0.0.1/32  trust clientcert=verify-full
hostssl  trustdn    all   127.0.0.1/32  trust clientcert=verify-full clientname=DN
hostssl  trustca    all   127.0.0.1/32  trust clientcert=verify-ca
`

const identMapIdent = `# MAP   SYSTEM-NAME              PG-USER
lit      alice                    alice
lit      bob                      alice
# Unanchored: any name containing "li".
re       /li                      bob
re       /^dave$                  carol
sub      /^(.*)@example\.com$     \1
# Only the first \1 is replaced: alice becomes the role al\1.
sub      /^(al)ice$               \1\1
sub      /^(b)(o)b$               \1ob
nogroup  /^alice$                 \1x
# Never reached for alice: the line above stops the scan.
nogroup  alice                    alice
nogroup  bob                      bob
# Group 1 does not take part in the match: the same error.
opt      /^(x)?alice$             alice\1
opt      alice                    alice
# Quoted forms: a quoted /regex is still a regex; a quoted \1 is still
# substituted; quoting lets a regex hold a comma.
quoted   "alice"                  "bob"
quoted   "/^bo"                   "carol"
quoted   "/^(car)ol@"             "\1ol"
quoted   "/^da{1,2}ve$"           "alice"
# Names are case-sensitive.
case     Alice                    alice
case     /^ALICE$                 alice
case     bob                      Alice
# ARE embedded options: (?i) makes the regex case-insensitive.
icase    /(?i)^ALICE$             alice
`

func TestIdentMaps(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: identMapHBA, ident: identMapIdent})
	identSetup(t, w, []string{"alice", "bob", "carol", "Alice", `al\1`, "alal", "dave"},
		[]string{"certdb", "litdb", "redb", "subdb", "nogroupdb", "optdb", "quotedb", "casedb", "icasedb",
			"undefdb", "fulldb", "trustfull", "trustdn", "trustca"})
	certFailed := func(u string) string { return `FATAL 28000 certificate authentication failed for user "` + u + `"` }
	trustFailed := func(u string) string { return `FATAL 28000 "trust" authentication failed for user "` + u + `"` }
	const ok = "ok as "
	cases := []identCase{
		// cert without a map: the CN must equal the user, case-sensitively.
		{"cert, CN equals user", conn{user: "alice", database: "certdb", cert: "alice"}, ok + "alice", nil},
		{"cert, CN differs", conn{user: "bob", database: "certdb", cert: "alice"}, certFailed("bob"),
			[]string{`provided user name (bob) and authenticated user name (alice) do not match`}},
		{"cert, CN differs in case", conn{user: "Alice", database: "certdb", cert: "alice"}, certFailed("Alice"),
			[]string{`provided user name (Alice) and authenticated user name (alice) do not match`}},

		// Literal maps.
		{"literal, own name", conn{user: "alice", database: "litdb", cert: "alice"}, ok + "alice", nil},
		{"literal, other name", conn{user: "alice", database: "litdb", cert: "bob"}, ok + "alice", nil},
		{"literal, no line", conn{user: "bob", database: "litdb", cert: "bob"}, certFailed("bob"),
			[]string{`no match in usermap "lit" for user "bob" authenticated as "bob"`}},
		{"literal, unknown certificate name", conn{user: "alice", database: "litdb", cert: "carol-example"}, certFailed("alice"),
			[]string{`no match in usermap "lit" for user "alice" authenticated as "carol@example.com"`}},

		// Regex maps.
		{"regex is unanchored", conn{user: "bob", database: "redb", cert: "alice"}, ok + "bob", nil},
		{"regex, second line", conn{user: "carol", database: "redb", cert: "dave"}, ok + "carol", nil},
		{"regex, no line", conn{user: "bob", database: "redb", cert: "bob"}, certFailed("bob"),
			[]string{`no match in usermap "re" for user "bob" authenticated as "bob"`}},

		// \1.
		{`\1 from the e-mail local part`, conn{user: "carol", database: "subdb", cert: "carol-example"}, ok + "carol", nil},
		{`\1, other user`, conn{user: "alice", database: "subdb", cert: "carol-example"}, certFailed("alice"),
			[]string{`no match in usermap "sub" for user "alice" authenticated as "carol@example.com"`}},
		{`only the first \1 is replaced`, conn{user: `al\1`, database: "subdb", cert: "alice"}, ok + `al\1`, nil},
		{`the second \1 stays literal`, conn{user: "alal", database: "subdb", cert: "alice"}, certFailed("alal"), nil},
		{`\1 is group 1 only`, conn{user: "bob", database: "subdb", cert: "bob"}, ok + "bob", nil},
		{`\1 without a group stops the scan`, conn{user: "alice", database: "nogroupdb", cert: "alice"}, certFailed("alice"),
			[]string{`regular expression "^alice$" has no subexpressions as requested by backreference in "\1x"`}},
		{`a line after the bad \1 still serves others`, conn{user: "bob", database: "nogroupdb", cert: "bob"}, ok + "bob", nil},
		{`\1 with a group that did not match`, conn{user: "alice", database: "optdb", cert: "alice"}, certFailed("alice"),
			[]string{`regular expression "^(x)?alice$" has no subexpressions as requested by backreference in "alice\1"`}},

		// Quoted forms.
		{"quoted literals", conn{user: "bob", database: "quotedb", cert: "alice"}, ok + "bob", nil},
		{"quoted literal does not match another user", conn{user: "alice", database: "quotedb", cert: "alice"}, certFailed("alice"), nil},
		{"quoted /regex is a regex", conn{user: "carol", database: "quotedb", cert: "bob"}, ok + "carol", nil},
		{`quoted \1 is substituted`, conn{user: "carol", database: "quotedb", cert: "carol-example"}, ok + "carol", nil},
		{"quoted regex with a comma", conn{user: "alice", database: "quotedb", cert: "dave"}, ok + "alice", nil},

		// Case sensitivity.
		{"system name is case-sensitive", conn{user: "alice", database: "casedb", cert: "alice"}, certFailed("alice"),
			[]string{`no match in usermap "case" for user "alice" authenticated as "alice"`}},
		{"database user is case-sensitive", conn{user: "alice", database: "casedb", cert: "bob"}, certFailed("alice"), nil},
		{"mixed-case role", conn{user: "Alice", database: "casedb", cert: "bob"}, ok + "Alice", nil},
		{"(?i) regex", conn{user: "alice", database: "icasedb", cert: "alice"}, ok + "alice", nil},

		// A map no line defines.
		{"undefined map", conn{user: "alice", database: "undefdb", cert: "alice"}, certFailed("alice"),
			[]string{`no match in usermap "undefined" for user "alice" authenticated as "alice"`}},

		// clientcert=verify-full spelled out on cert, with a map.
		{"cert verify-full map", conn{user: "alice", database: "fulldb", cert: "bob"}, ok + "alice", nil},
		{"cert verify-full map, no line", conn{user: "bob", database: "fulldb", cert: "bob"}, certFailed("bob"), nil},
		{"cert verify-full, no certificate", conn{user: "alice", database: "fulldb"}, "FATAL 28000 connection requires a valid client certificate", nil},

		// trust clientcert=verify-full: no map is allowed, the name must equal the user.
		{"trust verify-full", conn{user: "alice", database: "trustfull", cert: "alice"}, ok + "alice", nil},
		{"trust verify-full, other name", conn{user: "bob", database: "trustfull", cert: "alice"}, trustFailed("bob"),
			[]string{`certificate validation (clientcert=verify-full) failed for user "bob": CN mismatch`}},
		{"trust verify-full, intermediate-issued", conn{user: "alice", database: "trustfull", cert: "inter-alice"}, ok + "alice", nil},
		{"trust verify-full DN, never equal to a plain user", conn{user: "alice", database: "trustdn", cert: "alice"}, trustFailed("alice"),
			[]string{`certificate validation (clientcert=verify-full) failed for user "alice": DN mismatch`}},

		// trust clientcert=verify-ca: any valid certificate, no name check.
		{"trust verify-ca, any name", conn{user: "carol", database: "trustca", cert: "bob"}, ok + "carol", nil},
		{"trust verify-ca, no certificate", conn{user: "carol", database: "trustca"}, "FATAL 28000 connection requires a valid client certificate", nil},
		{"trust verify-ca, revoked", conn{user: "carol", database: "trustca", cert: "revoked"}, "TLS failure", nil},
	}
	t.Logf("differential: %d cases agree with PostgreSQL", identRun(t, w, cases))
}

// The database-user field's all, +group and /regex are PostgreSQL 16
// syntax. pgcertgate implements 16's meaning; the PostgreSQL 15 used for
// the differential tests reads them as literal role names, so these cases
// assert pgcertgate's outcome and record 15's, which differs on purpose.
const identPG16HBA = `hostssl all all 127.0.0.1/32 cert map=pg16
`

const identPG16Ident = `pg16  alice                    all
pg16  bob                      +admins
pg16  dave                     "all"
pg16  dave                     "+admins"
pg16  carol@example.com        /^c.r
# No substitution in a +group: bob's group is the role lit\1, not litbob.
pg16  /^(bob)$                 +lit\1
`

func TestIdentMapsPG16Syntax(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: identPG16HBA, ident: identPG16Ident})
	identSetup(t, w, []string{"alice", "bob", "carol", "cora", "all", "+admins", "mallory"}, nil)
	w.setup(t, `CREATE ROLE admins`, `GRANT admins TO carol`, `CREATE ROLE "lit\1"`, `GRANT "lit\1" TO mallory`,
		`CREATE ROLE litbob`, `GRANT litbob TO alice`)
	certFailed := func(u string) string { return `FATAL 28000 certificate authentication failed for user "` + u + `"` }
	for _, tc := range []struct {
		name       string
		conn       conn
		gate, pg15 string
	}{
		{"all matches any user", conn{user: "bob", database: "postgres", cert: "alice"}, "ok as bob", certFailed("bob")},
		{"+group admits a member", conn{user: "carol", database: "postgres", cert: "bob"}, "ok as carol", certFailed("carol")},
		{"+group refuses a non-member", conn{user: "alice", database: "postgres", cert: "dave"}, certFailed("alice"), certFailed("alice")},
		{`quoted "all" is the role all`, conn{user: "all", database: "postgres", cert: "dave"}, "ok as all", "ok as all"},
		{`quoted "+admins" is the role +admins`, conn{user: "+admins", database: "postgres", cert: "dave"}, "ok as +admins", "ok as +admins"},
		{"quoted all is not a wildcard", conn{user: "bob", database: "postgres", cert: "dave"}, certFailed("bob"), certFailed("bob")},
		{"/regex on the database user", conn{user: "cora", database: "postgres", cert: "carol-example"}, "ok as cora", certFailed("cora")},
		{"/regex on the database user, no match", conn{user: "alice", database: "postgres", cert: "carol-example"}, certFailed("alice"), certFailed("alice")},
		{`no \1 in +group`, conn{user: "mallory", database: "postgres", cert: "bob"}, "ok as mallory", certFailed("mallory")},
		{`no \1 in +group, substituted group refused`, conn{user: "alice", database: "postgres", cert: "bob"}, certFailed("alice"), certFailed("alice")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.attempt(proxy, tc.conn); got.String() != tc.gate {
				t.Errorf("pgcertgate: got %q, want %q (raw: %s)", got, tc.gate, got.raw)
			}
			if got := w.attempt(direct, tc.conn); got.String() != tc.pg15 {
				t.Errorf("PostgreSQL %d: got %q, want %q (raw: %s)", w.cluster.MajorVersion(), got, tc.pg15, got.raw)
			}
		})
	}
}

// PostgreSQL runs pg_ident.conf regexes while no database is selected,
// in SQL_ASCII with the C collation: every byte is one character, only
// ASCII bytes are letters, and case folding is ASCII-only. A UTF-8 é is
// two characters there.
const identNonASCIIIdent = `na  /^jos.$                one
na  /^jos..$               two
na  /^jos[[:alpha:]]+$     alpha
na  /^jos[^[:ascii:]]{2}$  nonascii
na  /^jos\xc3\xa9$         hex
na  /^jos\u00e9$           uni
na  /(?i)^JOSÉ$            icase
na  /^.{6}$                six
na  /^..$                  twochars
na  /^(jos.*)$             \1
`

func TestIdentNonASCII(t *testing.T) {
	p := newPKI(t)
	for name, rdns := range map[string][]testpki.RDN{
		"jose-utf8": testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "josé")),
		// A T61String is Latin-1 to OpenSSL; its CN is the raw byte E9.
		"jose-t61": testpki.RDNs(testpki.ATV{OID: testpki.OIDCommonName, Tag: asn1.TagT61String, Value: []byte("jos\xe9")}),
		"nihon":    testpki.RDNs(testpki.UTF8(testpki.OIDCommonName, "日本")),
	} {
		der, err := testpki.RawName(rdns...)
		if err != nil {
			t.Fatal(err)
		}
		if p.clients[name], err = p.root.NewClient(pkix.Name{}, testpki.WithRawSubject(der)); err != nil {
			t.Fatal(err)
		}
	}
	w := newWorld(t, p, worldOptions{hba: "hostssl all all 127.0.0.1/32 cert map=na\n", ident: identNonASCIIIdent})
	identSetup(t, w, []string{"one", "two", "alpha", "nonascii", "hex", "uni", "icase", "six", "twochars", "josé"}, nil)
	certFailed := func(u string) string { return `FATAL 28000 certificate authentication failed for user "` + u + `"` }
	noMatch := func(u, id string) []string {
		return []string{`no match in usermap "na" for user "` + u + `" authenticated as "` + id + `"`}
	}
	cases := []identCase{
		{". is one byte, not one character", conn{user: "one", database: "postgres", cert: "jose-utf8"}, certFailed("one"), noMatch("one", "josé")},
		{"two . match the two bytes of é", conn{user: "two", database: "postgres", cert: "jose-utf8"}, "ok as two", nil},
		{"bytes >= 0x80 are not [[:alpha:]]", conn{user: "alpha", database: "postgres", cert: "jose-utf8"}, certFailed("alpha"), noMatch("alpha", "josé")},
		{"[^[:ascii:]]{2}", conn{user: "nonascii", database: "postgres", cert: "jose-utf8"}, "ok as nonascii", nil},
		{`\x escapes are bytes`, conn{user: "hex", database: "postgres", cert: "jose-utf8"}, "ok as hex", nil},
		{`\u00e9 is the byte E9, not UTF-8 é`, conn{user: "uni", database: "postgres", cert: "jose-utf8"}, certFailed("uni"), noMatch("uni", "josé")},
		{`\u00e9 matches the T61String (Latin-1) CN`, conn{user: "uni", database: "postgres", cert: "jose-t61"}, "ok as uni", nil},
		{"T61String é is one byte", conn{user: "one", database: "postgres", cert: "jose-t61"}, "ok as one", nil},
		{"(?i) folds ASCII only", conn{user: "icase", database: "postgres", cert: "jose-utf8"}, certFailed("icase"), noMatch("icase", "josé")},
		{"two CJK characters are six bytes", conn{user: "six", database: "postgres", cert: "nihon"}, "ok as six", nil},
		{"two CJK characters are not two", conn{user: "twochars", database: "postgres", cert: "nihon"}, certFailed("twochars"), noMatch("twochars", "日本")},
		{`\1 carries the UTF-8 bytes`, conn{user: "josé", database: "postgres", cert: "jose-utf8"}, "ok as josé", nil},
	}
	t.Logf("differential: %d cases agree with PostgreSQL", identRun(t, w, cases))
}
