package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// HAProxy (Debian's haproxy, installed by make deps) in TCP mode with
// send-proxy-v2, in front of pgcertgate: the configuration is
// deploy/haproxy/haproxy.cfg, with only its addresses changed.

const haproxyDeployCfg = "../deploy/haproxy/haproxy.cfg"

func haproxyBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"haproxy", "/usr/sbin/haproxy"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("haproxy is not installed: run make deps")
	return ""
}

// haproxyBackend is one pgcertgate replica as HAProxy sees it.
type haproxyBackend struct {
	addr      string // client port, host:port
	adminPort int    // the admin endpoint, for the /readyz health check
}

// renderHAProxyCfg rewrites the deploy file for a test: the front end on
// bind, one server line per replica. Everything else (mode, timeouts,
// send-proxy-v2, the health check) is the file's.
func renderHAProxyCfg(t *testing.T, bind string, backends []haproxyBackend) string {
	t.Helper()
	data, err := os.ReadFile(haproxyDeployCfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "bind":
			line = "\tbind " + bind
		case len(f) > 0 && f[0] == "server":
			continue
		}
		out = append(out, line)
	}
	for i, b := range backends {
		out = append(out, fmt.Sprintf("\tserver pgcertgate-%d %s port %d", i, b.addr, b.adminPort))
	}
	return strings.Join(out, "\n") + "\n"
}

// haproxyProc is HAProxy running in the foreground.
type haproxyProc struct {
	log    *syncBuffer
	exited chan struct{}
}

// startHAProxy runs HAProxy in the foreground on cfg until the test ends.
func startHAProxy(t *testing.T, cfg string) *haproxyProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := exec.Command(haproxyBinary(t), "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &haproxyProc{log: log, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-h.exited
		if t.Failed() {
			t.Logf("haproxy log:\n%s", log.String())
		}
	})
	return h
}

// viaBalancer connects through addr from the source address src.
func viaBalancer(ctx context.Context, t *testing.T, w *world, addr, src string, c conn) (*pgconn.PgConn, error) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(w.conninfo(proxy, c))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	cfg.Host = host
	fmt.Sscan(port, &cfg.Port)
	cfg.DialFunc = proxyDial(src, nil, false)
	return pgconn.ConnectConfig(ctx, cfg)
}

// waitBalancerUp waits until HAProxy passes a session through: its first
// health checks may still be running.
func waitBalancerUp(t *testing.T, h *haproxyProc, w *world, addr string, c conn) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pc, err := viaBalancer(ctx, t, w, addr, "127.0.0.3", c)
		if err == nil {
			pc.Close(ctx)
			cancel()
			return
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("no session through HAProxy within 20s: %v", err)
		}
		select {
		case <-h.exited:
			t.Fatalf("haproxy exited:\n%s", h.log.String())
		case <-tick.C:
		}
	}
}

func adminPort(t *testing.T, adminURL string) int {
	t.Helper()
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	var port int
	fmt.Sscan(u.Port(), &port)
	return port
}

