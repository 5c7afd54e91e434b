package integration

// Operations, what an operator runs and watches the proxy with: the audit
// log, Prometheus metrics and readiness of an in-process server, and
// reload, watch_files and shutdown through the real binary and real
// signals.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgcertgate/pgcertgate/admin"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// opsHBA gives every reason code a line to reach.
const opsHBA = `hostssl app all 127.0.0.1/32 cert map=m
hostssl nomap all 127.0.0.1/32 cert
hostssl rejected all 127.0.0.1/32 reject
hostnossl all all 127.0.0.1/32 reject
`

// opsProxy is an in-process server with a JSON audit log and an admin
// endpoint, in front of a world's PostgreSQL.
type opsProxy struct {
	srv      *pgwire.Server
	addr     string
	log      *syncBuffer
	adminURL string
}

func opsStartProxy(t *testing.T, w *world, mutate func(*config.Config)) *opsProxy {
	t.Helper()
	cfg, err := config.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	rt, err := config.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &opsProxy{log: &syncBuffer{}}
	p.srv = pgwire.New(pgwire.Options{Runtime: rt, Logger: slog.New(slog.NewJSONHandler(p.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- p.srv.Serve(ln) }()
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.srv.Metrics())
	adm := admin.New(admin.Options{Address: "127.0.0.1:0", Gatherer: reg, Target: p.srv})
	if err := adm.Start(); err != nil {
		t.Fatal(err)
	}
	p.adminURL = "http://" + adm.Addr().String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		adm.Shutdown(ctx)
		p.srv.Close()
		<-served
		if t.Failed() {
			t.Logf("proxy log:\n%s", p.log.String())
		}
	})
	return p
}

// opsEvent is one JSON log record.
type opsEvent map[string]any

func (e opsEvent) str(key string) string {
	switch v := e[key].(type) {
	case string:
		return v
	case float64:
		return fmt.Sprint(int64(v))
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// opsEvents parses a JSON log and returns the records whose "event" is kind.
func opsEvents(t *testing.T, log, kind string) []opsEvent {
	t.Helper()
	var out []opsEvent
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if line == "" {
			continue
		}
		var e opsEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if e.str("event") == kind {
			out = append(out, e)
		}
	}
	return out
}

// opsWaitEvents polls the log until it holds n events of kind. The client
// may see its error before the server has written the event.
func opsWaitEvents(t *testing.T, log *syncBuffer, kind string, n int) []opsEvent {
	t.Helper()
	var evs []opsEvent
	waitUntil(t, fmt.Sprintf("%d %q events", n, kind), 20*time.Second, func() bool {
		evs = opsEvents(t, log.String(), kind)
		return len(evs) >= n
	})
	if len(evs) != n {
		t.Fatalf("%d %q events, want %d", len(evs), kind, n)
	}
	return evs
}

func opsWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, newPKI(t), worldOptions{hba: opsHBA, ident: sessionIdent})
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE ROLE bob LOGIN", "CREATE ROLE carol LOGIN", "CREATE DATABASE app OWNER alice")
	return w
}

