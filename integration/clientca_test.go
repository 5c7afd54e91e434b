package integration

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// pgcertgate's certificate extensions end to end: a CA set per pg_hba.conf
// line (clientca=), inline and named CAs, pins (clientname=SHA256), the
// key-usage policy and the chain depth, against a real PostgreSQL. None
// of them exists in PostgreSQL, so PostgreSQL gets a stock pg_hba.conf and
// gives the reference for the messages: the one a failed certificate
// check on the same kind of line gives there.

// caPKI is two CAs independent of the world's own root: A, with an
// intermediate its clients send (Ai), one the set holds (Ah) and two
// more for a chain deeper than ssl_verify_depth; and B.
type caPKI struct {
	a, ai, ah, b *testpki.CA
}

func newCAPKI(t *testing.T, p *pki) *caPKI {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	c := &caPKI{}
	var err error
	c.a, err = testpki.NewRootCA(pkix.Name{CommonName: "CA A", Organization: []string{"A corp"}})
	must(err)
	c.ai, err = c.a.NewIntermediate(pkix.Name{CommonName: "CA A issuing (sent)"})
	must(err)
	c.ah, err = c.a.NewIntermediate(pkix.Name{CommonName: "CA A issuing (held)"})
	must(err)
	d1, err := c.a.NewIntermediate(pkix.Name{CommonName: "CA A deep 1"})
	must(err)
	d2, err := d1.NewIntermediate(pkix.Name{CommonName: "CA A deep 2"})
	must(err)
	c.b, err = testpki.NewRootCA(pkix.Name{CommonName: "CA B", Organization: []string{"B corp"}})
	must(err)
	alice := pkix.Name{CommonName: "alice"}
	for name, issue := range map[string]struct {
		ca   *testpki.CA
		opts []testpki.Option
	}{
		"a-alice":      {c.a, nil},
		"b-alice":      {c.b, nil},
		"ai-alice":     {c.ai, nil},
		"ah-alice":     {c.ah, nil},
		"deep-alice":   {d2, nil},
		"pin-alice":    {c.a, nil},
		"pin-other":    {c.a, nil},
		"a-noeku":      {c.a, []testpki.Option{testpki.WithEKU()}},
		"a-serveronly": {c.a, []testpki.Option{testpki.WithEKU(x509.ExtKeyUsageServerAuth)}},
	} {
		l, err := issue.ca.NewClient(alice, issue.opts...)
		must(err)
		p.clients[name] = l
	}
	// The held intermediate's client sends its leaf alone.
	held := *p.clients["ah-alice"]
	held.Chain = held.Chain[len(held.Chain)-1:]
	p.clients["ah-alice"] = &held
	return c
}

// caPGHBA is PostgreSQL's side: the stock lines whose refusals the
// extensions' refusals must equal.
const caPGHBA = `hostssl a    all 127.0.0.1/32 cert
hostssl tb   all 127.0.0.1/32 trust clientcert=verify-ca
hostssl all  all 127.0.0.1/32 trust
`

// caHBA is the proxy's. The last line would accept anyone: a refusal on
// an earlier line must never fall through to it.
const caHBA = `hostssl a     all 127.0.0.1/32 cert clientca=@a
hostssl b     all 127.0.0.1/32 cert clientca=@b
hostssl tb    all 127.0.0.1/32 trust clientcert=verify-ca clientca=@b
hostssl afile all 127.0.0.1/32 cert clientca=ca-a.pem
hostssl ku    all 127.0.0.1/32 cert clientca=@a clientkeyusage=require
hostssl pin   all 127.0.0.1/32 cert clientca=@a clientname=SHA256 map=pins
hostssl root  all 127.0.0.1/32 cert
hostssl all   all 127.0.0.1/32 trust
`

