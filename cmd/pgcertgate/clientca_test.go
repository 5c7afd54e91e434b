package main

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// caTestConfig is a configuration with two independent CAs: A in
// ssl_ca_file (with an intermediate Ai that clients send) and B as the
// named set @b; client certificates "<name>.crt" of every kind the
// certificate checks refuse; and pins.
type caTestConfig struct {
	*testConfig
	pins map[string]string // client name → sha256: pin
}

const caHBA = `hostssl a   all 127.0.0.1/32 cert
hostssl b   all 127.0.0.1/32 cert clientca=@b
hostssl t   all 127.0.0.1/32 trust clientcert=verify-ca clientca=@b
hostssl ku  all 127.0.0.1/32 cert clientkeyusage=require
hostssl pin all 127.0.0.1/32 cert clientname=SHA256 map=pins
hostssl all all 127.0.0.1/32 trust
`

func newCATestConfig(t *testing.T, extraTOML string) *caTestConfig {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	a, err := testpki.NewRootCA(pkix.Name{CommonName: "CA A"})
	must(err)
	ai, err := a.NewIntermediate(pkix.Name{CommonName: "CA A intermediate"})
	must(err)
	b, err := testpki.NewRootCA(pkix.Name{CommonName: "CA B"})
	must(err)
	server, err := a.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	must(err)
	must(server.WriteFiles(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")))
	c := &caTestConfig{testConfig: &testConfig{dir: dir, toml: filepath.Join(dir, "pgcertgate.toml")}, pins: map[string]string{}}
	for _, cl := range []struct {
		name string
		ca   *testpki.CA
		opts []testpki.Option
	}{
		{"alice-a", a, nil},
		{"alice-b", b, nil},
		{"alice-ai", ai, nil},
		{"noeku", a, []testpki.Option{testpki.WithEKU()}},
		{"pinned", a, nil},
		{"other", a, nil},
	} {
		l, err := cl.ca.NewClient(pkix.Name{CommonName: "alice"}, cl.opts...)
		must(err)
		must(l.WriteFiles(filepath.Join(dir, cl.name+".crt"), filepath.Join(dir, cl.name+".key")))
		c.pins[cl.name] = fmt.Sprintf("sha256:%x", sha256.Sum256(l.DER))
	}
	files := map[string]string{
		"a.crt":         string(a.CertPEM),
		"b.crt":         string(b.CertPEM),
		"pg_hba.conf":   caHBA,
		"pg_ident.conf": "pins " + c.pins["pinned"] + " alice\n",
		"pgcertgate.toml": `hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "a.crt"
` + extraTOML + `
[backend]
dsn = "host=/nonexistent port=5432"
[client_ca.b]
file = "b.crt"
`,
	}
	for name, body := range files {
		must(os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return c
}

// TestExplainCertChecks: explain's transcript for each refusal the
// certificate checks add (a CA set the line does not require, key usage,
// a pin, and in the handshake key usage and chain depth), and for the
// accepted cases beside them.
func TestExplainCertChecks(t *testing.T) {
	c := newCATestConfig(t, "")
	head := func(user, db, subject, issuer string) string {
		return fmt.Sprintf(`connection: host=127.0.0.1 user=%q database=%q SSL encryption replication=none
certificate: subject %q, CN "alice", issuer %q, serial S, not after T
  fingerprint: sha256:F
`, user, db, subject, issuer)
	}
	tries := func(n int) string {
		lines := strings.Split(strings.TrimSuffix(caHBA, "\n"), "\n")
		var b strings.Builder
		for i, l := range lines[:n] {
			db := strings.Fields(l)[1]
			b.WriteString(fmt.Sprintf("  $DIR/pg_hba.conf:%d  %s\n", i+1, l))
			if i == n-1 {
				b.WriteString("      MATCH\n")
			} else {
				b.WriteString(fmt.Sprintf("      no:    database %q not in [%s]\n", "DB", db))
			}
		}
		return b.String()
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{
			name: "a CA set the line does not require",
			args: []string{"--user", "alice", "--database", "b", "--cert", "$DIR/alice-a.crt"},
			code: 1,
			want: head("alice", "b", "CN=alice", "CN=CA A") + `  verification: ok (chain of 2 to "CN=CA A")
  CA set: ssl_ca_file (the handshake tries ssl_ca_file, @b in turn; the matched line requires its own)
pg_hba.conf:
` + strings.ReplaceAll(tries(2), `"DB"`, `"b"`) + `matched: $DIR/pg_hba.conf:2: hostssl b   all 127.0.0.1/32 cert clientca=@b
check clientca: REFUSED (ca_not_allowed): the line requires CA set @b, but the chain verifies to ssl_ca_file: against @b, certificate verify failed: unable to get local issuer certificate (depth 0)
verdict: REJECT: the client gets FATAL 28000: certificate authentication failed for user "alice"
reason: ca_not_allowed
server log: clientca: the line requires CA set @b, but the chain verifies to ssl_ca_file: against @b, certificate verify failed: unable to get local issuer certificate (depth 0)
`,
		},
		{
			name: "the set a trust line requires",
			args: []string{"--user", "alice", "--database", "t", "--cert", "$DIR/alice-a.crt"},
			code: 1,
			want: head("alice", "t", "CN=alice", "CN=CA A") + `  verification: ok (chain of 2 to "CN=CA A")
  CA set: ssl_ca_file (the handshake tries ssl_ca_file, @b in turn; the matched line requires its own)
pg_hba.conf:
` + strings.ReplaceAll(tries(3), `"DB"`, `"t"`) + `matched: $DIR/pg_hba.conf:3: hostssl t   all 127.0.0.1/32 trust clientcert=verify-ca clientca=@b
check clientca: REFUSED (ca_not_allowed): the line requires CA set @b, but the chain verifies to ssl_ca_file: against @b, certificate verify failed: unable to get local issuer certificate (depth 0)
verdict: REJECT: the client gets FATAL 28000: connection requires a valid client certificate
reason: ca_not_allowed
server log: clientca: the line requires CA set @b, but the chain verifies to ssl_ca_file: against @b, certificate verify failed: unable to get local issuer certificate (depth 0)
`,
		},
		{
			name: "B's client on B's line",
			args: []string{"--user", "alice", "--database", "b", "--cert", "$DIR/alice-b.crt"},
			code: 0,
			want: head("alice", "b", "CN=alice", "CN=CA B") + `  verification: ok (chain of 2 to "CN=CA B")
  CA set: @b (the handshake tries ssl_ca_file, @b in turn; the matched line requires its own)
pg_hba.conf:
` + strings.ReplaceAll(tries(2), `"DB"`, `"b"`) + `matched: $DIR/pg_hba.conf:2: hostssl b   all 127.0.0.1/32 cert clientca=@b
check clientca: ok: the chain verifies to CA set @b, which the line requires
identity (clientname=CN): "alice"
verdict: ACCEPT: connect to the backend as user "alice", database "b"
`,
		},
		{
			name: "key usage on the line",
			args: []string{"--user", "alice", "--database", "ku", "--cert", "$DIR/noeku.crt"},
			code: 1,
			want: head("alice", "ku", "CN=alice", "CN=CA A") + `  verification: ok (chain of 2 to "CN=CA A")
  CA set: ssl_ca_file (the handshake tries ssl_ca_file, @b in turn; the matched line requires its own)
pg_hba.conf:
` + strings.ReplaceAll(tries(4), `"DB"`, `"ku"`) + `matched: $DIR/pg_hba.conf:4: hostssl ku  all 127.0.0.1/32 cert clientkeyusage=require
check clientca: ok: the chain verifies to CA set ssl_ca_file, which the line requires
check clientkeyusage: REFUSED (key_usage): the certificate has no extendedKeyUsage; clientAuth is required (clientkeyusage=require)
verdict: REJECT: the client gets FATAL 28000: certificate authentication failed for user "alice"
reason: key_usage
server log: clientkeyusage: the certificate has no extendedKeyUsage; clientAuth is required (clientkeyusage=require)
`,
		},
		{
			name: "a pin that does not match",
			args: []string{"--user", "alice", "--database", "pin", "--cert", "$DIR/other.crt"},
			code: 1,
			want: head("alice", "pin", "CN=alice", "CN=CA A") + `  verification: ok (chain of 2 to "CN=CA A")
  CA set: ssl_ca_file (the handshake tries ssl_ca_file, @b in turn; the matched line requires its own)
pg_hba.conf:
` + strings.ReplaceAll(tries(5), `"DB"`, `"pin"`) + `matched: $DIR/pg_hba.conf:5: hostssl pin all 127.0.0.1/32 cert clientname=SHA256 map=pins
check clientca: ok: the chain verifies to CA set ssl_ca_file, which the line requires
identity (clientname=SHA256): "sha256:F"
map "pins": no match in usermap "pins" for user "alice" authenticated as "sha256:F"
verdict: REJECT: the client gets FATAL 28000: certificate authentication failed for user "alice"
reason: pin_mismatch
server log: no match in usermap "pins" for user "alice" authenticated as "sha256:F"
`,
		},
		{
			name: "the pinned certificate",
			args: []string{"--user", "alice", "--database", "pin", "--cert", "$DIR/pinned.crt"},
			code: 0,
			want: head("alice", "pin", "CN=alice", "CN=CA A") + `  verification: ok (chain of 2 to "CN=CA A")
  CA set: ssl_ca_file (the handshake tries ssl_ca_file, @b in turn; the matched line requires its own)
pg_hba.conf:
` + strings.ReplaceAll(tries(5), `"DB"`, `"pin"`) + `matched: $DIR/pg_hba.conf:5: hostssl pin all 127.0.0.1/32 cert clientname=SHA256 map=pins
check clientca: ok: the chain verifies to CA set ssl_ca_file, which the line requires
identity (clientname=SHA256): "sha256:F"
map "pins": accepted by $DIR/pg_ident.conf:1
verdict: ACCEPT: connect to the backend as user "alice", database "pin"
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.explain(t, tc.args...)
			if code != tc.code || errOut != "" {
				t.Errorf("exit %d, want %d (stderr: %s)", code, tc.code, errOut)
			}
			if out != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tc.want)
			}
		})
	}
}

// TestExplainHandshakePolicies: ssl_client_key_usage = "require" and
// ssl_verify_depth refuse in the handshake, each with its own reason.
func TestExplainHandshakePolicies(t *testing.T) {
	c := newCATestConfig(t, "ssl_client_key_usage = \"require\"\nssl_verify_depth = 0\n")
	for _, tc := range []struct {
		name, cert, issuer, want string
	}{
		{"key usage", "noeku", "CN=CA A", `  verification FAILED: certificate verify failed: certificate key usage does not allow client authentication (depth 0): the certificate has no extendedKeyUsage; clientAuth is required
  CA sets tried: ssl_ca_file, @b
verdict: REJECT during the TLS handshake (the client sees a TLS alert, whatever pg_hba.conf says)
reason: key_usage
`},
		{"chain depth", "alice-ai", "CN=CA A intermediate", `  verification FAILED: certificate verify failed: certificate chain too long (depth 1)
  CA sets tried: ssl_ca_file, @b
verdict: REJECT during the TLS handshake (the client sees a TLS alert, whatever pg_hba.conf says)
reason: chain_too_deep
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.explain(t, "--user", "alice", "--database", "a", "--cert", "$DIR/"+tc.cert+".crt")
			want := `connection: host=127.0.0.1 user="alice" database="a" SSL encryption replication=none
certificate: subject "CN=alice", CN "alice", issuer "` + tc.issuer + `", serial S, not after T
  fingerprint: sha256:F
` + tc.want
			if code != 1 || errOut != "" || out != want {
				t.Errorf("exit %d (stderr %s), output:\n%s\nwant:\n%s", code, errOut, out, want)
			}
		})
	}
	// Accepted: the policies and the depth are shown.
	out, _, code := c.explain(t, "--user", "alice", "--database", "a", "--cert", "$DIR/alice-a.crt")
	for _, want := range []string{
		"  key usage: ok (ssl_client_key_usage = require: extendedKeyUsage includes clientAuth, keyUsage allows digitalSignature)\n",
		"  chain depth: 0 intermediate(s), at most 0 (ssl_verify_depth)\n",
		"verdict: ACCEPT",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
}

// TestFingerprint: the pin line to paste into pg_ident.conf, for each
// file's leaf.
func TestFingerprint(t *testing.T) {
	c := newCATestConfig(t, "")
	out, errOut, code := c.run(t, "fingerprint", "$DIR/pinned.crt", "$DIR/alice-ai.crt")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("output:\n%s", out)
	}
	if !strings.HasPrefix(lines[0], `# $DIR/pinned.crt: subject "CN=alice", issuer "CN=CA A", serial `) {
		t.Errorf("comment %q", lines[0])
	}
	if want := "pins  " + c.pins["pinned"] + "  alice"; lines[1] != want {
		t.Errorf("line %q, want %q", lines[1], want)
	}
	// A chain file: the leaf's pin, not the intermediate's.
	if want := "pins  " + c.pins["alice-ai"] + "  alice"; lines[3] != want {
		t.Errorf("line %q, want %q", lines[3], want)
	}
	for _, tc := range []struct{ m, u, want string }{
		{"my map", "bob", `"my map"  ` + c.pins["pinned"] + "  bob\n"},
		{"pins", "all", "pins  " + c.pins["pinned"] + `  "all"` + "\n"},
		{"pins", "+ops", "pins  " + c.pins["pinned"] + `  "+ops"` + "\n"},
	} {
		out, _, code = c.run(t, "fingerprint", "--map", tc.m, "--user", tc.u, "$DIR/pinned.crt")
		if code != 0 || !strings.HasSuffix(out, tc.want) {
			t.Errorf("exit %d, output %q, want suffix %q", code, out, tc.want)
		}
	}
	// What it prints is what a live certificate's identity is.
	raw, err := readPEMCerts(filepath.Join(c.dir, "pinned.crt"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil || fmt.Sprintf("sha256:%x", sha256.Sum256(leaf.Raw)) != c.pins["pinned"] {
		t.Fatalf("pin of the file: %v", err)
	}
	_, errOut, code = c.run(t, "fingerprint", "$DIR/missing.crt", "$DIR/pinned.crt")
	if code != 1 || !strings.Contains(errOut, "missing.crt") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
	if _, _, code := c.run(t, "fingerprint"); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
}

// TestCheckCertExtensions: check warns about each extension option and
// about a pin bound to two roles.
func TestCheckCertExtensions(t *testing.T) {
	c := newCATestConfig(t, "")
	ident := "pins " + c.pins["pinned"] + " alice\npins " + c.pins["pinned"] + " bob\n"
	if err := os.WriteFile(filepath.Join(c.dir, "pg_ident.conf"), []byte(ident), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := c.run(t, "check", "--config", "$DIR/pgcertgate.toml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `warning: $DIR/pg_hba.conf:5: clientname=SHA256 is a pgcertgate extension that PostgreSQL refuses
warning: $DIR/pg_hba.conf:2: clientca=@b is a pgcertgate extension that PostgreSQL refuses
warning: $DIR/pg_hba.conf:3: clientca=@b is a pgcertgate extension that PostgreSQL refuses
warning: $DIR/pg_hba.conf:4: clientkeyusage=require is a pgcertgate extension that PostgreSQL refuses
warning: $DIR/pg_ident.conf:2: certificate pin ` + c.pins["pinned"] + ` is bound to role bob here and to role alice at $DIR/pg_ident.conf:1: a certificate should belong to one user
`
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
	// A malformed pin is an error at its line.
	if err := os.WriteFile(filepath.Join(c.dir, "pg_ident.conf"), []byte("pins "+strings.ToUpper(c.pins["pinned"])+" alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = c.run(t, "check", "--config", "$DIR/pgcertgate.toml")
	if code != 1 || !strings.HasPrefix(errOut, `$DIR/pg_ident.conf:1: map "pins" holds certificate pins (clientname=SHA256 at $DIR/pg_hba.conf:5): malformed certificate pin "SHA256:`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
