package main

import (
	"bytes"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// The operator commands check and explain, run in-process through run()
// exactly as the binary runs them. They load configuration files only: no
// PostgreSQL is needed (no line here uses role membership, so no catalog
// connection is ever opened).

// testConfig is a configuration directory: certificates from testpki, a
// pg_hba.conf, a pg_ident.conf and pgcertgate.toml.
type testConfig struct {
	dir  string
	toml string // path of pgcertgate.toml
}

const testTOML = `hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
[backend]
dsn = "host=/nonexistent port=5432"
`

// newTestConfig writes the configuration and, for each name in clients,
// client certificates "<name>.crt" (leaf plus chain) issued by the root.
// "expired" is an expired certificate for CN alice, "alice-dn" has the
// subject CN=alice,OU=Testing,O=PGDG, and "inter-alice" is issued by an
// intermediate.
func newTestConfig(t *testing.T, hbaText, identText string) *testConfig {
	t.Helper()
	dir := t.TempDir()
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "explain test root", Organization: []string{"PGDG"}})
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate(pkix.Name{CommonName: "explain test intermediate"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := root.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.WriteFiles(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")); err != nil {
		t.Fatal(err)
	}
	clients := map[string]*testpki.Leaf{}
	issue := func(name string, ca *testpki.CA, subject pkix.Name, opts ...testpki.Option) {
		l, err := ca.NewClient(subject, opts...)
		if err != nil {
			t.Fatal(err)
		}
		clients[name] = l
	}
	issue("alice", root, pkix.Name{CommonName: "alice"})
	issue("bob", root, pkix.Name{CommonName: "bob"})
	issue("alice-dn", root, pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"Testing"}, Organization: []string{"PGDG"}})
	issue("inter-alice", inter, pkix.Name{CommonName: "alice"})
	issue("expired", root, pkix.Name{CommonName: "alice"}, testpki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	for name, l := range clients {
		if err := l.WriteFiles(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"root.crt":        string(root.CertPEM),
		"pg_hba.conf":     hbaText,
		"pg_ident.conf":   identText,
		"pgcertgate.toml": testTOML,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &testConfig{dir: dir, toml: filepath.Join(dir, "pgcertgate.toml")}
}

// run runs a pgcertgate command and returns stdout, stderr and the exit
// code, with the configuration directory written as $DIR.
func (c *testConfig) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "$DIR", c.dir)
	}
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return strings.ReplaceAll(stdout.String(), c.dir, "$DIR"), strings.ReplaceAll(stderr.String(), c.dir, "$DIR"), code
}

const explainHBA = `# TYPE  DATABASE  USER   ADDRESS        METHOD
hostnossl all     all    127.0.0.1/32   reject
hostssl   certdb  all    127.0.0.1/32   cert
hostssl   mapdb   all    127.0.0.1/32   cert map=m
hostssl   dndb    all    10.0.0.0/8     cert clientname=DN map=dn
hostssl   trustdb all    127.0.0.1/32   trust clientcert=verify-full
host      scramdb all    127.0.0.1/32   scram-sha-256
host      replication repl 127.0.0.1/32 trust
host      rejectdb all   127.0.0.1/32   reject
host      all     all    192.168.0.0/16 trust
`

const explainIdent = `# MAP  SYSTEM-NAME                      PG-USER
m      bob                              alice
m      /^(.*)$                          \1_ro
dn     "CN=alice,OU=Testing,O=PGDG"     alice
`

// certDetails hides what changes from run to run in explain's
// certificate line.
var certDetails = regexp.MustCompile(`serial \d+, not after \S+`)

// fingerprints hides certificate fingerprints, which change with every
// key generated.
var fingerprints = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

func (c *testConfig) explain(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	out, errOut, code := c.run(t, append([]string{"explain", "--config", "$DIR/pgcertgate.toml"}, args...)...)
	out = fingerprints.ReplaceAllString(out, "sha256:F")
	return certDetails.ReplaceAllString(out, "serial S, not after T"), errOut, code
}

