package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/config"
)

// Include directives and /regex fields are PostgreSQL 16+ (see
// hba/versions_test.go): the PostgreSQL 15 here cannot load them, so these
// tests follow the PostgreSQL 18 documentation
// (https://www.postgresql.org/docs/18/auth-pg-hba-conf.html) and check
// pgcertgate alone, end to end through the proxy. PostgreSQL's pg_hba.conf
// stays a plain reject: only the proxy decides here, and the backend
// trusts its Unix socket.

// hbaIncludeFiles is the proxy's pg_hba.conf and what it includes, by
// path relative to the proxy's directory.
var hbaIncludeFiles = map[string]string{
	"pg_hba.conf": `# 16+ features, read in this order:
include_if_exists missing.conf
include           inc/first.conf
include_dir       conf.d
hostssl /^app_(a|b)$  /^al                                127.0.0.1/32  trust
hostssl app_a         "/^.*nomatch.*$", baduser, /^car.*$ 127.0.0.1/32  trust
hostssl "/^.*p,q$"    all                                 127.0.0.1/32  trust
host    all           all                                 127.0.0.1/32  reject
`,
	// include paths are relative to the including file: inc/first.conf
	// includes ../second.conf, which is beside pg_hba.conf.
	"inc/first.conf": "host db_inc alice 127.0.0.1/32 trust\ninclude ../second.conf\n",
	"second.conf":    "host db_inc bob 127.0.0.1/32 trust\n",
	// include_dir takes *.conf only, sorted by byte value: "B.conf" sorts
	// before "a.conf" (a locale-aware sort would put it after).
	"conf.d/B.conf":        "host db_dir all 127.0.0.1/32 trust\n",
	"conf.d/a.conf":        "host db_dir all 127.0.0.1/32 reject\nhost db_inc carol 127.0.0.1/32 trust\n",
	"conf.d/00-skip.txt":   "host all all 127.0.0.1/32 trust\n",
	"conf.d/.hidden.conf":  "host all all 127.0.0.1/32 trust\n",
	"conf.d/01.conf.saved": "host all all 127.0.0.1/32 trust\n",
}

var hbaIncludeSetup = []string{
	"CREATE ROLE alice LOGIN", "CREATE ROLE albert LOGIN", "CREATE ROLE bob LOGIN", "CREATE ROLE carol LOGIN",
	"CREATE DATABASE app_a", "CREATE DATABASE app_b", "CREATE DATABASE app_c",
	"CREATE DATABASE db_inc", "CREATE DATABASE db_dir", `CREATE DATABASE "p,q"`,
}

func TestHBAIncludesAndRegex(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: "host all all 127.0.0.1/32 reject\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, q := range hbaIncludeSetup {
		if err := w.cluster.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range hbaIncludeFiles {
		p := filepath.Join(w.dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatalf("pgcertgate refused the 16+ file: %v", err)
	}
	w.proxy.Reload(rt)

	t.Run("interpreted rules", func(t *testing.T) {
		// Includes expand in place, in order; each rule keeps its own
		// file and line.
		var got []string
		for _, e := range rt.HBA.Entries {
			rel, _ := filepath.Rel(w.dir, e.File)
			got = append(got, rel+":"+strconv.Itoa(e.Line)+" "+e.String())
		}
		want := []string{
			"inc/first.conf:1 host db_inc alice 127.0.0.1/32 trust",
			"second.conf:1 host db_inc bob 127.0.0.1/32 trust",
			"conf.d/B.conf:1 host db_dir all 127.0.0.1/32 trust",
			"conf.d/a.conf:1 host db_dir all 127.0.0.1/32 reject",
			"conf.d/a.conf:2 host db_inc carol 127.0.0.1/32 trust",
			"pg_hba.conf:5 hostssl /^app_(a|b)$ /^al 127.0.0.1/32 trust",
			`pg_hba.conf:6 hostssl app_a "/^.*nomatch.*$",baduser,/^car.*$ 127.0.0.1/32 trust`,
			`pg_hba.conf:7 hostssl "/^.*p,q$" all 127.0.0.1/32 trust`,
			"pg_hba.conf:8 host all all 127.0.0.1/32 reject",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		var warned bool
		for _, wn := range rt.Warnings {
			if wn.Error() == filepath.Join(w.dir, "pg_hba.conf")+`:2: skipping missing authentication file "`+filepath.Join(w.dir, "missing.conf")+`"` {
				warned = true
			}
		}
		if !warned {
			t.Errorf("no warning for the missing include_if_exists file: %v", rt.Warnings)
		}
	})

	reject := func(user, db string) string { return hbaRej(hbaLo, user, db, hbaSSL) }
	for _, tc := range []struct {
		name string
		conn conn
		want string
	}{
		{"include", conn{user: "alice", database: "db_inc"}, "ok as alice"},
		{"nested include relative to the including file", conn{user: "bob", database: "db_inc"}, "ok as bob"},
		{"include_dir file", conn{user: "carol", database: "db_inc"}, "ok as carol"},
		{"include_dir in byte order: B.conf before a.conf", conn{user: "bob", database: "db_dir"}, "ok as bob"},
		{"include_dir ignores other names", conn{user: "bob", database: "postgres"}, reject("bob", "postgres")},
		{"regex database and user", conn{user: "alice", database: "app_a"}, "ok as alice"},
		{"regex user is a prefix search", conn{user: "albert", database: "app_b"}, "ok as albert"},
		{"regex database anchored", conn{user: "alice", database: "app_c"}, reject("alice", "app_c")},
		{"regex user, no match", conn{user: "bob", database: "app_b"}, reject("bob", "app_b")},
		{"regex list, third token", conn{user: "carol", database: "app_a"}, "ok as carol"},
		{"regex list, no token matches", conn{user: "bob", database: "app_a"}, reject("bob", "app_a")},
		{"quoted regex with a comma", conn{user: "bob", database: "p,q"}, "ok as bob"},
		{"regex lines keep their connection type", conn{user: "alice", database: "app_a", sslmode: "disable"}, hbaRej(hbaLo, "alice", "app_a", hbaPlain)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.conn.sslmode == "" {
				tc.conn.sslmode = "require"
			}
			if got := w.attempt(proxy, tc.conn); got.String() != tc.want {
				t.Errorf("got %q, want %q (raw: %s)", got, tc.want, got.raw)
			}
		})
	}
}
