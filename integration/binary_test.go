package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// pgcertgateBinary builds cmd/pgcertgate once per test run.
func pgcertgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgcg-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pgcertgate")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, "../cmd/pgcertgate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// servedProcess is `pgcertgate serve` running as a child process, with its
// log lines readable one by one.
type servedProcess struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan error
}

func startServe(t *testing.T, cfgPath string, env []string) *servedProcess {
	t.Helper()
	cmd := exec.Command(pgcertgateBinary(t), "serve", "--config", cfgPath)
	cmd.Env = append(cleanEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &servedProcess{cmd: cmd, lines: make(chan string, 1000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitLog reads log lines until one contains want.
func (p *servedProcess) waitLog(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("pgcertgate exited before logging %q", want)
			}
			if strings.Contains(line, want) {
				return line
			}
		case <-deadline:
			t.Fatalf("pgcertgate did not log %q", want)
		}
	}
}

func TestServeBinary(t *testing.T) {
	w := sessionWorld(t)
	// Give the child its own port: rewrite the generated configuration.
	cfgPath, port := w.childConfig(t)
	// The proxy's own environment must not leak into client sessions.
	p := startServe(t, cfgPath, []string{"PGOPTIONS=-c search_path=leaked", "PGAPPNAME=leaked", "PGTZ=Pacific/Chatham"})
	p.waitLog(t, "listening")
	w.addr = fmt.Sprintf("127.0.0.1:%d", port)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := conn{user: "alice", database: "app", cert: "alice"}
	t.Run("environment does not leak", func(t *testing.T) {
		pc, err := w.connect(ctx, proxy, alice)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		res := pc.ExecParams(ctx, "select current_setting('search_path'), current_setting('application_name'), current_setting('TimeZone')", nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		for _, v := range res.Rows[0] {
			if s := string(v); s == "leaked" || s == "Pacific/Chatham" {
				t.Errorf("proxy environment leaked into the session: %q", s)
			}
		}
	})

	t.Run("SIGHUP applies a valid file", func(t *testing.T) {
		if got := w.attempt(proxy, alice); !got.ok {
			t.Fatalf("before reload: %s", got)
		}
		w.writeFile("pg_hba.conf", "hostssl all all 127.0.0.1/32 reject\n")
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(t, "configuration reloaded")
		want := `FATAL 28000 pg_hba.conf rejects connection for host "127.0.0.1", user "alice", database "app", SSL encryption`
		if got := w.attempt(proxy, alice); got.String() != want {
			t.Fatalf("after reload: %s, want %s", got, want)
		}
	})

	t.Run("SIGHUP with a broken file keeps the old rules", func(t *testing.T) {
		w.writeFile("pg_hba.conf", "hostssl all all 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 bogus\n")
		p.cmd.Process.Signal(syscall.SIGHUP)
		line := p.waitLog(t, "configuration file error")
		if !strings.Contains(line, "pg_hba.conf:2: ") || !strings.Contains(line, `invalid authentication method \"bogus\"`) {
			t.Errorf("reload error does not name file:line and PostgreSQL's message: %s", line)
		}
		p.waitLog(t, "configuration files were not reloaded")
		if got := w.attempt(proxy, alice); got.ok || got.code != "28000" {
			t.Fatalf("after failed reload: %s, want the previous reject rule", got)
		}
	})

	t.Run("SIGTERM exits 0", func(t *testing.T) {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.waitLog(t, "shutdown complete")
		for range p.lines {
		}
		if err := <-p.done; err != nil {
			t.Fatalf("exit: %v", err)
		}
		p.done <- nil
	})
}

func TestCheckBinary(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t)
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("server.crt", string(p.server.CertPEM), 0o644)
	write("server.key", string(p.server.KeyPEM), 0o600)
	write("root.crt", string(p.root.CertPEM), 0o644)
	base := `hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
[backend]
dsn = "host=/tmp port=5432"
`
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(pgcertgateBinary(t), args...)
		cmd.Env = cleanEnv()
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}

	write("pgcertgate.toml", base, 0o644)
	write("pg_hba.conf", "# comment\nhostssl all all 127.0.0.1/32 cert map=m\nhost all all ::1/128 scram-sha-256\n", 0o644)
	write("pg_ident.conf", "m /^(.*)$ \\1\n", 0o644)
	out, errOut, code := run("check", "--config", filepath.Join(dir, "pgcertgate.toml"))
	if code != 0 || !strings.Contains(out, "hostssl") {
		t.Fatalf("check of a valid configuration: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "pg_hba.conf:3:") || !strings.Contains(errOut, "scram-sha-256") {
		t.Errorf("no warning naming the line whose method pgcertgate does not perform:\n%s", errOut)
	}

	write("pg_hba.conf", "hostssl all all 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/33 cert\nhost all all 127.0.0.1/32 cert\nfoo all all trust\n", 0o644)
	_, errOut, code = run("check", "--config", filepath.Join(dir, "pgcertgate.toml"))
	hbaPath := filepath.Join(dir, "pg_hba.conf")
	for _, want := range []string{
		hbaPath + `:2: invalid CIDR mask in address "127.0.0.1/33"`,
		hbaPath + `:3: cert authentication is only supported on hostssl connections`,
		hbaPath + `:4: invalid connection type "foo"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
	if code != 1 {
		t.Errorf("check of a broken pg_hba.conf exited %d, want 1", code)
	}

	write("pg_hba.conf", "hostssl all all 127.0.0.1/32 cert\n", 0o644)
	write("pgcertgate.toml", base+"bogus_key = 1\n", 0o644)
	_, errOut, code = run("check", "--config", filepath.Join(dir, "pgcertgate.toml"))
	if want := filepath.Join(dir, "pgcertgate.toml") + ":8: backend.bogus_key: unrecognized configuration parameter\n"; code != 1 || errOut != want {
		t.Errorf("unknown key: exit %d\n%s", code, errOut)
	}

	write("pgcertgate.toml", strings.Replace(base, `ssl_ca_file = "root.crt"`, `ssl_ca_file = "missing.crt"`, 1), 0o644)
	_, errOut, code = run("check", "--config", filepath.Join(dir, "pgcertgate.toml"))
	if code != 1 || !strings.Contains(errOut, "missing.crt") {
		t.Errorf("missing CA file: exit %d\n%s", code, errOut)
	}

	write("pgcertgate.toml", strings.Replace(base, `dsn = "host=/tmp port=5432"`, `dsn = "host=/tmp user=postgres"`, 1), 0o644)
	_, errOut, code = run("check", "--config", filepath.Join(dir, "pgcertgate.toml"))
	if code != 1 || !strings.Contains(errOut, "user, dbname and options come from each client") {
		t.Errorf("dsn with user: exit %d\n%s", code, errOut)
	}

	os.Chmod(filepath.Join(dir, "server.key"), 0o644)
	write("pgcertgate.toml", base, 0o644)
	_, errOut, code = run("check", "--config", filepath.Join(dir, "pgcertgate.toml"))
	if code != 1 || !strings.Contains(errOut, "has group or world access") {
		t.Errorf("world-readable key: exit %d\n%s", code, errOut)
	}

	out, _, code = run("version")
	if code != 0 || !strings.HasPrefix(out, "pgcertgate ") {
		t.Errorf("version: %d %q", code, out)
	}
	_ = io.Discard
}