// clientCAWorld is a world whose proxy runs caHBA, with @a given inline
// as base64 (A and its held intermediate), @b as inline PEM, and
// ca-a.pem as a clientca= file.
func clientCAWorld(t *testing.T) (*world, *caPKI) {
	t.Helper()
	p := newPKI(t)
	c := newCAPKI(t, p)
	setA := base64.StdEncoding.EncodeToString(append(append([]byte{}, c.a.CertPEM...), c.ah.CertPEM...))
	tables := fmt.Sprintf("[client_ca.a]\npem = %q\n[client_ca.b]\npem = '''\n%s'''\n", setA, c.b.CertPEM)
	w := newWorld(t, p, worldOptions{hba: caPGHBA, extraTOML: tables, files: map[string]string{"ca-a.pem": string(c.a.CertPEM)}})
	identSetup(t, w, []string{"alice"}, []string{"a", "b", "tb", "afile", "ku", "pin", "root"})
	pin := fmt.Sprintf("sha256:%x", sha256.Sum256(p.clients["pin-alice"].DER))
	w.writeFile("pg_hba.conf", caHBA)
	w.writeFile("pg_ident.conf", "pins "+pin+" alice\n")
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatalf("loading the clientca configuration: %v", err)
	}
	w.proxy.Reload(rt)
	return w, c
}

// proxyMetrics gathers the in-process proxy's metrics.
func proxyMetrics(t *testing.T, w *world) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.proxy.Metrics())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func TestClientCAPerLine(t *testing.T) {
	w, _ := clientCAWorld(t)

	// PostgreSQL's refusals for a failed certificate check: a cert line
	// whose certificate names someone else, and a clientcert=verify-ca
	// line without a valid certificate.
	certFailed := w.attempt(direct, conn{user: "alice", database: "a", cert: "bob"}).String()
	noValidCert := w.attempt(direct, conn{user: "alice", database: "tb"}).String()
	if certFailed != `FATAL 28000 certificate authentication failed for user "alice"` {
		t.Fatalf("PostgreSQL: %s", certFailed)
	}
	if noValidCert != "FATAL 28000 connection requires a valid client certificate" {
		t.Fatalf("PostgreSQL: %s", noValidCert)
	}

	for _, tc := range []struct {
		name string
		c    conn
		want string
	}{
		{"A's client on A's line (@a, inline base64)", conn{user: "alice", database: "a", cert: "a-alice"}, "ok as alice"},
		{"A's client on B's line", conn{user: "alice", database: "b", cert: "a-alice"}, certFailed},
		{"B's client on B's line (@b, inline PEM)", conn{user: "alice", database: "b", cert: "b-alice"}, "ok as alice"},
		{"B's client on A's line", conn{user: "alice", database: "a", cert: "b-alice"}, certFailed},
		{"A's client on B's trust clientcert line", conn{user: "alice", database: "tb", cert: "a-alice"}, noValidCert},
		{"B's client on B's trust clientcert line", conn{user: "alice", database: "tb", cert: "b-alice"}, "ok as alice"},
		{"intermediate sent by the client", conn{user: "alice", database: "a", cert: "ai-alice"}, "ok as alice"},
		{"intermediate sent, clientca= file", conn{user: "alice", database: "afile", cert: "ai-alice"}, "ok as alice"},
		{"intermediate held in the set", conn{user: "alice", database: "a", cert: "ah-alice"}, "ok as alice"},
		{"intermediate held by another set only", conn{user: "alice", database: "afile", cert: "ah-alice"}, certFailed},
		{"A's client on the ssl_ca_file line", conn{user: "alice", database: "root", cert: "a-alice"}, certFailed},
		{"the world's client on the ssl_ca_file line", conn{user: "alice", database: "root", cert: "alice"}, "ok as alice"},
		{"the world's client on A's line", conn{user: "alice", database: "a", cert: "alice"}, certFailed},
		{"the pinned certificate", conn{user: "alice", database: "pin", cert: "pin-alice"}, "ok as alice"},
		{"same subject, same CA, not pinned", conn{user: "alice", database: "pin", cert: "pin-other"}, certFailed},
		{"clientkeyusage=require, clientAuth", conn{user: "alice", database: "ku", cert: "a-alice"}, "ok as alice"},
		{"clientkeyusage=require, no EKU", conn{user: "alice", database: "ku", cert: "a-noeku"}, certFailed},
		{"no EKU where the line does not require it", conn{user: "alice", database: "a", cert: "a-noeku"}, "ok as alice"},
		{"serverAuth only: OpenSSL's purpose check", conn{user: "alice", database: "ku", cert: "a-serveronly"}, "TLS failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.attempt(proxy, tc.c).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}

	// libpq too: it sends its certificate whatever the CertificateRequest
	// lists, and gets the same.
	if o := identPsql(t, w, proxy, conn{user: "alice", database: "b", cert: "a-alice"}); o.outcome != "FATAL "+strings.TrimPrefix(certFailed, "FATAL 28000 ") {
		t.Errorf("psql: %q", o.outcome)
	}

	log := w.logBuf.String()
	for _, want := range []string{
		"reason=ca_not_allowed", "ca_set_required=@b ca_set_verified=@a",
		"ca_set_required=ssl_ca_file ca_set_verified=@a", "ca_set_required=@a ca_set_verified=@a",
		"ca_set_required=" + filepath.Join(w.dir, "ca-a.pem") + " ca_set_verified=" + filepath.Join(w.dir, "ca-a.pem"),
		"reason=pin_mismatch", "reason=key_usage",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the audit log lacks %q", want)
		}
	}
	fams := proxyMetrics(t, w)
	for _, reason := range []string{"ca_not_allowed", "pin_mismatch", "key_usage"} {
		if v, ok := opsValue(fams, "pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": reason}); !ok || v < 1 {
			t.Errorf("pgcertgate_auth_attempts_total{reason=%q} = %v, %v", reason, v, ok)
		}
	}
}