// TestOpsAuditLogAndMetrics checks the audit log (exactly one auth event
// per connection attempt, with the fields and reason code of each
// outcome, and one session-end event per session), then scrapes /metrics
// for the counters of the same sequence, and /readyz.
func TestOpsAuditLogAndMetrics(t *testing.T) {
	w := opsWorld(t)
	p := opsStartProxy(t, w, nil)
	w.addr = p.addr
	hbaPath := filepath.Join(w.dir, "pg_hba.conf")
	identPath := filepath.Join(w.dir, "pg_ident.conf")
	alice := w.pki.clients["alice"].Cert

	// The accepted session, by hand, to keep its cancel key.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice", extra: "sslnegotiation=direct"})
	if err != nil {
		t.Fatal(err)
	}
	cancelKey := pc.SecretKey()
	if res := pc.ExecParams(ctx, "select repeat('x', 5000)", nil, nil, nil, nil).Read(); res.Err != nil {
		t.Fatal(res.Err)
	}
	pc.Close(ctx)
	auth := opsWaitEvents(t, p.log, "auth", 1)[0]
	fp := sha256.Sum256(alice.Raw)
	for key, want := range map[string]string{
		"msg":            "connection authorized",
		"verdict":        "accept",
		"reason":         "authorized",
		"client":         "127.0.0.1",
		"user":           "alice",
		"database":       "app",
		"tls_version":    "TLSv1.3",
		"alpn":           "postgresql",
		"cert_subject":   "CN=alice",
		"cert_issuer":    "CN=pgcertgate test root,O=PGDG",
		"cert_serial":    alice.SerialNumber.String(),
		"cert_sha256":    hex.EncodeToString(fp[:]),
		"cert_not_after": alice.NotAfter.UTC().Format(time.RFC3339),
		"hba_line":       hbaPath + ":1",
		"hba_method":     "cert",
		"ident_map":      "m",
		"ident_line":     identPath + ":1",
		"cert_identity":  "alice",
	} {
		got := auth.str(key)
		if key == "cert_not_after" {
			if ts, err := time.Parse(time.RFC3339Nano, got); err == nil {
				got = ts.UTC().Format(time.RFC3339)
			}
		}
		if got != want {
			t.Errorf("accept event %s = %q, want %q", key, got, want)
		}
	}
	for _, key := range []string{"time", "tls_cipher", "duration", "conn_id", "client_port", "backend_pid"} {
		if auth.str(key) == "" {
			t.Errorf("accept event lacks %s: %v", key, auth)
		}
	}
	end := opsWaitEvents(t, p.log, "session_end", 1)[0]
	if end.str("conn_id") != auth.str("conn_id") || end.str("user") != "alice" || end.str("database") != "app" ||
		end.str("backend_pid") != auth.str("backend_pid") || end.str("session_duration") == "" {
		t.Errorf("session-end event does not match its auth event:\n%v\n%v", end, auth)
	}
	if in, _ := end["bytes_in"].(float64); in <= 0 {
		t.Errorf("session-end bytes_in = %v", end["bytes_in"])
	}
	if out, _ := end["bytes_out"].(float64); out < 5000 {
		t.Errorf("session-end bytes_out = %v, want at least the 5000-byte row", end["bytes_out"])
	}

	type want struct {
		reason, hbaLine, sqlstate, detail string
	}
	cases := []struct {
		name string
		c    conn
		want want
	}{
		{"no map line for the identity", conn{user: "carol", database: "app", cert: "alice"},
			want{"ident_no_match", hbaPath + ":1", "28000", `no match in usermap "m" for user "carol" authenticated as "alice"`}},
		{"CN is not the user", conn{user: "bob", database: "nomap", cert: "alice"},
			want{"cert_name_mismatch", hbaPath + ":2", "28000", "provided user name (bob) and authenticated user name (alice) do not match"}},
		{"backend refuses", conn{user: "alice", database: "nomap", cert: "alice"},
			want{"backend_refused", hbaPath + ":2", "3D000", ""}},
		{"no client certificate", conn{user: "alice", database: "app", sslmode: "require"},
			want{"no_client_cert", hbaPath + ":1", "28000", ""}},
		{"reject line", conn{user: "alice", database: "rejected", cert: "alice"},
			want{"hba_reject", hbaPath + ":3", "28000", ""}},
		{"plaintext reject line", conn{user: "alice", database: "app", sslmode: "disable"},
			want{"hba_reject", hbaPath + ":4", "28000", ""}},
		{"no line", conn{user: "alice", database: "elsewhere", cert: "alice"},
			want{"no_hba_match", "", "28000", ""}},
		{"expired certificate", conn{user: "alice", database: "app", cert: "expired"},
			want{"cert_invalid", "", "", "certificate has expired"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.c.cert == "expired" {
				// pgx follows a failed TLS connection with a cancel
				// request over a second TLS connection (asyncClose),
				// which is a second attempt; one raw handshake keeps
				// the count exact.
				opsHandshake(t, p.addr, w.pki.clients[tc.c.cert].TLSCertificate())
			} else if got := w.attempt(proxy, tc.c); got.ok {
				t.Fatalf("attempt succeeded")
			}
			e := opsWaitEvents(t, p.log, "auth", i+2)[i+1]
			if e.str("msg") != "connection refused" || e.str("verdict") != "reject" || e.str("reason") != tc.want.reason {
				t.Fatalf("event %s/%s/%s, want connection refused/reject/%s: %v", e.str("msg"), e.str("verdict"), e.str("reason"), tc.want.reason, e)
			}
			if e.str("hba_line") != tc.want.hbaLine {
				t.Errorf("hba_line = %q, want %q", e.str("hba_line"), tc.want.hbaLine)
			}
			if e.str("sqlstate") != tc.want.sqlstate {
				t.Errorf("sqlstate = %q, want %q", e.str("sqlstate"), tc.want.sqlstate)
			}
			if !strings.Contains(e.str("detail")+e.str("tls_error"), tc.want.detail) {
				t.Errorf("detail %q / tls_error %q lacks %q", e.str("detail"), e.str("tls_error"), tc.want.detail)
			}
			if tc.c.cert != "" {
				// Whose certificate it was, verified or not.
				leaf := w.pki.clients[tc.c.cert].Cert
				if e.str("cert_subject") != "CN=alice" || e.str("cert_serial") != leaf.SerialNumber.String() {
					t.Errorf("certificate fields: %q %q", e.str("cert_subject"), e.str("cert_serial"))
				}
			}
			if tc.c.sslmode == "disable" && e.str("tls_version") != "" {
				t.Errorf("plaintext attempt logged a TLS version")
			}
			if e.str("duration") == "" || e.str("conn_id") == "" {
				t.Errorf("event lacks duration or conn_id: %v", e)
			}
		})
	}

	t.Run("backend unavailable", func(t *testing.T) {
		dead, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		deadAddr := dead.Addr().(*net.TCPAddr)
		dead.Close()
		q := opsStartProxy(t, w, func(c *config.Config) {
			c.Backend.DSN = fmt.Sprintf("host=127.0.0.1 port=%d sslmode=disable", deadAddr.Port)
		})
		w.addr = q.addr
		defer func() { w.addr = p.addr }()
		got := w.attempt(proxy, conn{user: "alice", database: "app", cert: "alice"})
		if got.code != "57P03" {
			t.Fatalf("attempt: %s, want 57P03", got)
		}
		e := opsWaitEvents(t, q.log, "auth", 1)[0]
		if e.str("reason") != "backend_unavailable" || !strings.Contains(e.str("detail"), "refused") {
			t.Errorf("event: %v", e)
		}
		code, body := opsGet(t, q.adminURL+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "backend unreachable") {
			t.Errorf("readyz with the backend down: %d %q", code, body)
		}
		if code, _ := opsGet(t, q.adminURL+"/healthz"); code != http.StatusOK {
			t.Errorf("healthz with the backend down: %d, want 200", code)
		}
	})

	t.Run("exactly one auth event per attempt, no secrets", func(t *testing.T) {
		// Close waits for every connection goroutine: nothing can log
		// after it.
		p.srv.Close()
		log := p.log.String()
		if n := len(opsEvents(t, log, "auth")); n != 1+len(cases) {
			t.Errorf("%d auth events for %d connection attempts", n, 1+len(cases))
		}
		if n := len(opsEvents(t, log, "session_end")); n != 1 {
			t.Errorf("%d session-end events for 1 session", n)
		}
		for _, secret := range []string{hex.EncodeToString(cancelKey), base64.StdEncoding.EncodeToString(cancelKey), "PRIVATE KEY", "password"} {
			if strings.Contains(log, secret) {
				t.Errorf("the log contains %q", secret)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		m := opsScrape(t, p.adminURL)
		attempts := 1 + len(cases)
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"pgcertgate_connections_accepted_total", nil, float64(attempts)},
			{"pgcertgate_connections_closed_total", nil, float64(attempts)},
			{"pgcertgate_connections_active", nil, 0},
			{"pgcertgate_sessions_active", nil, 0},
			{"pgcertgate_auth_attempts_total", map[string]string{"verdict": "accept", "reason": "authorized"}, 1},
			{"pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": "hba_reject"}, 2},
			{"pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": "no_hba_match"}, 1},
			{"pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": "ident_no_match"}, 1},
			{"pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": "cert_name_mismatch"}, 1},
			{"pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": "no_client_cert"}, 1},
			{"pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": "backend_refused"}, 1},
			{"pgcertgate_auth_attempts_total", map[string]string{"verdict": "reject", "reason": "cert_invalid"}, 1},
			{"pgcertgate_tls_handshake_failures_total", map[string]string{"cause": "cert_certificate_has_expired"}, 1},
			{"pgcertgate_auth_duration_seconds", map[string]string{"verdict": "accept"}, 1},
			{"pgcertgate_auth_duration_seconds", map[string]string{"verdict": "reject"}, float64(len(cases))},
			{"pgcertgate_backend_connect_duration_seconds", nil, 2},
			{"pgcertgate_server_cert_not_after_timestamp_seconds", nil, float64(w.pki.server.Cert.NotAfter.Unix())},
			{"pgcertgate_ca_cert_not_after_timestamp_seconds", map[string]string{"subject": "CN=pgcertgate test root,O=PGDG"}, float64(w.pki.root.Cert.NotAfter.Unix())},
			{"pgcertgate_ca_cert_not_after_timestamp_seconds", map[string]string{"subject": "CN=pgcertgate test intermediate,O=PGDG"}, float64(w.pki.inter.Cert.NotAfter.Unix())},
		} {
			got, ok := opsValue(m, c.name, c.labels)
			if !ok || got != c.want {
				t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
			}
		}
		for _, dir := range []string{"in", "out"} {
			if v, _ := opsValue(m, "pgcertgate_relayed_bytes_total", map[string]string{"direction": dir}); v <= 0 {
				t.Errorf("relayed bytes %s = %v", dir, v)
			}
		}
		for _, issuer := range []string{"CN=pgcertgate test root,O=PGDG", "CN=pgcertgate test intermediate,O=PGDG"} {
			v, ok := opsValue(m, "pgcertgate_crl_next_update_timestamp_seconds", map[string]string{"issuer": issuer})
			if next := time.Unix(int64(v), 0); !ok || time.Until(next) < 23*time.Hour || time.Until(next) > 25*time.Hour {
				t.Errorf("CRL nextUpdate of %s = %v (found %v), want about a day from now", issuer, next, ok)
			}
		}
		for _, name := range []string{"pgcertgate_reloads_total", "pgcertgate_config_last_reload_successful", "pgcertgate_config_last_reload_success_timestamp_seconds"} {
			if _, ok := m[name]; !ok {
				t.Errorf("no %s", name)
			}
		}
	})

	t.Run("readiness", func(t *testing.T) {
		q := opsStartProxy(t, w, nil)
		if code, body := opsGet(t, q.adminURL+"/readyz"); code != http.StatusOK {
			t.Errorf("readyz: %d %q", code, body)
		}
		// The probe is not a connection attempt through the proxy (and
		// sends PostgreSQL no startup packet: see ProbeBackend).
		if n := len(opsEvents(t, q.log.String(), "auth")); n != 0 {
			t.Errorf("readiness made %d connection attempts through the proxy", n)
		}
		q.srv.Close()
		if code, body := opsGet(t, q.adminURL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not accepting") {
			t.Errorf("readyz after shutdown: %d %q", code, body)
		}
	})
}

