package config

import (
	"crypto/x509/pkix"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// errorLines is every error of a (joined) error, one per line.
func errorLines(err error) string {
	if err == nil {
		return ""
	}
	var out []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		out = append(out, err.Error())
	}
	walk(err)
	return strings.Join(out, "\n")
}

// TestParseErrorPositions checks that each error about a key of the file
// is exactly file:line: key: message, with the line the key is set on
// (whether in a [table], as a dotted key or inside an inline table), once
// per mistake, and without a line when the file leaves the key out.
func TestParseErrorPositions(t *testing.T) {
	// Line numbers: the first line of each text is line 1.
	for _, tc := range []struct {
		name, text, want string
	}{
		{"top-level key", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"

# the port
port = 70000
[backend]
dsn = "host=/tmp"
`, `c.toml:6: port: 70000 is outside the valid range 1..65535`},

		{"key in a table", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
[backend]
dsn = "host=/tmp"
reuse = true
reuse_max_idle = 0
`, `c.toml:7: backend.reuse_max_idle: 0 (must be at least 1 with reuse = true)`},

		{"dotted key", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
backend.dsn = "host=/tmp"
backend.server_reset_query = " "
backend.reuse = true
`, `c.toml:5: backend.server_reset_query: must not be empty with reuse = true`},

		{"inline table", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
backend = { dsn = "host=/tmp" }
admin = {
  listen_address = "9930" }
`, `c.toml:6: admin.listen_address: "9930" is not host:port (address 9930: missing port in address)`},

		{"unknown keys", `hba_file = "pg_hba.conf"
listen_address = "*"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
"odd.key" = 1
[backend]
dsn = "host=/tmp"
[admin]
pprof = false
bogus = 1
`, `c.toml:2: listen_address: unrecognized configuration parameter
c.toml:5: "odd.key": unrecognized configuration parameter
c.toml:10: admin.bogus: unrecognized configuration parameter`},

		{"required key left out", `hba_file = "pg_hba.conf"
ssl_key_file = "server.key"
[backend]
dsn = "host=/tmp"
`, `c.toml: ssl_cert_file: required`},

		{"required key set empty", `hba_file = ""
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
[backend]
dsn = "host=/tmp"
`, `c.toml:1: hba_file: required`},

		{"several, each once, in the file's order", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
max_connections = 0
log_format = "xml"
ssl_crl_dir = "crl.d"
ssl_min_protocol_version = "TLSv1.1"
authentication_timeout = "11m"
[backend]
dsn = "host=/tmp"
connect_timeout = "0s"
`, `c.toml:4: max_connections: 0 (must be at least 1)
c.toml:5: log_format: "xml" (text or json)
c.toml:6: ssl_crl_dir: CRLs are set but ssl_ca_file is empty
c.toml:7: ssl_min_protocol_version: "TLSv1.1" (TLSv1.2 or TLSv1.3)
c.toml:8: authentication_timeout: 11m0s is outside the valid range 1s..600s
c.toml:11: backend.connect_timeout: must be positive`},

		{"a required key left out comes first", `ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
port = 0
[backend]
dsn = "host=/tmp"
`, `c.toml: hba_file: required
c.toml:3: port: 0 is outside the valid range 1..65535`},

		{"wrong types", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
port = "6432"
watch_files = 1
[backend]
dsn = "host=/tmp"
reuse = "yes"
connect_timeout = ["10s"]
`, `c.toml:4: port: must be an integer, not a string
c.toml:5: watch_files: must be a boolean, not an integer
c.toml:8: backend.reuse: must be a boolean, not a string
c.toml:9: backend.connect_timeout: must be a string, not an array`},

		{"a table where a value goes", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
port.number = 1
[backend]
dsn = "host=/tmp"
`, `c.toml:4: port: must be an integer, not a table`},

		{"value its type refuses", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
[backend]
dsn = "host=/tmp"

connect_timeout = "soon"
`, `c.toml:7: backend.connect_timeout: time: invalid duration "soon"`},

		{"syntax error", `hba_file = "pg_hba.conf"
port =
`, `c.toml:2: port: expected value but found '\n' instead`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tc.text))
			if got := errorLines(err); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestKeyLine checks the key positions read from the decoder against keys
// it could mistake: a key of the same name in another table, a key only
// implied by a dotted one (the line of its first key), and a key the file
// does not set.
func TestKeyLine(t *testing.T) {
	const text = `# comment
port = 1
[backend]
port = 2
"a b" = 3
x.y.z = 4
`
	for _, tc := range []struct {
		key  toml.Key
		want int
	}{
		{toml.Key{"port"}, 2},
		{toml.Key{"backend"}, 3},
		{toml.Key{"backend", "port"}, 4},
		{toml.Key{"backend", "a b"}, 5},
		{toml.Key{"backend", "x", "y", "z"}, 6},
		{toml.Key{"backend", "x"}, 6},
		{toml.Key{"admin"}, 0},
		{toml.Key{"backend", "dsn"}, 0},
	} {
		if got := keyLine(text, tc.key); got != tc.want {
			t.Errorf("keyLine(%s) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

// TestBuildErrorPositions checks the errors about the files the
// configuration names: each is file:line: key: message with the line of
// the key that names the file.
func TestBuildErrorPositions(t *testing.T) {
	dir := t.TempDir()
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "config test root"})
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
	for name, body := range map[string]string{
		"root.crt":    string(root.CertPEM),
		"pg_hba.conf": "hostssl all all 127.0.0.1/32 cert\n",
		"empty.conf":  "# nothing\n",
		"bad.crl":     "not a CRL\n",
		"other.key":   "not a key\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const base = `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
[backend]
dsn = "host=/tmp"
`
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"missing key file", `ssl_key_file = "server.key"`, `ssl_key_file = "nokey"`,
			`$C:3: ssl_key_file: could not access private key file "$D/nokey": stat $D/nokey: no such file or directory`},
		{"key that does not parse", `ssl_key_file = "server.key"`, `ssl_key_file = "other.key"`,
			`$C:2: ssl_cert_file: could not load server certificate file "$D/server.crt" with key file "$D/other.key": tls: failed to find any PEM data in key input`},
		{"missing CA file", `ssl_ca_file = "root.crt"`, `ssl_ca_file = "noca"`,
			`$C:4: ssl_ca_file: could not load root certificate file "$D/noca": No such file or directory`},
		{"bad CRL file", `ssl_ca_file = "root.crt"`, "ssl_ca_file = \"root.crt\"\nssl_crl_file = \"bad.crl\"",
			`$C:5: ssl_crl_file: could not load SSL certificate revocation list file "$D/bad.crl": no certificate or crl found`},
		{"dsn with a client's key", `dsn = "host=/tmp"`, `dsn = "host=/tmp dbname=x"`,
			`$C:6: backend.dsn: may set only connection parameters`},
		{"missing pg_hba.conf", `hba_file = "pg_hba.conf"`, `hba_file = "nohba"`,
			`$C:1: hba_file: could not open file "$D/nohba": No such file or directory`},
		{"empty pg_hba.conf", `hba_file = "pg_hba.conf"`, `hba_file = "empty.conf"`,
			`$C:1: hba_file: configuration file "$D/empty.conf" contains no entries`},
		{"missing pg_ident.conf", `ssl_ca_file = "root.crt"`, "ssl_ca_file = \"root.crt\"\n\nident_file = \"noident\"",
			`$C:6: ident_file: could not open file "$D/noident": No such file or directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "c.toml")
			text := strings.Replace(base, tc.old, tc.new, 1)
			cfg, err := Parse(path, []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Build(cfg)
			got := errorLines(err)
			want := strings.NewReplacer("$C", path, "$D", dir).Replace(tc.want)
			// The DSN's message goes on with pgconn's own words.
			if got != want && !(strings.HasPrefix(want, path+":6: backend.dsn:") && strings.HasPrefix(got, want)) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestKeyErrorWraps checks that a key's error keeps the cause for
// errors.Is.
func TestKeyErrorWraps(t *testing.T) {
	c := &Config{Path: "c.toml", source: "port = 1\n"}
	cause := errors.New("cause")
	err := c.keyError("port", "bad: %w", cause)
	if err.Error() != "c.toml:1: port: bad: cause" || !errors.Is(err, cause) {
		t.Errorf("got %q (wraps cause: %v)", err, errors.Is(err, cause))
	}
}
