package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSessions stands in for the server's live sessions.
type fakeSessions struct {
	mu         sync.Mutex
	list       []SessionInfo
	terminated []uint64
}

func (f *fakeSessions) Sessions() []SessionInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]SessionInfo(nil), f.list...)
}

func (f *fakeSessions) Terminate(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.list {
		if s.ID == id {
			f.terminated = append(f.terminated, id)
			f.list = append(f.list[:i], f.list[i+1:]...)
			return nil
		}
	}
	return ErrNoSession
}

const testToken = "s3cret-token-0123456789"

func apiServer(t *testing.T, token []byte) (*httptest.Server, *Monitor, *fakeSessions) {
	t.Helper()
	m := NewMonitor(MonitorOptions{})
	fs := &fakeSessions{list: []SessionInfo{{ID: 7, User: "alice", Database: "app", Identity: "alice", Client: "192.0.2.1", Start: time.Now().Add(-time.Minute), BytesIn: 10, BytesOut: 20, BackendPID: 4242}}}
	s := New(Options{Token: token, Monitor: m, Sessions: fs})
	s.SetConfig(ConfigInfo{Files: []string{"/nonexistent/pgcertgate.toml"}, LoadedAt: time.Now()})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, m, fs
}

func do(t *testing.T, method, u string, set func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if set != nil {
		set(req)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, b.String()
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func TestAPIAuth(t *testing.T) {
	guarded := []struct{ method, path string }{
		{"GET", "/api/logins"}, {"GET", "/api/certificates"}, {"GET", "/api/sessions"},
		{"POST", "/api/sessions/7/terminate"}, {"GET", "/"},
	}
	t.Run("without token_file the API and page are off", func(t *testing.T) {
		ts, _, fs := apiServer(t, nil)
		for _, g := range guarded {
			if resp, _ := do(t, g.method, ts.URL+g.path, bearer(testToken)); resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", g.method, g.path, resp.StatusCode)
			}
		}
		for _, open := range []string{"/metrics", "/healthz", "/readyz"} {
			if resp, _ := do(t, "GET", ts.URL+open, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %d, want 200", open, resp.StatusCode)
			}
		}
		if len(fs.terminated) != 0 {
			t.Errorf("terminated %v without a token", fs.terminated)
		}
	})
	t.Run("with a token", func(t *testing.T) {
		ts, _, fs := apiServer(t, []byte(testToken))
		for _, tc := range []struct {
			name string
			set  func(*http.Request)
			want int
		}{
			{"none", nil, 401},
			{"wrong bearer", bearer("s3cret-token-0123456780"), 401},
			{"prefix of the token", bearer(testToken[:10]), 401},
			{"token plus more", bearer(testToken + "x"), 401},
			{"basic with the wrong password", func(r *http.Request) { r.SetBasicAuth("admin", "nope") }, 401},
			{"bearer", bearer(testToken), 200},
			{"bearer, any case", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+testToken) }, 200},
			{"basic, token as password", func(r *http.Request) { r.SetBasicAuth("anyone", testToken) }, 200},
		} {
			for _, g := range guarded {
				if g.method == "POST" {
					continue
				}
				resp, _ := do(t, g.method, ts.URL+g.path, tc.set)
				if resp.StatusCode != tc.want {
					t.Errorf("%s: %s %s: %d, want %d", tc.name, g.method, g.path, resp.StatusCode, tc.want)
				}
				if tc.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
					t.Errorf("%s: %s: no Basic challenge for a browser", tc.name, g.path)
				}
			}
		}
		for _, open := range []string{"/metrics", "/healthz", "/readyz"} {
			if resp, _ := do(t, "GET", ts.URL+open, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s without credentials: %d, want 200", open, resp.StatusCode)
			}
		}
		// A page on another site posting with the browser's Basic
		// credentials is refused.
		resp, _ := do(t, "POST", ts.URL+"/api/sessions/7/terminate", func(r *http.Request) {
			r.SetBasicAuth("admin", testToken)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			r.Header.Set("Origin", "https://evil.example")
		})
		if resp.StatusCode != http.StatusForbidden || len(fs.terminated) != 0 {
			t.Errorf("cross-site terminate: %d, terminated %v; want 403 and nothing", resp.StatusCode, fs.terminated)
		}
	})
}

