package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const adminToken = "integration-admin-token-5f0c2a"

// freePort returns a loopback port nothing listens on (closed again).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// adminGet asks the admin endpoint, with the token unless it is "".
func adminGet(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAdminAPIAndPage runs `pgcertgate serve` with the admin API on, opens
// sessions and failed attempts through it, reads every endpoint, loads the
// page in headless Chromium, and terminates a session.
func TestAdminAPIAndPage(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: sessionHBA, ident: sessionIdent})
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE ROLE carol LOGIN", "CREATE DATABASE app OWNER alice")
	port, adminPort := freePort(t), freePort(t)
	tokenFile := filepath.Join(w.dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	child := strings.Replace(string(cfg), "port = 6432", fmt.Sprintf("port = %d", port), 1) +
		fmt.Sprintf("\n[admin]\nlisten_address = \"127.0.0.1:%d\"\ntoken_file = %q\n", adminPort, tokenFile)
	cfgPath := filepath.Join(w.dir, "admin.toml")
	if err := os.WriteFile(cfgPath, []byte(child), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, cfgPath, nil)
	p.waitLog(t, "admin endpoint listening")
	p.waitLog(t, "listening")
	w.addr = fmt.Sprintf("127.0.0.1:%d", port)
	base := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Two live sessions, one refused login, one certificate that fails
	// verification.
	alice, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close(ctx)
	carol, err := w.connect(ctx, proxy, conn{user: "carol", database: "app", cert: "carol-example"})
	if err != nil {
		t.Fatal(err)
	}
	defer carol.Close(ctx)
	mustExec1(t, ctx, carol, "select repeat('x', 100000)")
	if got := w.attempt(proxy, conn{user: "carol", database: "app", cert: "alice"}); got.code != "28000" {
		t.Fatalf("alice as carol: %s", got)
	}
	if got := w.attempt(proxy, conn{user: "alice", database: "app", cert: "expired"}); !got.tlsError {
		t.Fatalf("expired certificate: %s", got)
	}
	show := os.Getenv("TEST_PGCG_SHOW_API") != ""

	t.Run("auth", func(t *testing.T) {
		for _, path := range []string{"/api/logins", "/api/certificates", "/api/sessions", "/"} {
			if code, _ := adminGet(t, "GET", base+path, ""); code != 401 {
				t.Errorf("GET %s without the token: %d, want 401", path, code)
			}
			if code, _ := adminGet(t, "GET", base+path, "wrong-token-wrong-token"); code != 401 {
				t.Errorf("GET %s with a wrong token: %d, want 401", path, code)
			}
		}
		for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
			if code, _ := adminGet(t, "GET", base+path, ""); code != 200 {
				t.Errorf("GET %s: %d, want 200 without a token", path, code)
			}
		}
	})

	var sessions struct {
		Sessions []struct {
			ID         uint64
			User       string
			Identity   string
			BackendPID uint32 `json:"backend_pid"`
			BytesIn    int64  `json:"bytes_in"`
			BytesOut   int64  `json:"bytes_out"`
		}
	}
	t.Run("sessions", func(t *testing.T) {
		code, body := adminGet(t, "GET", base+"/api/sessions", adminToken)
		if show {
			t.Logf("GET /api/sessions:\n%s", body)
		}
		if err := json.Unmarshal([]byte(body), &sessions); code != 200 || err != nil {
			t.Fatalf("%d %v\n%s", code, err, body)
		}
		byUser := map[string]uint32{}
		for _, s := range sessions.Sessions {
			byUser[s.User] = s.BackendPID
			if s.User == "carol" && s.BytesOut < 100000 {
				t.Errorf("carol's bytes out %d, want at least the 100000 she read", s.BytesOut)
			}
		}
		if byUser["alice"] != alice.PID() || byUser["carol"] != carol.PID() || len(sessions.Sessions) != 2 {
			t.Errorf("sessions %+v; want alice %d and carol %d", sessions.Sessions, alice.PID(), carol.PID())
		}
	})

	t.Run("logins", func(t *testing.T) {
		code, body := adminGet(t, "GET", base+"/api/logins?verdict=reject", adminToken)
		if show {
			t.Logf("GET /api/logins?verdict=reject:\n%s", body)
		}
		var logins struct {
			Logins []struct{ User, Reason, SQLSTATE, Message, Identity string }
		}
		if err := json.Unmarshal([]byte(body), &logins); code != 200 || err != nil {
			t.Fatalf("%d %v\n%s", code, err, body)
		}
		reasons := map[string]bool{}
		for _, l := range logins.Logins {
			reasons[l.Reason] = true
			if l.Reason == "ident_no_match" && (l.SQLSTATE != "28000" || l.Message != `certificate authentication failed for user "carol"` || l.Identity != "alice") {
				t.Errorf("ident_no_match event: %+v", l)
			}
		}
		if !reasons["ident_no_match"] || !reasons["cert_invalid"] {
			t.Errorf("reject reasons %v, want ident_no_match and cert_invalid\n%s", reasons, body)
		}
	})

	t.Run("certificates", func(t *testing.T) {
		code, body := adminGet(t, "GET", base+"/api/certificates", adminToken)
		if show {
			t.Logf("GET /api/certificates:\n%s", body)
		}
		var certs struct {
			Unverified   int `json:"unverified_seen"`
			Certificates []struct {
				Fingerprint       string
				Subject           string
				DaysLeft          int `json:"days_left"`
				Roles             []string
				Accepted, Refused int
			}
		}
		if err := json.Unmarshal([]byte(body), &certs); code != 200 || err != nil {
			t.Fatalf("%d %v\n%s", code, err, body)
		}
		got := map[string]string{}
		for _, c := range certs.Certificates {
			got[c.Subject] = fmt.Sprintf("%v acc=%d ref=%d", c.Roles, c.Accepted, c.Refused)
			if c.DaysLeft < 300 {
				t.Errorf("%s: days_left %d", c.Subject, c.DaysLeft)
			}
		}
		if got["CN=alice"] != "[alice] acc=1 ref=1" || got["CN=carol@example.com"] != "[carol] acc=1 ref=0" || certs.Unverified < 1 || len(got) != 2 {
			t.Errorf("inventory %v, unverified %d", got, certs.Unverified)
		}
		_, metrics := adminGet(t, "GET", base+"/metrics", "")
		for _, m := range []string{"pgcertgate_client_cert_soonest_not_after_timestamp_seconds ", "pgcertgate_client_cert_days_to_expiry_count 2"} {
			if !strings.Contains(metrics, m) {
				t.Errorf("/metrics lacks %s", m)
			}
		}
	})

	t.Run("page in headless Chromium", func(t *testing.T) {
		dir := t.TempDir()
		shot := filepath.Join(dir, "admin-page.png")
		url := fmt.Sprintf("http://admin:%s@127.0.0.1:%d/", adminToken, adminPort)
		dom := chromium(t, dir, "--dump-dom", url)
		for _, want := range []string{
			`<tr class="session"><td class="num">`, "<td>alice</td>", "<td>carol</td>",
			`<tr class="fail">`, `<td class="reason">ident_no_match</td>`, `<td class="reason">cert_invalid</td>`,
			"certificate authentication failed for user", "CN=carol@example.com", " failed verification)",
			filepath.Base(cfgPath),
		} {
			if !strings.Contains(dom, want) {
				t.Errorf("the page as Chromium rendered it lacks %s", want)
			}
		}
		chromium(t, dir, "--screenshot="+shot, "--window-size=1500,1150", "--hide-scrollbars", url)
		info, err := os.Stat(shot)
		if err != nil || info.Size() < 10000 {
			t.Fatalf("screenshot: %v", err)
		}
		if dst := os.Getenv("TEST_PGCG_SCREENSHOT"); dst != "" {
			data, _ := os.ReadFile(shot)
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("terminate", func(t *testing.T) {
		var id uint64
		for _, s := range sessions.Sessions {
			if s.User == "alice" {
				id = s.ID
			}
		}
		// alice waits in a query that sends nothing: the relay must
		// break in between backend messages.
		result := make(chan error, 1)
		go func() {
			_, err := alice.Exec(ctx, "select pg_sleep(60)").ReadAll()
			result <- err
		}()
		w.waitValue(t, "app", fmt.Sprintf("select count(*) from pg_stat_activity where pid = %d and query like 'select pg_sleep%%' and state = 'active'", alice.PID()), "1", 10*time.Second)
		code, body := adminGet(t, "POST", fmt.Sprintf("%s/api/sessions/%d/terminate", base, id), adminToken)
		if show {
			t.Logf("POST /api/sessions/%d/terminate:\n%s", id, body)
		}
		if code != 200 {
			t.Fatalf("terminate: %d %s", code, body)
		}
		err := <-result
		pg, ok := errors.AsType[*pgconn.PgError](err)
		if !ok || pg.Severity != "FATAL" || pg.Code != "57P01" || pg.Message != "terminating connection due to administrator command" {
			t.Fatalf("alice's query ended with %v, want FATAL 57P01 terminating connection due to administrator command", err)
		}
		// The backend stops too: its query was cancelled.
		w.waitValue(t, "app", fmt.Sprintf("select count(*) from pg_stat_activity where pid = %d", alice.PID()), "0", 10*time.Second)
		// carol's session goes on.
		if got := mustExec1(t, ctx, carol, "select current_user"); got[0] != "carol" {
			t.Errorf("carol: %q", got)
		}
		if code, _ := adminGet(t, "POST", fmt.Sprintf("%s/api/sessions/%d/terminate", base, id), adminToken); code != 404 {
			t.Errorf("terminating it again: %d, want 404", code)
		}
	})
}

// chromium runs Debian's headless Chromium and returns its standard
// output.
func chromium(t *testing.T, dir string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make deps installs Debian's chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--crash-dumps-dir=" + dir}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Env = append(cleanEnv(), "HOME="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}