// opsGet fetches url and returns the status and body.
func opsGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// opsScrape fetches and parses /metrics.
func opsScrape(t *testing.T, adminURL string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := opsGet(t, adminURL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// opsValue is the value of the metric with (at least) the given labels:
// a counter's or gauge's value, a histogram's sample count.
func opsValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// opsChild is `pgcertgate serve` as a child process, on its own port, with
// an admin endpoint.
type opsChild struct {
	*servedProcess
	addr     string
	adminURL string
}

var opsAddrRE = regexp.MustCompile(`address=(\S+)`)

// opsFreePort returns a port that was free a moment ago.
func opsFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// opsChildConfig writes the world's configuration with a free port, the
// given top-level settings and an admin endpoint, to dir/name, with file
// names made absolute so that the file can live anywhere.
func opsChildConfig(t *testing.T, w *world, dir, name, top string) string {
	t.Helper()
	data, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	for _, f := range []string{"server.crt", "server.key", "root.crt", "root.crl"} {
		cfg = strings.ReplaceAll(cfg, fmt.Sprintf("%q", f), fmt.Sprintf("%q", filepath.Join(w.dir, f)))
	}
	cfg = strings.Replace(cfg, "port = 6432", fmt.Sprintf("port = %d\n%s", opsFreePort(t), top), 1)
	cfg += "\n[admin]\nlisten_address = \"127.0.0.1:0\"\n"
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// opsStartChild starts the binary on cfgPath and waits for its listeners;
// w.addr points at it until the test ends.
func opsStartChild(t *testing.T, w *world, cfgPath string) *opsChild {
	t.Helper()
	c := &opsChild{servedProcess: startServe(t, cfgPath, nil)}
	line := c.waitLog(t, "admin endpoint listening")
	m := opsAddrRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	c.adminURL = "http://" + m[1]
	line = c.waitLog(t, "msg=listening")
	m = opsAddrRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	c.addr = m[1]
	old := w.addr
	w.addr = c.addr
	t.Cleanup(func() { w.addr = old })
	return c
}

// exit waits for the process to end and returns its error (nil: exit 0)
// and how long that took.
func (c *opsChild) exit(t *testing.T, within time.Duration) (error, time.Duration) {
	t.Helper()
	began := time.Now()
	drained := make(chan struct{})
	go func() {
		for range c.lines {
		}
		close(drained)
	}()
	select {
	case err := <-c.done:
		<-drained
		c.done <- err // for startServe's cleanup
		return err, time.Since(began)
	case <-time.After(within):
		t.Fatalf("pgcertgate did not exit within %v", within)
		return nil, 0
	}
}

// opsExec runs SQL on a session and fails the test on error.
func opsExec(t *testing.T, ctx context.Context, pc *pgconn.PgConn, sql string) [][][]byte {
	t.Helper()
	results, err := pc.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(results) == 0 {
		return nil
	}
	return results[len(results)-1].Rows
}

// opsSSLRequest dials addr, sends an SSLRequest, expects 'S', and starts
// TLS with cfg (the handshake is left to the caller).
func opsSSLRequest(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := binary.BigEndian.AppendUint32(nil, 8)
	req = binary.BigEndian.AppendUint32(req, 80877103)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(c, answer[:]); err != nil || answer[0] != 'S' {
		t.Fatalf("SSLRequest answer %q, %v", answer, err)
	}
	return tls.Client(c, cfg)
}

// opsHandshake runs one TLS handshake with a client certificate after an
// SSLRequest, and reads until the server closes.
func opsHandshake(t *testing.T, addr string, cert tls.Certificate) {
	t.Helper()
	tc := opsSSLRequest(t, addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
	if err := tc.Handshake(); err == nil {
		// TLS 1.3: the server judges the certificate after the client's
		// Finished; its alert arrives on the first read.
		var one [1]byte
		if _, err := tc.Read(one[:]); err == nil {
			t.Fatal("the server accepted the certificate")
		}
	}
}

// opsServerCert returns the certificate the server presents, by an
// SSLRequest and a handshake that checks nothing.
func opsServerCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	tc := opsSSLRequest(t, addr, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc.ConnectionState().PeerCertificates[0]
}

// TestOpsReloadKeepsSessions holds one session, in an open transaction,
// across SIGHUPs that change the rules, break the files, and rotate the
// server certificate, and keeps using it throughout.
func TestOpsReloadKeepsSessions(t *testing.T) {
	w := sessionWorld(t)
	child := opsStartChild(t, w, opsChildConfig(t, w, w.dir, "child.toml", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := conn{user: "alice", database: "app", cert: "alice"}
	held, err := w.connect(ctx, proxy, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(ctx)
	opsExec(t, ctx, held, "BEGIN; CREATE TABLE ops_reload (v int); INSERT INTO ops_reload VALUES (1)")
	use := func(v int) {
		t.Helper()
		rows := opsExec(t, ctx, held, fmt.Sprintf("INSERT INTO ops_reload VALUES (%d); SELECT count(*) FROM ops_reload", v))
		if got := string(rows[0][0]); got != fmt.Sprint(v) {
			t.Fatalf("held session sees %s rows, want %d", got, v)
		}
	}
	rejected := `FATAL 28000 pg_hba.conf rejects connection for host "127.0.0.1", user "alice", database "app", SSL encryption`

	t.Run("a valid reload changes the outcome", func(t *testing.T) {
		w.writeFile("pg_hba.conf", "hostssl all all 127.0.0.1/32 reject\n")
		child.cmd.Process.Signal(syscall.SIGHUP)
		child.waitLog(t, "configuration reloaded")
		if got := w.attempt(proxy, alice); got.String() != rejected {
			t.Fatalf("after reload: %s, want %s", got, rejected)
		}
		use(2)
	})

	t.Run("a broken reload changes nothing", func(t *testing.T) {
		w.writeFile("pg_hba.conf", "hostssl all all 127.0.0.1/32 cert map=m\nhostssl all all 127.0.0.1/32 bogus\n")
		w.writeFile("pg_ident.conf", "m alice\n")
		child.cmd.Process.Signal(syscall.SIGHUP)
		var errs []string
		for {
			line := child.waitLog(t, "configuration")
			if strings.Contains(line, "were not reloaded") {
				break
			}
			if strings.Contains(line, "configuration file error") {
				errs = append(errs, line)
			}
		}
		joined := strings.Join(errs, "\n")
		for _, want := range []string{filepath.Join(w.dir, "pg_hba.conf") + ":2: ", filepath.Join(w.dir, "pg_ident.conf") + ":1: "} {
			if !strings.Contains(joined, want) {
				t.Errorf("reload errors do not name %s:\n%s", want, joined)
			}
		}
		if got := w.attempt(proxy, alice); got.String() != rejected {
			t.Fatalf("after a broken reload: %s, want the previous rules (%s)", got, rejected)
		}
		use(3)
	})

	var rotated *x509.Certificate
	t.Run("server certificate rotation", func(t *testing.T) {
		before := opsServerCert(t, child.addr)
		leaf, err := w.pki.root.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if err := leaf.WriteFiles(filepath.Join(w.dir, "server.crt"), filepath.Join(w.dir, "server.key")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(w.dir, "server.key"), 0o600); err != nil {
			t.Fatal(err)
		}
		w.writeFile("pg_hba.conf", sessionHBA)
		w.writeFile("pg_ident.conf", sessionIdent)
		child.cmd.Process.Signal(syscall.SIGHUP)
		child.waitLog(t, "configuration reloaded")
		after := opsServerCert(t, child.addr)
		if after.SerialNumber.Cmp(leaf.Cert.SerialNumber) != 0 || after.SerialNumber.Cmp(before.SerialNumber) == 0 {
			t.Fatalf("new connections see serial %v; old %v, rotated %v", after.SerialNumber, before.SerialNumber, leaf.Cert.SerialNumber)
		}
		if got := w.attempt(proxy, alice); !got.ok {
			t.Fatalf("after rotation: %s", got)
		}
		use(4)
		rotated = leaf.Cert
	})

	t.Run("the held session commits", func(t *testing.T) {
		opsExec(t, ctx, held, "COMMIT")
		other, err := w.connect(ctx, proxy, alice)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close(ctx)
		if rows := opsExec(t, ctx, other, "SELECT count(*) FROM ops_reload"); string(rows[0][0]) != "4" {
			t.Fatalf("after COMMIT another session sees %s rows, want 4", rows[0][0])
		}
	})

	t.Run("metrics count the reloads", func(t *testing.T) {
		m := opsScrape(t, child.adminURL)
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"pgcertgate_reloads_total", map[string]string{"result": "success"}, 2},
			{"pgcertgate_reloads_total", map[string]string{"result": "failure"}, 1},
			{"pgcertgate_config_last_reload_successful", nil, 1},
			{"pgcertgate_server_cert_not_after_timestamp_seconds", nil, float64(rotated.NotAfter.Unix())},
			{"pgcertgate_build_info", nil, 1},
		} {
			if got, ok := opsValue(m, c.name, c.labels); !ok || got != c.want {
				t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
			}
		}
		if _, ok := m["go_goroutines"]; !ok {
			t.Error("no Go runtime metrics")
		}
	})

	held.Close(ctx)
	child.cmd.Process.Signal(syscall.SIGTERM)
	if err, _ := child.exit(t, 30*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// TestOpsWatchFiles updates a ConfigMap-style directory the way kubelet
// does, by swapping the ..data symlink, and expects the new rules to apply
// without a SIGHUP, and a broken update to change nothing.
func TestOpsWatchFiles(t *testing.T) {
	w := sessionWorld(t)
	dir := filepath.Join(w.dir, "configmap")
	version := 0
	publish := func(files map[string]string) {
		t.Helper()
		version++
		v := filepath.Join(dir, fmt.Sprintf("..2026_01_01_00_00_%02d.%d", version, version))
		if err := os.MkdirAll(v, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(v, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(v), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		for name := range files {
			link := filepath.Join(dir, name)
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tomlPath := opsChildConfig(t, w, w.dir, "watch.toml", "watch_files = true")
	toml, err := os.ReadFile(tomlPath)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"pgcertgate.toml": string(toml), "pg_hba.conf": sessionHBA, "pg_ident.conf": sessionIdent}
	publish(files)
	child := opsStartChild(t, w, filepath.Join(dir, "pgcertgate.toml"))
	child.waitLog(t, "watching configuration files for changes")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := conn{user: "alice", database: "app", cert: "alice"}
	held, err := w.connect(ctx, proxy, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(ctx)

	files["pg_hba.conf"] = "hostssl all all 127.0.0.1/32 reject\n"
	publish(files)
	line := child.waitLog(t, "configuration files changed")
	if !strings.Contains(line, filepath.Join(dir, "pg_hba.conf")) {
		t.Errorf("the change does not name pg_hba.conf: %s", line)
	}
	child.waitLog(t, "configuration reloaded")
	want := `FATAL 28000 pg_hba.conf rejects connection for host "127.0.0.1", user "alice", database "app", SSL encryption`
	if got := w.attempt(proxy, alice); got.String() != want {
		t.Fatalf("after the swap: %s, want %s", got, want)
	}
	if rows := opsExec(t, ctx, held, "SELECT current_user"); string(rows[0][0]) != "alice" {
		t.Fatalf("held session: %q", rows)
	}

	files["pg_hba.conf"] = "hostssl all all 127.0.0.1/32 cert\nbogus\n"
	publish(files)
	child.waitLog(t, "configuration files were not reloaded")
	if got := w.attempt(proxy, alice); got.String() != want {
		t.Fatalf("after a broken swap: %s, want the previous rules", got)
	}

	files["pg_hba.conf"] = sessionHBA
	publish(files)
	child.waitLog(t, "configuration reloaded")
	if got := w.attempt(proxy, alice); !got.ok {
		t.Fatalf("after the fix: %s", got)
	}
	if rows := opsExec(t, ctx, held, "SELECT current_user"); string(rows[0][0]) != "alice" {
		t.Fatalf("held session: %q", rows)
	}
	held.Close(ctx)
	child.cmd.Process.Signal(syscall.SIGTERM)
	if err, _ := child.exit(t, 30*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// TestOpsShutdown sends the real signals to the real binary.
func TestOpsShutdown(t *testing.T) {
	w := sessionWorld(t)
	alice := conn{user: "alice", database: "app", cert: "alice"}
	origAddr := w.addr
	// Each subtest has its own deadline; the first also pays for
	// building the binary.
	// start runs a fresh pgcertgate child whose configuration adds
	// extra, and holds one session through it.
	start := func(t *testing.T, name, extra string) (context.Context, *opsChild, *pgconn.PgConn) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		t.Cleanup(cancel)
		child := opsStartChild(t, w, opsChildConfig(t, w, w.dir, name, extra))
		held, err := w.connect(ctx, proxy, alice)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { held.Close(ctx) })
		return ctx, child, held
	}

	t.Run("SIGTERM drains: a transaction commits, new connections are refused", func(t *testing.T) {
		ctx, child, held := start(t, "drain.toml", `shutdown_timeout = "60s"`)
		opsExec(t, ctx, held, "BEGIN; CREATE TABLE ops_drain (v int); INSERT INTO ops_drain VALUES (1)")
		began := time.Now()
		child.cmd.Process.Signal(syscall.SIGTERM)
		child.waitLog(t, "received SIGTERM")
		child.waitLog(t, "stopped accepting connections")
		child.waitLog(t, "waiting for open connections to end")
		if got := w.attempt(proxy, alice); got.ok || !strings.Contains(got.raw, "connection refused") {
			t.Errorf("new connection during the drain: %s (%s), want connection refused", got, got.raw)
		}
		if code, body := opsGet(t, child.adminURL+"/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("readyz during the drain: %d %q, want 503", code, body)
		}
		if code, _ := opsGet(t, child.adminURL+"/healthz"); code != http.StatusOK {
			t.Errorf("healthz during the drain: %d, want 200", code)
		}
		opsExec(t, ctx, held, "INSERT INTO ops_drain VALUES (2); COMMIT")
		held.Close(ctx)
		child.waitLog(t, "all connections have ended")
		child.waitLog(t, "shutdown complete")
		if err, _ := child.exit(t, 30*time.Second); err != nil {
			t.Fatalf("exit: %v", err)
		}
		if took := time.Since(began); took > 30*time.Second {
			t.Errorf("the drain took %v although the session ended", took)
		}
		w.addr = origAddr
		pc, err := w.connect(ctx, proxy, alice)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		if rows := opsExec(t, ctx, pc, "SELECT count(*) FROM ops_drain"); string(rows[0][0]) != "2" {
			t.Fatalf("the transaction committed during the drain left %s rows, want 2", rows[0][0])
		}
	})

	t.Run("SIGTERM drain timeout closes sockets without an injected error", func(t *testing.T) {
		ctx, child, held := start(t, "timeout.toml", `shutdown_timeout = "2s"`)
		// A COPY streaming at full speed: the drain's end cuts it in the
		// middle of a message. The set-returning function sits in the
		// select list, where it streams (in FROM it would be
		// materialised before the first row).
		started := make(chan struct{})
		copyErr := make(chan error, 1)
		go func() {
			_, err := held.CopyTo(ctx, &opsFirstWrite{ch: started},
				"COPY (SELECT generate_series(1, 1000000000), repeat('x', 200)) TO STDOUT")
			copyErr <- err
		}()
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("COPY never started")
		}
		began := time.Now()
		child.cmd.Process.Signal(syscall.SIGTERM)
		child.waitLog(t, "shutdown timeout reached")
		err := <-copyErr
		if err == nil {
			t.Fatal("COPY finished although the drain timed out")
		}
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
			t.Fatalf("the client got an ErrorResponse (%v): nothing may be injected into a relayed stream", pgErr)
		}
		exitErr, _ := child.exit(t, 30*time.Second)
		if exitErr != nil {
			t.Fatalf("exit: %v", exitErr)
		}
		if took := time.Since(began); took < 2*time.Second || took > 20*time.Second {
			t.Errorf("exit %v after SIGTERM with shutdown_timeout 2s", took)
		}
		t.Logf("client saw: %v", err)
	})

	t.Run("SIGINT closes sessions at once", func(t *testing.T) {
		ctx, child, held := start(t, "fast.toml", `shutdown_timeout = "60s"`)
		opsExec(t, ctx, held, "SELECT 1")
		began := time.Now()
		child.cmd.Process.Signal(syscall.SIGINT)
		child.waitLog(t, "received SIGINT: fast shutdown")
		child.waitLog(t, "closing open connections")
		if err, _ := child.exit(t, 30*time.Second); err != nil {
			t.Fatalf("exit: %v", err)
		}
		if took := time.Since(began); took > 20*time.Second {
			t.Errorf("fast shutdown took %v", took)
		}
		if _, err := held.Exec(ctx, "SELECT 1").ReadAll(); err == nil {
			t.Fatal("the session survived SIGINT")
		}
	})

	t.Run("SIGINT cuts a SIGTERM drain short", func(t *testing.T) {
		ctx, child, held := start(t, "escalate.toml", `shutdown_timeout = "60s"`)
		began := time.Now()
		child.cmd.Process.Signal(syscall.SIGTERM)
		child.waitLog(t, "waiting for open connections to end")
		opsExec(t, ctx, held, "SELECT 1")
		child.cmd.Process.Signal(syscall.SIGINT)
		child.waitLog(t, "closing every connection now")
		if err, _ := child.exit(t, 30*time.Second); err != nil {
			t.Fatalf("exit: %v", err)
		}
		if took := time.Since(began); took > 30*time.Second {
			t.Errorf("escalated shutdown took %v", took)
		}
		if _, err := held.Exec(ctx, "SELECT 1").ReadAll(); err == nil {
			t.Fatal("the session survived SIGINT")
		}
	})
}

// opsFirstWrite discards what it is given and closes ch at the first write.
type opsFirstWrite struct {
	once sync.Once
	ch   chan struct{}
}

func (f *opsFirstWrite) Write(p []byte) (int, error) {
	f.once.Do(func() { close(f.ch) })
	return len(p), nil
}