func TestHAProxySendProxyV2(t *testing.T) {
	haproxyBinary(t)
	w := newWorld(t, newPKI(t), worldOptions{
		// Only the header can say 127.0.0.3: HAProxy itself connects to
		// pgcertgate from 127.0.0.1.
		hba:         "local all all trust\nhostssl all alice 127.0.0.3/32 cert\n",
		extraTOML:   "proxy_protocol = \"on\"\nproxy_protocol_trusted = [\"127.0.0.1/32\"]",
		backendTOML: "pass_client_identity = true",
	})
	w.setup(t, "CREATE ROLE alice LOGIN")
	p := opsStartProxy(t, w, nil)
	bind := fmt.Sprintf("127.0.0.1:%d", opsFreePort(t))
	h := startHAProxy(t, renderHAProxyCfg(t, bind, []haproxyBackend{{addr: p.addr, adminPort: adminPort(t, p.adminURL)}}))
	alice := conn{user: "alice", cert: "alice"}
	waitBalancerUp(t, h, w, bind, alice)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Run("client address from the header", func(t *testing.T) {
		pc, err := viaBalancer(ctx, t, w, bind, "127.0.0.3", alice)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		rows := opsExec(t, ctx, pc, "SELECT current_setting('pgcertgate.client_addr')")
		if got := string(rows[0][0]); got != "127.0.0.3" {
			t.Fatalf("backend sees client_addr %q, want 127.0.0.3", got)
		}
		// The audit event names the client's port, as seen through the
		// balancer, and the balancer as proxy_peer.
		local := fmt.Sprint(pc.Conn().LocalAddr().(*net.TCPAddr).Port)
		if tc, ok := pc.Conn().(interface{ NetConn() net.Conn }); ok {
			local = fmt.Sprint(tc.NetConn().LocalAddr().(*net.TCPAddr).Port)
		}
		found := false
		for _, e := range opsEvents(t, p.log.String(), "auth") {
			if e.str("client") == "127.0.0.3" && fmt.Sprint(e["client_port"]) == local && strings.HasPrefix(e.str("proxy_peer"), "127.0.0.1:") {
				found = true
			}
		}
		if !found {
			t.Fatalf("no auth event with client=127.0.0.3 client_port=%s proxy_peer=127.0.0.1:…:\n%s", local, p.log.String())
		}
	})
	t.Run("refused by the header's address", func(t *testing.T) {
		_, err := viaBalancer(ctx, t, w, bind, "127.0.0.4", alice)
		want := `FATAL 28000 no pg_hba.conf entry for host "127.0.0.4", user "alice", database "postgres", SSL encryption`
		if got := classify(errOrNil(err)).String(); got != want {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
	t.Run("cancel through the balancer", func(t *testing.T) {
		pc, err := viaBalancer(ctx, t, w, bind, "127.0.0.3", alice)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		res := pc.Exec(ctx, "SELECT pg_sleep(30)")
		began := time.Now()
		// pgconn sends the CancelRequest over a new connection to the
		// same address with the same DialFunc: through HAProxy, with a
		// PROXY header.
		if err := pc.CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = res.ReadAll()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("query ended with %v, want 57014 query_canceled", err)
		}
		if d := time.Since(began); d > 2*time.Second {
			t.Fatalf("cancelled after %v", d)
		}
	})
}

func errOrNil(err error) error {
	if err == nil {
		return errors.New("connected")
	}
	return err
}

// TestOpsDeployHAProxy checks deploy/haproxy/haproxy.cfg as the other
// deploy files are checked: HAProxy itself validates it, and the settings
// pgcertgate relies on are there.
func TestOpsDeployHAProxy(t *testing.T) {
	out, err := exec.Command(haproxyBinary(t), "-c", "-f", haproxyDeployCfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Configuration file is valid") {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	data, err := os.ReadFile(haproxyDeployCfg)
	if err != nil {
		t.Fatal(err)
	}
	// section → directive → its arguments, comments dropped.
	sections := map[string]map[string][]string{}
	var cur string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
			cur = f[0]
			sections[cur] = map[string][]string{}
			continue
		}
		key := f[0]
		if key == "timeout" || key == "option" || key == "http-check" {
			key += " " + f[1]
			f = f[1:]
		}
		sections[cur][key] = append(sections[cur][key], strings.Join(f[1:], " "))
	}
	def, be := sections["defaults"], sections["backend"]
	if def == nil || be == nil {
		t.Fatalf("no defaults or backend section: %v", sections)
	}
	if got := def["mode"]; len(got) != 1 || got[0] != "tcp" {
		t.Errorf("defaults mode %v, want tcp: PostgreSQL is not HTTP", got)
	}
	dur := func(key string) time.Duration {
		v := def[key]
		if len(v) != 1 {
			t.Errorf("defaults lacks %s", key)
			return 0
		}
		d, err := time.ParseDuration(v[0])
		if err != nil {
			t.Errorf("%s %q: %v", key, v[0], err)
		}
		return d
	}
	if d := dur("timeout connect"); d <= 0 || d > 10*time.Second {
		t.Errorf("timeout connect %v, want at most 10s", d)
	}
	for _, k := range []string{"timeout client", "timeout server"} {
		// Sessions idle between transactions; a short timeout cuts them.
		if d := dur(k); d < 10*time.Minute {
			t.Errorf("%s %v, want at least 10m", k, d)
		}
	}
	if d := dur("timeout check"); d <= 0 {
		t.Errorf("timeout check %v", d)
	}
	ds := strings.Join(be["default-server"], " ")
	for _, want := range []string{"send-proxy-v2", "check", "port 9930"} {
		if !regexp.MustCompile(`(^| )` + regexp.QuoteMeta(want) + `( |$)`).MatchString(ds) {
			t.Errorf("default-server %q lacks %q", ds, want)
		}
	}
	if got := be["option httpchk"]; len(got) != 1 || got[0] != "GET /readyz" {
		t.Errorf("option httpchk %v, want GET /readyz", got)
	}
	if len(be["server"]) == 0 {
		t.Error("no server lines")
	}
	for _, s := range be["server"] {
		if strings.Contains(s, "no-send-proxy") {
			t.Errorf("server %q turns the PROXY header off", s)
		}
	}
}