func TestAPIEndpoints(t *testing.T) {
	ts, m, fs := apiServer(t, []byte(testToken))
	now := time.Now()
	m.Record(LoginEvent{Time: now.Add(-2 * time.Second), Client: "192.0.2.1", User: "alice", Database: "app", Identity: "alice",
		Fingerprint: strings.Repeat("ab", 32), HBALine: "/etc/pgcertgate/pg_hba.conf:2", Verdict: "accept", Reason: "authorized", Duration: 3 * time.Millisecond,
		Cert: &CertificateSeen{Fingerprint: strings.Repeat("ab", 32), Subject: "CN=alice", Issuer: "CN=root", SANs: []string{"email:alice@example.com"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30*24*time.Hour + time.Hour)}})
	m.Record(LoginEvent{Time: now.Add(-time.Second), Client: "192.0.2.2", User: "bob", Database: "app", Identity: "alice",
		Fingerprint: strings.Repeat("ab", 32), HBALine: "/etc/pgcertgate/pg_hba.conf:2", Verdict: "reject", Reason: "ident_no_match",
		SQLSTATE: "28000", Message: `certificate authentication failed for user "bob"`, Duration: 2 * time.Millisecond,
		Cert: &CertificateSeen{Fingerprint: strings.Repeat("ab", 32), Subject: "CN=alice", Issuer: "CN=root", NotAfter: now.Add(30*24*time.Hour + time.Hour)}})
	m.Record(LoginEvent{Time: now, Client: "192.0.2.3", User: "eve", Database: "app", Verdict: "reject", Reason: "cert_invalid", CertUnverified: true})

	get := func(path string, v any) {
		t.Helper()
		resp, body := do(t, "GET", ts.URL+path, bearer(testToken))
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, resp.Header, body)
		}
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	var logins struct {
		Kept, Capacity int
		Logins         []map[string]any
	}
	get("/api/logins", &logins)
	if logins.Kept != 3 || logins.Capacity != DefaultHistorySize || len(logins.Logins) != 3 || logins.Logins[0]["user"] != "eve" {
		t.Errorf("logins: %+v", logins)
	}
	get("/api/logins?verdict=reject&reason=ident_no_match", &logins)
	if len(logins.Logins) != 1 || logins.Logins[0]["sqlstate"] != "28000" || logins.Logins[0]["message"] != `certificate authentication failed for user "bob"` {
		t.Errorf("filtered logins: %+v", logins.Logins)
	}
	for _, k := range []string{"time", "client", "user", "database", "identity", "fingerprint", "hba_line", "verdict", "reason", "sqlstate", "message", "duration_ms"} {
		if _, ok := logins.Logins[0][k]; !ok {
			t.Errorf("login lacks %q: %v", k, logins.Logins[0])
		}
	}
	get("/api/logins?user=alice", &logins)
	if len(logins.Logins) != 1 {
		t.Errorf("user filter: %+v", logins.Logins)
	}
	if resp, _ := do(t, "GET", ts.URL+"/api/logins?limit=x", bearer(testToken)); resp.StatusCode != 400 {
		t.Errorf("bad limit: %d", resp.StatusCode)
	}

	var certs struct {
		Entries        int
		UnverifiedSeen uint64 `json:"unverified_seen"`
		Certificates   []struct {
			Fingerprint       string
			DaysLeft          int `json:"days_left"`
			Roles             []string
			SANs              []string
			Accepted, Refused int
		}
	}
	get("/api/certificates", &certs)
	if certs.Entries != 1 || certs.UnverifiedSeen != 1 || len(certs.Certificates) != 1 {
		t.Fatalf("certificates: %+v", certs)
	}
	if c := certs.Certificates[0]; c.DaysLeft != 30 || len(c.Roles) != 1 || c.Roles[0] != "alice" || c.Accepted != 1 || c.Refused != 1 || c.SANs[0] != "email:alice@example.com" {
		t.Errorf("certificate: %+v", c)
	}

	var sess struct{ Sessions []map[string]any }
	get("/api/sessions", &sess)
	if len(sess.Sessions) != 1 || sess.Sessions[0]["backend_pid"] != float64(4242) || sess.Sessions[0]["reused"] != false {
		t.Errorf("sessions: %+v", sess)
	}

	if resp, body := do(t, "POST", ts.URL+"/api/sessions/8/terminate", bearer(testToken)); resp.StatusCode != 404 {
		t.Errorf("terminate unknown: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "POST", ts.URL+"/api/sessions/x/terminate", bearer(testToken)); resp.StatusCode != 400 {
		t.Errorf("terminate bad id: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "POST", ts.URL+"/api/sessions/7/terminate", bearer(testToken)); resp.StatusCode != 200 || !strings.Contains(body, `"terminated": 7`) {
		t.Errorf("terminate: %d %s", resp.StatusCode, body)
	}
	if len(fs.terminated) != 1 || fs.terminated[0] != 7 {
		t.Errorf("terminated %v", fs.terminated)
	}
	// The page's form post comes back to the page.
	fs.list = append(fs.list, SessionInfo{ID: 9})
	resp, _ := do(t, "POST", ts.URL+"/api/sessions/9/terminate", func(r *http.Request) {
		r.SetBasicAuth("", testToken)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", ts.URL)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("form terminate: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestPage(t *testing.T) {
	ts, m, _ := apiServer(t, []byte(testToken))
	now := time.Now()
	m.Record(LoginEvent{Time: now, Client: "192.0.2.2", User: "<b>bob</b>", Database: "app", Verdict: "reject", Reason: "ident_no_match",
		SQLSTATE: "28000", Message: `certificate authentication failed for user "<b>bob</b>"`})
	m.Record(LoginEvent{Time: now, Client: "192.0.2.1", User: "alice", Database: "app", Verdict: "accept", Reason: "authorized",
		Cert: &CertificateSeen{Fingerprint: strings.Repeat("cd", 32), Subject: "CN=alice", Issuer: "CN=root", NotAfter: now.Add(3 * 24 * time.Hour)}})
	resp, body := do(t, "GET", ts.URL+"/", func(r *http.Request) { r.SetBasicAuth("admin", testToken) })
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %v", resp.StatusCode, resp.Header)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`<tr class="session"><td class="num">7</td><td>alice</td>`,
		`<tr class="fail">`,
		`<td class="reason">ident_no_match</td>`,
		`&lt;b&gt;bob&lt;/b&gt;`, // escaped, never markup
		`<td class="num soon">2</td><td>CN=alice</td>`,
		`/nonexistent/pgcertgate.toml`,
		`action="/api/sessions/7/terminate"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for _, never := range []string{"<b>bob", "<script", "http://", "https://", "<link"} {
		if strings.Contains(body, never) {
			t.Errorf("page contains %q", never)
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	if tok, err := LoadToken(write("ok", testToken+"\n", 0o600)); err != nil || string(tok) != testToken {
		t.Errorf("LoadToken: %q, %v", tok, err)
	}
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"world": {testToken, 0o644, "accessible by others"},
		"short": {"abc", 0o600, "at least 16"},
		"space": {"abcdefgh ijklmnopq", 0o600, "printable ASCII"},
	} {
		if _, err := LoadToken(write(name, tc.content, tc.mode)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
