package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAdminBoundsReload runs `pgcertgate serve` with small [admin]
// login_history_size and certificate_inventory_size, checks that the API
// keeps only that many, and that a reload resizes both, keeping the
// newest, or, when invalid, is refused with the key's file:line.
func TestAdminBoundsReload(t *testing.T) {
	w := sessionWorld(t)
	port, adminPort := freePort(t), freePort(t)
	tokenFile := filepath.Join(w.dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(w.dir, "bounds.toml")
	writeConfig := func(bounds string) {
		t.Helper()
		child := strings.Replace(string(base), "port = 6432", fmt.Sprintf("port = %d", port), 1) +
			fmt.Sprintf("\n[admin]\nlisten_address = \"127.0.0.1:%d\"\ntoken_file = %q\n%s", adminPort, tokenFile, bounds)
		if err := os.WriteFile(cfgPath, []byte(child), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("login_history_size = 2\ncertificate_inventory_size = 1\n")
	p := startServe(t, cfgPath, nil)
	p.waitLog(t, "admin endpoint listening")
	p.waitLog(t, "listening")
	w.addr = fmt.Sprintf("127.0.0.1:%d", port)
	api := fmt.Sprintf("http://127.0.0.1:%d/api/", adminPort)

	alice := conn{user: "alice", database: "app", cert: "alice"}
	carol := conn{user: "carol", database: "app", cert: "carol-example"}
	carolAsAlice := conn{user: "carol", database: "app", cert: "alice"}
	attempt := func(cs ...conn) {
		t.Helper()
		for _, c := range cs {
			got := w.attempt(proxy, c)
			if want := c.cert != "alice" || c.user == "alice"; got.ok != want {
				t.Fatalf("%s with %s's certificate: %s", c.user, c.cert, got)
			}
		}
	}
	// state reads both endpoints as one line: the history's kept/capacity
	// and reasons newest first, then the inventory's entries/max_entries,
	// evictions and subjects.
	state := func() string {
		t.Helper()
		var logins struct {
			Kept, Capacity int
			Logins         []struct{ Reason string }
		}
		var certs struct {
			Entries    int                        `json:"entries"`
			MaxEntries int                        `json:"max_entries"`
			Evicted    int                        `json:"evicted"`
			Certs      []struct{ Subject string } `json:"certificates"`
		}
		for path, v := range map[string]any{"logins": &logins, "certificates": &certs} {
			code, body := adminGet(t, "GET", api+path, adminToken)
			if err := json.Unmarshal([]byte(body), v); code != 200 || err != nil {
				t.Fatalf("GET /api/%s: %d %v\n%s", path, code, err, body)
			}
		}
		var reasons, subjects []string
		for _, l := range logins.Logins {
			reasons = append(reasons, l.Reason)
		}
		for _, c := range certs.Certs {
			subjects = append(subjects, c.Subject)
		}
		return fmt.Sprintf("logins %d/%d %v; certificates %d/%d evicted %d %v",
			logins.Kept, logins.Capacity, reasons, certs.Entries, certs.MaxEntries, certs.Evicted, subjects)
	}
	// A refused attempt is recorded just after its client is answered:
	// wait for the state, with a deadline.
	expect := func(step, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := state()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s:\n got %s\nwant %s", step, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	reload := func(bounds string) {
		t.Helper()
		writeConfig(bounds)
		p.cmd.Process.Signal(syscall.SIGHUP)
	}

	attempt(alice, carol, carolAsAlice)
	expect("at start", "logins 2/2 [ident_no_match authorized]; certificates 1/1 evicted 2 [CN=alice]")

	reload("login_history_size = 4\ncertificate_inventory_size = 3\n")
	p.waitLog(t, "configuration reloaded")
	p.waitLog(t, "admin history and inventory resized")
	expect("grown", "logins 2/4 [ident_no_match authorized]; certificates 1/3 evicted 2 [CN=alice]")
	attempt(carol, alice)
	expect("grown and filled", "logins 4/4 [authorized authorized ident_no_match authorized]; certificates 2/3 evicted 2 [CN=alice CN=carol@example.com]")

	reload("login_history_size = 0\ncertificate_inventory_size = 1\n")
	line := p.waitLog(t, "configuration file error")
	written, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	keyLine := 1 + strings.Count(string(written[:strings.Index(string(written), "login_history_size")]), "\n")
	if want := fmt.Sprintf("%s:%d: admin.login_history_size: 0 is outside the valid range 1..100000", cfgPath, keyLine); !strings.Contains(line, want) {
		t.Errorf("invalid reload logged %s\nwant it to contain %s", line, want)
	}
	p.waitLog(t, "configuration files were not reloaded")
	expect("invalid reload kept", "logins 4/4 [authorized authorized ident_no_match authorized]; certificates 2/3 evicted 2 [CN=alice CN=carol@example.com]")

	reload("login_history_size = 1\ncertificate_inventory_size = 1\n")
	p.waitLog(t, "admin history and inventory resized")
	// The newest attempt was alice's: her certificate is the most
	// recently seen.
	expect("shrunk", "logins 1/1 [authorized]; certificates 1/1 evicted 3 [CN=alice]")
}
