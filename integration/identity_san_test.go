package integration

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// The clientname=SAN-* extension, end to end with psql. PostgreSQL has no
// such identity source and refuses these lines, so these cases run against
// pgcertgate only; PostgreSQL's refusal is checked too.

// identSANHBA comes before the SPIFFE example's lines, which match every
// database.
const identSANHBA = `hostssl  emaildb   all  127.0.0.1/32  cert clientname=SAN-email map=email
hostssl  emailerr  all  127.0.0.1/32  cert clientname=SAN-email map=emailerr
hostssl  dnsdb     all  127.0.0.1/32  cert clientname=SAN-DNS map=dns
hostssl  dnsfull   all  127.0.0.1/32  trust clientcert=verify-full clientname=SAN-DNS
hostssl  uridb     all  127.0.0.1/32  cert clientname=SAN-URI
`

const identSANIdent = `email  /^([a-z]+)@example\.com$               \1
dns    /^([a-z0-9]+)\.svc\.example\.org$       \1
# For nobody@other.org this line stops the scan (\1 without a group);
# the next SAN is then looked up from the top.
emailerr  /^nobody@                       \1x
emailerr  /^([a-z]+)@example\.com$        \1
`

func identReadExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "examples", "spiffe", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIdentSANAndSPIFFE(t *testing.T) {
	p := newPKI(t)
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for name, opts := range map[string][]testpki.Option{
		"email":       {testpki.WithEmailSANs("nobody@other.org", "alice@example.com", "bob@example.com")},
		"dns":         {testpki.WithDNSSANs("x.other.org", "db1.svc.example.org")},
		"spiffe":      {testpki.WithURISANs(uri("spiffe://prod.example.org/ns/payments/sa/app"))},
		"spiffe-2nd":  {testpki.WithURISANs(uri("https://idp.example.org/u/42"), uri("spiffe://prod.example.org/ns/billing/sa/app"))},
		"spiffe-td":   {testpki.WithURISANs(uri("spiffe://evil.example.org/ns/payments/sa/app"))},
		"spiffe-sa":   {testpki.WithURISANs(uri("spiffe://prod.example.org/ns/payments/sa/worker"))},
		"spiffe-deep": {testpki.WithURISANs(uri("spiffe://prod.example.org/ns/payments/sa/app/extra"))},
		"spiffe-ops":  {testpki.WithURISANs(uri("spiffe://prod.example.org/ns/ops/sa/migrator"))},
	} {
		l, err := p.root.NewClient(pkix.Name{CommonName: "svc-" + name}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		p.clients[name] = l
	}
	// PostgreSQL gets a pg_hba.conf it accepts; the proxy gets the SAN
	// lines and the SPIFFE example by a reload below.
	w := newWorld(t, p, worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n"})
	identSetup(t, w, []string{"alice", "bob", "db1", "x.other.org", "db1.svc.example.org", "payments", "billing",
		"spiffe://prod.example.org/ns/payments/sa/app"}, []string{"emaildb", "emailerr", "dnsdb", "dnsfull", "uridb"})

	hbaText := identSANHBA + identReadExample(t, "pg_hba.conf")
	identText := identSANIdent + identReadExample(t, "pg_ident.conf")
	w.writeFile("pg_hba.conf", hbaText)
	w.writeFile("pg_ident.conf", identText)
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatalf("loading the SAN configuration: %v", err)
	}
	w.proxy.Reload(rt)
	var warnings []string
	for _, w := range rt.Warnings {
		warnings = append(warnings, w.Error())
	}
	if n := strings.Count(strings.Join(warnings, "\n"), "is a pgcertgate extension that PostgreSQL refuses"); n != 7 {
		t.Errorf("%d extension warnings, want 7 (5 SAN lines and the example's 2):\n%s", n, strings.Join(warnings, "\n"))
	}

	t.Run("PostgreSQL refuses clientname=SAN-*", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := w.cluster.WriteHBA(localTrust + hbaText); err != nil {
			t.Fatal(err)
		}
		// PostgreSQL 15 logs "invalid value for clientname" but leaves
		// pg_hba_file_rules.error NULL for it (parse_hba_auth_opt sets no
		// err_msg there), so Reload's view-based check cannot see it:
		// read the server log instead.
		if err := w.cluster.Reload(ctx); err != nil {
			var cfgErr *pgcluster.ConfigError
			if !errors.As(err, &cfgErr) {
				t.Fatal(err)
			}
		}
		for _, want := range []string{`invalid value for clientname: "SAN-email"`, `invalid value for clientname: "SAN-DNS"`,
			`invalid value for clientname: "SAN-URI"`, "pg_hba.conf was not reloaded"} {
			identWaitPGLog(t, w, want)
		}
	})

	t.Run("check flags the extension lines", func(t *testing.T) {
		cmd := exec.Command(pgcertgateBinary(t), "check", "--config", w.cfgPath)
		cmd.Env = cleanEnv()
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("check: %v\n%s%s", err, stdout.String(), stderr.String())
		}
		hbaPath := filepath.Join(w.dir, "pg_hba.conf")
		for i, line := range strings.Split(hbaText, "\n") {
			v, ok := identClientNameExtension(line)
			want := "warning: " + hbaPath + ":" + strconv.Itoa(i+1) + ": clientname=" + v + " is a pgcertgate extension that PostgreSQL refuses"
			if ok != strings.Contains(stderr.String(), want) {
				t.Errorf("line %d %q: warning present = %v, want %v\nstderr:\n%s", i+1, line, !ok, ok, stderr.String())
			}
		}
	})

	certFailed := func(u string) string { return `FATAL certificate authentication failed for user "` + u + `"` }
	for _, tc := range []struct {
		name string
		conn conn
		want string
	}{
		// SAN-email: each rfc822Name in order; the first the map accepts wins.
		{"email: a later SAN matches", conn{user: "alice", database: "emaildb", cert: "email"}, "ok as alice"},
		{"email: every SAN is tried", conn{user: "bob", database: "emaildb", cert: "email"}, "ok as bob"},
		{"email: the CN is not a SAN", conn{user: "svc-email", database: "emaildb", cert: "email"}, certFailed("svc-email")},
		{"email: a SAN that stops the scan, then the next SAN", conn{user: "alice", database: "emailerr", cert: "email"}, "ok as alice"},
		{"email: no email SAN at all", conn{user: "alice", database: "emaildb", cert: "alice"}, certFailed("alice")},
		// SAN-DNS.
		{"DNS: the second SAN through the map", conn{user: "db1", database: "dnsdb", cert: "dns"}, "ok as db1"},
		{"DNS: the first SAN does not match the map", conn{user: "x", database: "dnsdb", cert: "dns"}, certFailed("x")},
		{"DNS, verify-full without map: first SAN", conn{user: "x.other.org", database: "dnsfull", cert: "dns"}, "ok as x.other.org"},
		{"DNS, verify-full without map: second SAN", conn{user: "db1.svc.example.org", database: "dnsfull", cert: "dns"}, "ok as db1.svc.example.org"},
		{"DNS, verify-full without map: no match", conn{user: "db1", database: "dnsfull", cert: "dns"}, `FATAL "trust" authentication failed for user "db1"`},
		// SAN-URI without a map: the whole URI is the user name.
		{"URI, no map: the SPIFFE ID as role", conn{user: "spiffe://prod.example.org/ns/payments/sa/app", database: "uridb", cert: "spiffe"}, "ok as spiffe://prod.example.org/ns/payments/sa/app"},
		// The SPIFFE example (testdata/examples/spiffe).
		{"SPIFFE: namespace becomes the role", conn{user: "payments", database: "postgres", cert: "spiffe"}, "ok as payments"},
		{"SPIFFE: another role", conn{user: "billing", database: "postgres", cert: "spiffe"}, certFailed("billing")},
		{"SPIFFE: the second URI SAN", conn{user: "billing", database: "postgres", cert: "spiffe-2nd"}, "ok as billing"},
		{"SPIFFE: another trust domain", conn{user: "payments", database: "postgres", cert: "spiffe-td"}, certFailed("payments")},
		{"SPIFFE: another service account", conn{user: "payments", database: "postgres", cert: "spiffe-sa"}, certFailed("payments")},
		{"SPIFFE: a longer path", conn{user: "payments", database: "postgres", cert: "spiffe-deep"}, certFailed("payments")},
		{"SPIFFE: exact ID line", conn{user: "payments", database: "postgres", cert: "spiffe-ops"}, "ok as payments"},
		{"SPIFFE: no URI SAN", conn{user: "alice", database: "postgres", cert: "alice"}, certFailed("alice")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := identPsql(t, w, proxy, tc.conn)
			got := o.outcome
			if got != tc.want {
				t.Errorf("psql: got %q, want %q (%s)", got, tc.want, o.out)
			}
		})
	}
	// The audit event names the identity that was accepted.
	if log := w.logBuf.String(); !strings.Contains(log, `cert_identity=spiffe://prod.example.org/ns/billing/sa/app`) {
		t.Errorf("pgcertgate's log does not name the SPIFFE ID")
	}
}

// identClientNameExtension returns the clientname= value of an hba line
// when it is a SAN extension.
func identClientNameExtension(line string) (string, bool) {
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return "", false
	}
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "clientname="); ok && strings.HasPrefix(v, "SAN-") {
			return v, true
		}
	}
	return "", false
}

// identWaitPGLog waits until want appears in PostgreSQL's log. The
// postmaster logs reload errors after pg_conf_load_time has moved on, so
// this polls with a deadline.
func identWaitPGLog(t *testing.T, w *world, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		log, err := w.cluster.Log()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(log, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("PostgreSQL's log lacks %q; tail:\n%s", want, identTail(log, 15))
			return
		}
		// Re-reading the log the server appends to.
		time.Sleep(10 * time.Millisecond)
	}
}
