package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/demo"
)

// TestDemo runs what `make demo` runs and connects with the psql line it
// prints, as a user following the README would.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out syncBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(ctx, demo.Options{Out: &out, Ready: func(c string) { ready <- c }})
	}()
	var conninfo string
	select {
	case conninfo = <-ready:
	case err := <-done:
		t.Fatalf("demo ended early: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `psql "`+conninfo+`"`) {
		t.Fatalf("demo output lacks the psql line:\n%s", out.String())
	}
	got, err := psql(t, conninfo, "-c", "select current_user")
	if err != nil || strings.TrimSpace(got) != demo.User {
		t.Fatalf("psql with the demo's line: %v\n%s", err, got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}
}
