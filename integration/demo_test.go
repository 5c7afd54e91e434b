package integration

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// demoPsqlLine is the line the demo prints for the user to paste, as the
// README shows it; group 1 is the connection string.
var demoPsqlLine = regexp.MustCompile(`(?m)^  psql "(host=localhost port=[0-9]+ dbname=demo user=alice sslmode=verify-full sslrootcert=\S+ sslcert=\S+ sslkey=\S+)"$`)

// demoOutput collects the demo's standard output and hands over the
// connection string of the first complete psql line.
type demoOutput struct {
	mu    sync.Mutex
	b     bytes.Buffer
	found chan string // receives the connection string once
	sent  bool
}

func (o *demoOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b.Write(p)
	if m := demoPsqlLine.FindSubmatch(o.b.Bytes()); m != nil && !o.sent {
		o.sent = true
		o.found <- string(m[1])
	}
	return len(p), nil
}

func (o *demoOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// TestDemo runs what `make demo` runs, `pgcertgate demo`, connects with
// the psql line it prints, as a user following the README would, and
// stops it with Ctrl-C (SIGINT), after which it must exit cleanly.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := &demoOutput{found: make(chan string, 1)}
	var stderr syncBuffer
	cmd := exec.CommandContext(ctx, pgcertgateBinary(t), "demo")
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = out, &stderr
	// Wait returns even if a grandchild kept the output open.
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// On an early failure, stop the demo as a user would, so that it
		// removes its PostgreSQL; kill it only if that does not work.
		select {
		case <-exited:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	var conninfo string
	select {
	case conninfo = <-out.found:
	case <-exited:
		t.Fatalf("demo ended early: %v\nstdout:\n%s\nstderr:\n%s", waitErr, out, stderr.String())
	case <-ctx.Done():
		t.Fatalf("no psql line within the deadline\nstdout:\n%s\nstderr:\n%s", out, stderr.String())
	}
	got, err := psql(t, conninfo, "-c", "select current_user")
	if err != nil || strings.TrimSpace(got) != "alice" {
		t.Fatalf("psql with the demo's line: %v\n%s", err, got)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		t.Fatalf("demo did not stop on SIGINT\nstdout:\n%s", out)
	}
	if waitErr != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", waitErr, out, stderr.String())
	}
}
