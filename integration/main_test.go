package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain isolates the tests from the developer's environment: no PG*
// variables (pgconn and libpq read them), and a HOME without
// ~/.postgresql, so that a connection without a client certificate really
// has none.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "PG") {
			os.Unsetenv(name)
		}
	}
	// The go build of the binary and pgcluster's initdb template live in
	// caches under the real HOME; keep them when HOME moves, or every run
	// rebuilds from nothing.
	if out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output(); err == nil {
		vals := strings.Split(strings.TrimSpace(string(out)), "\n")
		for i, name := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
			if i < len(vals) && os.Getenv(name) == "" {
				os.Setenv(name, vals[i])
			}
		}
	}
	if dir, err := os.UserCacheDir(); err == nil && os.Getenv("XDG_CACHE_HOME") == "" {
		os.Setenv("XDG_CACHE_HOME", dir)
	}
	home, err := os.MkdirTemp("", "pgcg-home")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("HOME", home)
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}