// TestExplainTranscripts checks complete explain output: every line tried
// with the reason it did not match, the matched line (file:line and raw
// text), the certificate and its identity, the map lookup, and the verdict
// with the exact message the client would get.
func TestExplainTranscripts(t *testing.T) {
	c := newTestConfig(t, explainHBA, explainIdent)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{
			name: "accepted through a map",
			args: []string{"--user", "alice", "--database", "mapdb", "--address", "127.0.0.1", "--cert", "$DIR/bob.crt"},
			code: 0,
			want: `connection: host=127.0.0.1 user="alice" database="mapdb" SSL encryption replication=none
certificate: subject "CN=bob", CN "bob", issuer "CN=explain test root,O=PGDG", serial S, not after T
  fingerprint: sha256:F
  verification: ok (chain of 2 to "CN=explain test root,O=PGDG")
pg_hba.conf:
  $DIR/pg_hba.conf:2  hostnossl all     all    127.0.0.1/32   reject
      no:    connection type hostnossl does not match an SSL connection
  $DIR/pg_hba.conf:3  hostssl   certdb  all    127.0.0.1/32   cert
      no:    database "mapdb" not in [certdb]
  $DIR/pg_hba.conf:4  hostssl   mapdb   all    127.0.0.1/32   cert map=m
      MATCH
matched: $DIR/pg_hba.conf:4: hostssl   mapdb   all    127.0.0.1/32   cert map=m
identity (clientname=CN): "bob"
map "m": accepted by $DIR/pg_ident.conf:2
verdict: ACCEPT: connect to the backend as user "alice", database "mapdb"
`,
		},
		{
			name: "refused by the map",
			args: []string{"--user", "carol", "--database", "mapdb", "--cert", "$DIR/bob.crt"},
			code: 1,
			want: `connection: host=127.0.0.1 user="carol" database="mapdb" SSL encryption replication=none
certificate: subject "CN=bob", CN "bob", issuer "CN=explain test root,O=PGDG", serial S, not after T
  fingerprint: sha256:F
  verification: ok (chain of 2 to "CN=explain test root,O=PGDG")
pg_hba.conf:
  $DIR/pg_hba.conf:2  hostnossl all     all    127.0.0.1/32   reject
      no:    connection type hostnossl does not match an SSL connection
  $DIR/pg_hba.conf:3  hostssl   certdb  all    127.0.0.1/32   cert
      no:    database "mapdb" not in [certdb]
  $DIR/pg_hba.conf:4  hostssl   mapdb   all    127.0.0.1/32   cert map=m
      MATCH
matched: $DIR/pg_hba.conf:4: hostssl   mapdb   all    127.0.0.1/32   cert map=m
identity (clientname=CN): "bob"
map "m": no match in usermap "m" for user "carol" authenticated as "bob"
verdict: REJECT: the client gets FATAL 28000: certificate authentication failed for user "carol"
reason: ident_no_match
server log: no match in usermap "m" for user "carol" authenticated as "bob"
`,
		},
		{
			name: "DN identity and a DN map",
			args: []string{"--user", "alice", "--database", "dndb", "--address", "10.0.0.5", "--cert", "$DIR/alice-dn.crt"},
			code: 0,
			want: `connection: host=10.0.0.5 user="alice" database="dndb" SSL encryption replication=none
certificate: subject "CN=alice,OU=Testing,O=PGDG", CN "alice", issuer "CN=explain test root,O=PGDG", serial S, not after T
  fingerprint: sha256:F
  verification: ok (chain of 2 to "CN=explain test root,O=PGDG")
pg_hba.conf:
  $DIR/pg_hba.conf:2  hostnossl all     all    127.0.0.1/32   reject
      no:    connection type hostnossl does not match an SSL connection
  $DIR/pg_hba.conf:3  hostssl   certdb  all    127.0.0.1/32   cert
      no:    client address 10.0.0.5 is not in 127.0.0.1/32
  $DIR/pg_hba.conf:4  hostssl   mapdb   all    127.0.0.1/32   cert map=m
      no:    client address 10.0.0.5 is not in 127.0.0.1/32
  $DIR/pg_hba.conf:5  hostssl   dndb    all    10.0.0.0/8     cert clientname=DN map=dn
      MATCH
matched: $DIR/pg_hba.conf:5: hostssl   dndb    all    10.0.0.0/8     cert clientname=DN map=dn
identity (clientname=DN): "CN=alice,OU=Testing,O=PGDG"
map "dn": accepted by $DIR/pg_ident.conf:4
verdict: ACCEPT: connect to the backend as user "alice", database "dndb"
`,
		},
		{
			name: "no line matches",
			args: []string{"--user", "carol", "--database", "nodb", "--address", "10.1.2.3"},
			code: 1,
			want: `connection: host=10.1.2.3 user="carol" database="nodb" SSL encryption replication=none
certificate: none
pg_hba.conf:
  $DIR/pg_hba.conf:2  hostnossl all     all    127.0.0.1/32   reject
      no:    connection type hostnossl does not match an SSL connection
  $DIR/pg_hba.conf:3  hostssl   certdb  all    127.0.0.1/32   cert
      no:    client address 10.1.2.3 is not in 127.0.0.1/32
  $DIR/pg_hba.conf:4  hostssl   mapdb   all    127.0.0.1/32   cert map=m
      no:    client address 10.1.2.3 is not in 127.0.0.1/32
  $DIR/pg_hba.conf:5  hostssl   dndb    all    10.0.0.0/8     cert clientname=DN map=dn
      no:    database "nodb" not in [dndb]
  $DIR/pg_hba.conf:6  hostssl   trustdb all    127.0.0.1/32   trust clientcert=verify-full
      no:    client address 10.1.2.3 is not in 127.0.0.1/32
  $DIR/pg_hba.conf:7  host      scramdb all    127.0.0.1/32   scram-sha-256
      no:    client address 10.1.2.3 is not in 127.0.0.1/32
  $DIR/pg_hba.conf:8  host      replication repl 127.0.0.1/32 trust
      no:    client address 10.1.2.3 is not in 127.0.0.1/32
  $DIR/pg_hba.conf:9  host      rejectdb all   127.0.0.1/32   reject
      no:    client address 10.1.2.3 is not in 127.0.0.1/32
  $DIR/pg_hba.conf:10  host      all     all    192.168.0.0/16 trust
      no:    client address 10.1.2.3 is not in 192.168.0.0/16
matched: no line (an implicit reject, as in PostgreSQL)
verdict: REJECT: the client gets FATAL 28000: no pg_hba.conf entry for host "10.1.2.3", user "carol", database "nodb", SSL encryption
reason: no_hba_match
`,
		},
		{
			name: "physical replication matches only the replication keyword",
			args: []string{"--user", "repl", "--replication", "--database", "ignored"},
			code: 0,
			want: `connection: host=127.0.0.1 user="repl" database="" SSL encryption replication=physical
certificate: none
pg_hba.conf:
  $DIR/pg_hba.conf:2  hostnossl all     all    127.0.0.1/32   reject
      no:    connection type hostnossl does not match an SSL connection
  $DIR/pg_hba.conf:3  hostssl   certdb  all    127.0.0.1/32   cert
      no:    a physical replication connection matches only the replication keyword, not [certdb]
  $DIR/pg_hba.conf:4  hostssl   mapdb   all    127.0.0.1/32   cert map=m
      no:    a physical replication connection matches only the replication keyword, not [mapdb]
  $DIR/pg_hba.conf:5  hostssl   dndb    all    10.0.0.0/8     cert clientname=DN map=dn
      no:    client address 127.0.0.1 is not in 10.0.0.0/8
  $DIR/pg_hba.conf:6  hostssl   trustdb all    127.0.0.1/32   trust clientcert=verify-full
      no:    a physical replication connection matches only the replication keyword, not [trustdb]
  $DIR/pg_hba.conf:7  host      scramdb all    127.0.0.1/32   scram-sha-256
      no:    a physical replication connection matches only the replication keyword, not [scramdb]
  $DIR/pg_hba.conf:8  host      replication repl 127.0.0.1/32 trust
      MATCH
matched: $DIR/pg_hba.conf:8: host      replication repl 127.0.0.1/32 trust
verdict: ACCEPT: connect to the backend as user "repl", database ""
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.explain(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr: %s)", code, tc.code, errOut)
			}
			if out != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tc.want)
			}
			if errOut != "" {
				t.Errorf("stderr: %s", errOut)
			}
		})
	}
}

// TestExplainVerdicts checks the verdict (and the lines leading to it) for
// every way a connection can end.
func TestExplainVerdicts(t *testing.T) {
	c := newTestConfig(t, explainHBA, explainIdent)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // lines the output must contain, in order
	}{
		{"cert line without a certificate", []string{"--user", "alice", "--database", "certdb"}, 1, []string{
			"certificate: none",
			"matched: $DIR/pg_hba.conf:3: hostssl   certdb  all    127.0.0.1/32   cert",
			"verdict: REJECT: the client gets FATAL 28000: connection requires a valid client certificate",
		}},
		{"cert name differs from the user", []string{"--user", "bob", "--database", "certdb", "--cert", "$DIR/alice.crt"}, 1, []string{
			`identity (clientname=CN): "alice"`,
			`verdict: REJECT: the client gets FATAL 28000: certificate authentication failed for user "bob"`,
			"server log: provided user name (bob) and authenticated user name (alice) do not match",
		}},
		{"cert name equals the user", []string{"--user", "alice", "--database", "certdb", "--cert", "$DIR/alice.crt"}, 0, []string{
			`identity (clientname=CN): "alice"`,
			`verdict: ACCEPT: connect to the backend as user "alice", database "certdb"`,
		}},
		{"trust clientcert=verify-full, other name, client sends the intermediate", []string{"--user", "bob", "--database", "trustdb", "--cert", "$DIR/inter-alice.crt"}, 1, []string{
			`certificate: subject "CN=alice", CN "alice", issuer "CN=explain test intermediate", serial S, not after T`,
			`  verification: ok (chain of 3 to "CN=explain test root,O=PGDG")`,
			`verdict: REJECT: the client gets FATAL 28000: "trust" authentication failed for user "bob"`,
			`server log: provided user name (bob) and authenticated user name (alice) do not match; certificate validation (clientcert=verify-full) failed for user "bob": CN mismatch`,
		}},
		{"method pgcertgate does not perform", []string{"--user", "bob", "--database", "scramdb"}, 1, []string{
			"matched: $DIR/pg_hba.conf:7: host      scramdb all    127.0.0.1/32   scram-sha-256",
			`verdict: REJECT: the client gets FATAL 28000: authentication method "scram-sha-256" is not supported by pgcertgate for user "bob"`,
			"reason: method_not_supported",
		}},
		{"reject line", []string{"--user", "bob", "--database", "rejectdb", "--no-ssl"}, 1, []string{
			"connection: host=127.0.0.1 user=\"bob\" database=\"rejectdb\" no encryption replication=none",
			"matched: $DIR/pg_hba.conf:2: hostnossl all     all    127.0.0.1/32   reject",
			`verdict: REJECT: the client gets FATAL 28000: pg_hba.conf rejects connection for host "127.0.0.1", user "bob", database "rejectdb", no encryption`,
		}},
		{"reject line, SSL", []string{"--user", "bob", "--database", "rejectdb", "--ssl"}, 1, []string{
			`verdict: REJECT: the client gets FATAL 28000: pg_hba.conf rejects connection for host "127.0.0.1", user "bob", database "rejectdb", SSL encryption`,
		}},
		{"physical replication, no replication line for the user", []string{"--user", "alice", "--replication"}, 1, []string{
			`  $DIR/pg_hba.conf:8  host      replication repl 127.0.0.1/32 trust`,
			`      no:    user "alice" not in [repl]`,
			"matched: no line (an implicit reject, as in PostgreSQL)",
			`verdict: REJECT: the client gets FATAL 28000: no pg_hba.conf entry for replication connection from host "127.0.0.1", user "alice", SSL encryption`,
		}},
		{"logical replication matches by database name", []string{"--user", "repl", "--replication=database", "--database", "replication"}, 1, []string{
			"connection: host=127.0.0.1 user=\"repl\" database=\"replication\" SSL encryption replication=logical",
			`      no:    database "replication" not in [replication] (the replication keyword matches only physical replication connections)`,
			`verdict: REJECT: the client gets FATAL 28000: no pg_hba.conf entry for host "127.0.0.1", user "repl", database "replication", SSL encryption`,
		}},
		{"database defaults to the user name", []string{"--user", "rejectdb", "--no-ssl"}, 1, []string{
			"connection: host=127.0.0.1 user=\"rejectdb\" database=\"rejectdb\" no encryption replication=none",
		}},
		{"IPv6 client, IPv4 lines", []string{"--user", "alice", "--database", "certdb", "--address", "::1", "--cert", "$DIR/alice.crt"}, 1, []string{
			"      no:    client address ::1 is not in 127.0.0.1/32 (address families differ)",
			`verdict: REJECT: the client gets FATAL 28000: no pg_hba.conf entry for host "::1", user "alice", database "certdb", SSL encryption`,
		}},
		{"expired certificate", []string{"--user", "alice", "--database", "certdb", "--cert", "$DIR/expired.crt"}, 1, []string{
			"  verification FAILED: certificate verify failed: certificate has expired (depth 0)",
			"verdict: REJECT during the TLS handshake (the client sees a TLS alert, whatever pg_hba.conf says)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.explain(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr: %s)", code, tc.code, errOut)
			}
			lines := strings.Split(out, "\n")
			i := 0
			for _, want := range tc.want {
				for i < len(lines) && lines[i] != want {
					i++
				}
				if i == len(lines) {
					t.Errorf("output lacks (in order) %q:\n%s", want, out)
					break
				}
			}
			if strings.Count(out, "verdict: ") != 1 {
				t.Errorf("want exactly one verdict:\n%s", out)
			}
		})
	}
}

// TestExplainUsage checks the exit codes of explain for bad invocations:
// 2 for usage errors, 1 for a configuration that does not load.
func TestExplainUsage(t *testing.T) {
	c := newTestConfig(t, explainHBA, explainIdent)
	cfg := "$DIR/pgcertgate.toml"
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no command", nil, 2, "Usage:"},
		{"unknown command", []string{"explian"}, 2, `unknown command "explian"`},
		{"no --config", []string{"explain", "--user", "alice"}, 2, "--config FILE and --user U are required"},
		{"no --user", []string{"explain", "--config", cfg}, 2, "--config FILE and --user U are required"},
		{"unknown flag", []string{"explain", "--config", cfg, "--user", "alice", "--sslmode", "x"}, 2, "flag provided but not defined: -sslmode"},
		{"stray argument", []string{"explain", "--config", cfg, "--user", "alice", "--replication", "database"}, 2, `unexpected argument "database"`},
		{"bad address", []string{"explain", "--config", cfg, "--user", "alice", "--address", "10.0.0.300"}, 2, "--address"},
		{"bad replication value", []string{"explain", "--config", cfg, "--user", "alice", "--replication=maybe"}, 2, `invalid replication value "maybe"`},
		{"certificate without SSL", []string{"explain", "--config", cfg, "--user", "alice", "--no-ssl", "--cert", "$DIR/alice.crt"}, 2, "--cert needs an SSL connection"},
		{"missing certificate file", []string{"explain", "--config", cfg, "--user", "alice", "--cert", "$DIR/nope.crt"}, 2, "nope.crt"},
		{"not a certificate", []string{"explain", "--config", cfg, "--user", "alice", "--cert", "$DIR/pg_hba.conf"}, 2, "no certificate found"},
		{"missing configuration", []string{"explain", "--config", "$DIR/nope.toml", "--user", "alice"}, 1, "nope.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.run(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errOut)
			}
		})
	}

	t.Run("broken pg_hba.conf", func(t *testing.T) {
		bad := newTestConfig(t, "hostssl all all 127.0.0.1/32 cert\nhost all all all bogus\n", "")
		out, errOut, code := bad.run(t, "explain", "--config", cfg, "--user", "alice")
		if code != 1 || out != "" {
			t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
		}
		if want := "$DIR/pg_hba.conf:2: invalid authentication method \"bogus\"\n"; errOut != want {
			t.Errorf("stderr %q, want %q", errOut, want)
		}
	})
}

const checkHBA = `# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     peer
hostssl "all",db1       +grp,"+lit"     127.0.0.1/32            cert map=m clientname=DN
hostssl "db 2"          all             10.0.0.0 255.0.255.0    trust clientcert=verify-ca
host    all             all             ::1/128                 reject
host    sameuser        all             samenet                 scram-sha-256
include_if_exists       missing.conf
include                 more.conf
hostgssenc all          all             .example.com            gss
`

// tableCells splits a table printed by check into cells, at the offsets
// where the header's columns start: tabwriter aligns every row to them, so
// this checks the alignment as well as the content (empty cells included).
func tableCells(t *testing.T, lines []string) [][]string {
	t.Helper()
	header := lines[0]
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || strings.HasPrefix(header[max(0, i-2):i], "  ")) {
			starts = append(starts, i)
		}
	}
	var rows [][]string
	for _, l := range lines {
		row := make([]string, len(starts))
		for j, st := range starts {
			end := len(l)
			if j+1 < len(starts) {
				end = min(starts[j+1], len(l))
			}
			if st < end {
				row[j] = strings.TrimRight(l[st:end], " ")
			}
			if j > 0 && st < len(l) && st > 0 && l[st-1] != ' ' {
				t.Errorf("cell %d of %q does not start at the header's column", j, l)
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// TestCheckOutput checks check's report of a valid configuration: the
// interpreted rules as a table with pg_hba_file_rules' columns, the ident
// mappings, and warnings (each naming file:line) on stderr.
func TestCheckOutput(t *testing.T) {
	c := newTestConfig(t, checkHBA, "m /^CN=(.*)$ \\1\nm \"CN=x\" +grp\n")
	if err := os.WriteFile(filepath.Join(c.dir, "more.conf"), []byte("host all all samehost trust\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// +grp needs a catalog connection at connect time, never for check.
	if err := os.WriteFile(c.toml, []byte(testTOML+"catalog_user = \"postgres\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "--config", c.toml}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	sections := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n\n")
	if len(sections) != 3 {
		t.Fatalf("want 3 sections (OK, rules, mappings):\n%s", stdout.String())
	}
	if want := c.toml + ": OK"; sections[0] != want {
		t.Errorf("first line %q, want %q", sections[0], want)
	}
	hbaPath, identPath, morePath := filepath.Join(c.dir, "pg_hba.conf"), filepath.Join(c.dir, "pg_ident.conf"), filepath.Join(c.dir, "more.conf")
	rules := strings.Split(sections[1], "\n")
	if want := "pg_hba.conf rules (" + hbaPath + "):"; rules[0] != want {
		t.Errorf("rules title %q, want %q", rules[0], want)
	}
	got := tableCells(t, rules[1:])
	want := [][]string{
		{"rule", "file", "line", "type", "database", "user_name", "address", "netmask", "auth_method", "options"},
		{"1", hbaPath, "2", "local", "all", "all", "", "", "peer", ""},
		{"2", hbaPath, "3", "hostssl", `"all",db1`, `+grp,"+lit"`, "127.0.0.1", "255.255.255.255", "cert", "map=m clientname=DN"},
		{"3", hbaPath, "4", "hostssl", `"db 2"`, "all", "10.0.0.0", "255.0.255.0", "trust", "clientcert=verify-ca"},
		{"4", hbaPath, "5", "host", "all", "all", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reject", ""},
		{"5", hbaPath, "6", "host", "sameuser", "all", "samenet", "", "scram-sha-256", ""},
		{"6", morePath, "1", "host", "all", "all", "samehost", "", "trust", ""},
		{"7", hbaPath, "9", "hostgssenc", "all", "all", ".example.com", "", "gss", ""},
	}
	if fmtRows(got) != fmtRows(want) {
		t.Errorf("rules table:\n%s\nparsed as\n%s\nwant\n%s", sections[1], fmtRows(got), fmtRows(want))
	}

	maps := strings.Split(sections[2], "\n")
	if want := "pg_ident.conf mappings (" + identPath + "):"; maps[0] != want {
		t.Errorf("mappings title %q, want %q", maps[0], want)
	}
	got = tableCells(t, maps[1:])
	want = [][]string{
		{"map", "file", "line", "map_name", "sys_name", "pg_username"},
		{"1", identPath, "1", "m", "/^CN=(.*)$", `\1`},
		{"2", identPath, "2", "m", `"CN=x"`, "+grp"},
	}
	if fmtRows(got) != fmtRows(want) {
		t.Errorf("mappings table:\n%s\nparsed as\n%s\nwant\n%s", sections[2], fmtRows(got), fmtRows(want))
	}

	wantErr := strings.Join([]string{
		"warning: " + hbaPath + `:7: skipping missing authentication file "` + filepath.Join(c.dir, "missing.conf") + `"`,
		"warning: " + hbaPath + `:2: connection type "local" never matches: unix_socket_directories is empty, so pgcertgate has no Unix-domain socket`,
		"warning: " + hbaPath + `:6: authentication method "scram-sha-256" is not performed by pgcertgate; connections matching this line will be refused`,
		"warning: " + hbaPath + `:9: connection type "hostgssenc" never matches: pgcertgate does not support GSSAPI encryption`,
	}, "\n") + "\n"
	if stderr.String() != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), wantErr)
	}
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing blanks in %q", l)
		}
	}
}

func fmtRows(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(strings.Join(r, " | "))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestCheckErrors checks that check prints every error of a broken file,
// each as file:line: message with PostgreSQL's text, in file order, prints
// nothing on stdout, and exits 1; and that a usage error exits 2.
func TestCheckErrors(t *testing.T) {
	c := newTestConfig(t, `hostssl all all 127.0.0.1/32 cert
hostssl all all 127.0.0.1/33 cert
host all all 127.0.0.1/32 cert
# a comment, then a continuation
host all \
  all all bogus
foo all all trust
include_dir nodir
hostssl all all all trust clientcert=1
`, "")
	out, errOut, code := c.run(t, "check", "--config", "$DIR/pgcertgate.toml")
	want := `$DIR/pg_hba.conf:2: invalid CIDR mask in address "127.0.0.1/33"
$DIR/pg_hba.conf:3: cert authentication is only supported on hostssl connections
$DIR/pg_hba.conf:5: invalid authentication method "bogus"
$DIR/pg_hba.conf:7: invalid connection type "foo"
$DIR/pg_hba.conf:8: could not open directory "$DIR/nodir"
$DIR/pg_hba.conf:9: invalid value for clientcert: "1"
`
	if code != 1 || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, no stdout, stderr:\n%s", code, out, errOut, want)
	}
	if _, errOut, code := c.run(t, "check"); code != 2 || !strings.Contains(errOut, "--config FILE is required") {
		t.Errorf("check without --config: exit %d, %s", code, errOut)
	}
}