// TestClientCAHandshakePolicies: ssl_client_key_usage = "require" and
// ssl_verify_depth refuse in the TLS handshake, with their own audit
// reasons, metric labels and OpenSSL's alerts.
func TestClientCAHandshakePolicies(t *testing.T) {
	w, _ := clientCAWorld(t)
	data, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), `ssl_ca_file = "root.crt"`, "ssl_ca_file = \"root.crt\"\nssl_client_key_usage = \"require\"\nssl_verify_depth = 1", 1)
	w.writeFile("pgcertgate.toml", cfg)
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w.proxy.Reload(rt)

	for _, tc := range []struct {
		name, cert, want, alert string
	}{
		{"clientAuth", "a-alice", "ok as alice", ""},
		{"one intermediate at depth 1", "ai-alice", "ok as alice", ""},
		{"no EKU", "a-noeku", "TLS failure", "unsupported certificate"},
		{"serverAuth only", "a-serveronly", "TLS failure", "unsupported certificate"},
		{"two intermediates at depth 1", "deep-alice", "TLS failure", "unknown ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := conn{user: "alice", database: "a", cert: tc.cert}
			if got := w.attempt(proxy, c).String(); got != tc.want {
				t.Errorf("pgx: got %q, want %q", got, tc.want)
			}
			o := identPsql(t, w, proxy, c)
			if o.outcome != tc.want || o.alert != tc.alert {
				t.Errorf("psql: %q, alert %q; want %q, alert %q (%s)", o.outcome, o.alert, tc.want, tc.alert, o.out)
			}
		})
	}
	fams := proxyMetrics(t, w)
	for _, tc := range []struct{ reason, cause string }{
		{"key_usage", "key_usage"},
		{"chain_too_deep", "chain_too_deep"},
		// OpenSSL's purpose check comes first, and keeps its reason.
		{"cert_invalid", "cert_unsuitable_certificate_purpose"},
	} {
		if v, ok := opsValue(fams, "pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": tc.reason}); !ok || v < 2 {
			t.Errorf("auth_attempts_total{reason=%q} = %v, %v; want 2 (pgx and psql)", tc.reason, v, ok)
		}
		if v, ok := opsValue(fams, "pgcertgate_tls_handshake_failures_total", map[string]string{"cause": tc.cause}); !ok || v < 2 {
			t.Errorf("tls_handshake_failures_total{cause=%q} = %v, %v", tc.cause, v, ok)
		}
	}
	if log := w.logBuf.String(); !strings.Contains(log, "reason=chain_too_deep") || !strings.Contains(log, "reason=key_usage") {
		t.Errorf("the audit log lacks the handshake reasons")
	}
}

