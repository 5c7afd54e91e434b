package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tlsAlertPsql runs psql against conninfo with an OpenSSL configuration
// file (none when opensslConf is empty) and returns its output with the
// port numbers blanked, the only part that differs between PostgreSQL and
// pgcertgate.
func tlsAlertPsql(t *testing.T, conninfo, opensslConf string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", "select current_user")
	cmd.Env = cleanEnv()
	if opensslConf != "" {
		cmd.Env = append(cmd.Env, "OPENSSL_CONF="+opensslConf)
	}
	out, err := cmd.CombinedOutput()
	return tlsAlertPortRE.ReplaceAllString(strings.TrimSpace(string(out)), "port N"), err
}

var tlsAlertPortRE = regexp.MustCompile(`port \d+`)

// tlsAlertSuiteConf writes an OpenSSL configuration that limits libpq's
// TLS 1.3 cipher suites to suite: psql has no setting of its own for them,
// and crypto/tls chooses AES-128-GCM whenever the client offers it.
func tlsAlertSuiteConf(t *testing.T, suite string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "openssl-"+suite+".cnf")
	conf := `openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = ` + suite + "\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTLSAlertPsql: for a client certificate that fails verification,
// psql prints the same error through pgcertgate as from PostgreSQL, the
// alert text included (for example "SSL error: tlsv1 alert unknown ca"),
// over TLS 1.2 and over TLS 1.3 with each of its cipher suites, with the
// CRL in ssl_crl_file and in ssl_crl_dir.
func TestTLSAlertPsql(t *testing.T) {
	suites := []struct{ name, conf string }{
		{"TLS 1.2", ""},
		{"TLS 1.3", ""}, // crypto/tls picks AES-128-GCM, PostgreSQL AES-256-GCM
		{"TLS 1.3 AES-256-GCM", tlsAlertSuiteConf(t, "TLS_AES_256_GCM_SHA384")},
		{"TLS 1.3 ChaCha20-Poly1305", tlsAlertSuiteConf(t, "TLS_CHACHA20_POLY1305_SHA256")},
	}
	versionOpt := func(name string) string {
		if strings.HasPrefix(name, "TLS 1.2") {
			return "ssl_max_protocol_version=TLSv1.2"
		}
		return "ssl_min_protocol_version=TLSv1.3"
	}
	cases := []struct{ name, cert, alert string }{
		{"unknown CA", "wrongca", "tlsv1 alert unknown ca"},
		{"revoked", "revoked", "sslv3 alert certificate revoked"},
		{"expired", "expired", "sslv3 alert certificate expired"},
	}
	p := newPKI(t)
	compared := 0
	for _, crl := range []string{"ssl_crl_file", "ssl_crl_dir"} {
		t.Run(crl, func(t *testing.T) {
			o := worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n"}
			if crl == "ssl_crl_dir" {
				o.noCRL = true
				o.conf = map[string]string{"ssl_crl_dir": "crl"}
				o.crlTOML = `ssl_crl_dir = "crl"`
			}
			w := newWorld(t, p, o)
			if crl == "ssl_crl_dir" {
				// The root's CRL, revoking "revoked": without it every
				// root-issued certificate fails as unable to get CRL.
				pem, err := p.root.CRL(p.revoked, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				identDropCRL(t, w, identCRLName(t, p.root, 0), pem)
			}
			identSetup(t, w, []string{"alice"}, nil)
			for _, s := range suites {
				t.Run(s.name, func(t *testing.T) {
					// The suite is in force on both sides: a good
					// certificate connects, with that version and
					// suite in pgcertgate's log.
					good := conn{user: "alice", database: "postgres", cert: "alice", extra: versionOpt(s.name)}
					for _, tg := range []target{direct, proxy} {
						if out, err := tlsAlertPsql(t, w.conninfo(tg, good), s.conf); err != nil || out != "alice" {
							t.Fatalf("%s: good certificate: %v: %s", tg, err, out)
						}
					}
					wantLog := "tls_version=TLSv1.3"
					if strings.HasPrefix(s.name, "TLS 1.2") {
						wantLog = "tls_version=TLSv1.2"
					}
					if !strings.Contains(w.logBuf.String(), wantLog) {
						t.Errorf("no %s in pgcertgate's log", wantLog)
					}
					if s.conf != "" {
						suite := strings.TrimPrefix(filepath.Base(s.conf), "openssl-")
						suite = strings.TrimSuffix(suite, ".cnf")
						if !strings.Contains(w.logBuf.String(), "tls_cipher="+suite) {
							t.Errorf("pgcertgate's log has no tls_cipher=%s", suite)
						}
					}
					for _, tc := range cases {
						c := conn{user: "alice", database: "postgres", cert: tc.cert, extra: versionOpt(s.name)}
						pg, pgErr := tlsAlertPsql(t, w.conninfo(direct, c), s.conf)
						gate, gateErr := tlsAlertPsql(t, w.conninfo(proxy, c), s.conf)
						t.Logf("%-10s %s", tc.name, gate)
						if pgErr == nil || gateErr == nil {
							t.Errorf("%s: connected (PostgreSQL: %v, pgcertgate: %v)", tc.name, pgErr, gateErr)
						}
						if !strings.Contains(pg, tc.alert) {
							t.Errorf("%s: PostgreSQL: %s\n  want the alert %q", tc.name, pg, tc.alert)
						}
						if gate != pg {
							t.Errorf("%s: psql's error differs\n  PostgreSQL: %s\n  pgcertgate: %s", tc.name, pg, gate)
						}
						compared++
					}
				})
			}
		})
	}
	t.Logf("%d psql errors compared with PostgreSQL's", compared)
}
