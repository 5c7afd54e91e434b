package integration

import (
	"fmt"
	"os"
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