// TestClientCAReload: a clientca file is watched and reloaded, and SIGHUP
// reloads it too; a broken one keeps the configuration in force whole.
func TestClientCAReload(t *testing.T) {
	p := newPKI(t)
	c := newCAPKI(t, p)
	// a.pem and b.pem keep both CAs in the handshake's union, so that
	// line a's refusals are its own, not the handshake's.
	w := newWorld(t, p, worldOptions{hba: caPGHBA, files: map[string]string{"a.pem": string(c.a.CertPEM), "b.pem": string(c.b.CertPEM)}})
	identSetup(t, w, []string{"alice"}, []string{"a"})
	w.writeFile("pg_hba.conf", `hostssl a  all 127.0.0.1/32 cert clientca=switch.pem
hostssl sa all 127.0.0.1/32 cert clientca=a.pem
hostssl sb all 127.0.0.1/32 cert clientca=b.pem
hostssl all all 127.0.0.1/32 trust
`)
	// Replace, as an editor or a Secret update does.
	publish := func(content []byte) {
		t.Helper()
		tmp := filepath.Join(w.dir, "switch.pem.tmp")
		if err := os.WriteFile(tmp, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(w.dir, "switch.pem")); err != nil {
			t.Fatal(err)
		}
	}
	aClient := conn{user: "alice", database: "a", cert: "a-alice"}
	bClient := conn{user: "alice", database: "a", cert: "b-alice"}
	refused := `FATAL certificate authentication failed for user "alice"`
	// psql: libpq sends its certificate even when the CertificateRequest
	// does not list its CA (pgx would then send none).
	expect := func(step string, c conn, want string) {
		t.Helper()
		if got := identPsql(t, w, proxy, c); got.outcome != want {
			t.Fatalf("%s: %s got %q, want %q (%s)", step, c.cert, got.outcome, want, got.out)
		}
	}

	t.Run("SIGHUP", func(t *testing.T) {
		publish(c.a.CertPEM)
		child := opsStartChild(t, w, opsChildConfig(t, w, w.dir, "hup.toml", ""))
		expect("start", aClient, "ok as alice")
		expect("start", bClient, refused)
		publish(c.b.CertPEM)
		child.cmd.Process.Signal(syscall.SIGHUP)
		child.waitLog(t, "configuration reloaded")
		expect("after SIGHUP", aClient, refused)
		expect("after SIGHUP", bClient, "ok as alice")
		publish([]byte("no certificate here\n"))
		child.cmd.Process.Signal(syscall.SIGHUP)
		line := child.waitLog(t, "configuration file error")
		if !strings.Contains(line, "clientca: could not load root certificate file") || !strings.Contains(line, "pg_hba.conf:1") {
			t.Errorf("error line: %s", line)
		}
		child.waitLog(t, "configuration files were not reloaded")
		expect("after a broken file", bClient, "ok as alice")
		child.cmd.Process.Signal(syscall.SIGTERM)
		if err, _ := child.exit(t, 30*time.Second); err != nil {
			t.Fatalf("exit: %v", err)
		}
	})

	t.Run("watch_files", func(t *testing.T) {
		publish(c.a.CertPEM)
		child := opsStartChild(t, w, opsChildConfig(t, w, w.dir, "watch.toml", "watch_files = true"))
		child.waitLog(t, "watching configuration files for changes")
		expect("start", aClient, "ok as alice")
		publish(c.b.CertPEM)
		line := child.waitLog(t, "configuration files changed")
		if !strings.Contains(line, filepath.Join(w.dir, "switch.pem")) {
			t.Errorf("the change does not name switch.pem: %s", line)
		}
		child.waitLog(t, "configuration reloaded")
		expect("after the swap", aClient, refused)
		expect("after the swap", bClient, "ok as alice")
		publish([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
		child.waitLog(t, "configuration files were not reloaded")
		expect("after a broken swap", bClient, "ok as alice")
		publish(c.a.CertPEM)
		child.waitLog(t, "configuration reloaded")
		expect("after the fix", aClient, "ok as alice")
		child.cmd.Process.Signal(syscall.SIGTERM)
		if err, _ := child.exit(t, 30*time.Second); err != nil {
			t.Fatalf("exit: %v", err)
		}
	})
}
