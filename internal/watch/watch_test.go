package watch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/config"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// settle polls twice: a change fires only once it has held still.
func settle(t *testing.T, w *Watcher) []string {
	t.Helper()
	if got := w.Poll(); got != nil {
		t.Fatalf("first poll after a change fired at once: %v", got)
	}
	return w.Poll()
}

func TestInPlaceEdit(t *testing.T) {
	dir := t.TempDir()
	hba := filepath.Join(dir, "pg_hba.conf")
	write(t, hba, "hostssl all all 127.0.0.1/32 cert\n")
	w := New([]string{hba}, 0)
	if got := w.Poll(); got != nil {
		t.Fatalf("no change, yet %v", got)
	}
	// Same size, same inode: only the modification time tells.
	write(t, hba, "hostssl all all 127.0.0.1/32 trust\n")
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(hba, later, later); err != nil {
		t.Fatal(err)
	}
	if got := settle(t, w); !slices.Equal(got, []string{hba}) {
		t.Fatalf("changed = %v", got)
	}
	if got := w.Poll(); got != nil {
		t.Fatalf("a change fired twice: %v", got)
	}
}

func TestChangeMustHoldStill(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pg_ident.conf")
	write(t, f, "m a a\n")
	w := New([]string{f}, 0)
	write(t, f, "m a a\nm b")
	if got := w.Poll(); got != nil {
		t.Fatalf("fired on a file still being written: %v", got)
	}
	write(t, f, "m a a\nm b b\n")
	if got := w.Poll(); got != nil {
		t.Fatalf("fired while the file was still changing: %v", got)
	}
	if got := w.Poll(); !slices.Equal(got, []string{f}) {
		t.Fatalf("changed = %v", got)
	}
}

// TestKubernetesSymlinkSwap reproduces how kubelet updates a ConfigMap or
// Secret volume: the visible names are symlinks through ..data, and an
// update renames a new ..data symlink over the old one.
func TestKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..2026_01_01_00_00_00.1")
	v2 := filepath.Join(dir, "..2026_01_01_00_01_00.2")
	write(t, filepath.Join(v1, "pg_hba.conf"), "hostssl all all 127.0.0.1/32 cert\n")
	write(t, filepath.Join(v1, "tls.key"), "key-one\n")
	// v2's files have the same size and modification time as v1's: only
	// the symlink target and the inode change.
	write(t, filepath.Join(v2, "pg_hba.conf"), "hostssl all all 127.0.0.1/32 trust\n")
	write(t, filepath.Join(v2, "tls.key"), "key-one\n")
	for _, name := range []string{"pg_hba.conf", "tls.key"} {
		fi, err := os.Stat(filepath.Join(v1, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(v2, name), fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(v1), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, name := range []string{"pg_hba.conf", "tls.key"} {
		p := filepath.Join(dir, name)
		if err := os.Symlink(filepath.Join("..data", name), p); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	w := New(paths, 0)
	if got := w.Poll(); got != nil {
		t.Fatalf("no change, yet %v", got)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(v2), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if got := settle(t, w); !slices.Equal(got, paths) {
		t.Fatalf("changed = %v, want %v", got, paths)
	}
	// kubelet then removes the old directory; nothing watched changes.
	if err := os.RemoveAll(v1); err != nil {
		t.Fatal(err)
	}
	if got := w.Poll(); got != nil {
		t.Fatalf("removing the old version fired: %v", got)
	}
}

func TestPathsFollowIncludes(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "pg_hba.conf"), "include_if_exists extra.conf\ninclude_dir hba.d\nhostssl @dbs.txt all 127.0.0.1/32 cert map=m\n")
	write(t, filepath.Join(dir, "dbs.txt"), "app\n")
	write(t, filepath.Join(dir, "hba.d", "10-ops.conf"), "hostssl all ops 127.0.0.1/32 cert\n")
	write(t, filepath.Join(dir, "pg_ident.conf"), "include ident-more.conf\n")
	write(t, filepath.Join(dir, "ident-more.conf"), "m alice alice\n")
	cfgPath := filepath.Join(dir, "pgcertgate.toml")
	write(t, cfgPath, `hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
ssl_crl_file = "root.crl"
ssl_crl_dir = "crl"
[backend]
dsn = "host=/tmp"
`)
	// The certificates do not exist, so the load fails; it still lists
	// what it read or looked for.
	_, got, err := config.LoadFiles(cfgPath)
	if err == nil {
		t.Fatal("loaded a configuration whose certificates do not exist")
	}
	var want []string
	for _, name := range []string{"dbs.txt", "extra.conf", "hba.d", "hba.d/10-ops.conf", "ident-more.conf", "pg_hba.conf", "pg_ident.conf", "pgcertgate.toml", "root.crl", "root.crt", "server.crt", "server.key"} {
		want = append(want, filepath.Join(dir, name))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("files:\n got %q\nwant %q", got, want)
	}

	// A missing include_if_exists file that appears, and a new file in an
	// include_dir, are changes.
	w := New(got, 0)
	write(t, filepath.Join(dir, "extra.conf"), "hostssl all all 127.0.0.1/32 reject\n")
	write(t, filepath.Join(dir, "hba.d", "20-more.conf"), "hostssl all more 127.0.0.1/32 cert\n")
	if changed := settle(t, w); !slices.Equal(changed, []string{filepath.Join(dir, "extra.conf"), filepath.Join(dir, "hba.d")}) {
		t.Fatalf("changed = %v", changed)
	}

	// SetPaths keeps the baseline of paths it already watched: a change
	// made while a reload ran is still reported.
	write(t, filepath.Join(dir, "dbs.txt"), "app\nother\n")
	_, again, _ := config.LoadFiles(cfgPath)
	w.SetPaths(again)
	if changed := settle(t, w); !slices.Equal(changed, []string{filepath.Join(dir, "dbs.txt")}) {
		t.Fatalf("changed = %v", changed)
	}
}
