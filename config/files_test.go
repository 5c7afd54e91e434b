package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestLoadFilesOnFailure checks what a failed reload can still watch: a
// load refused for a bad pg_hba.conf line lists the file that line's
// neighbour newly includes, so fixing it is noticed; a configuration file
// that does not parse lists nothing, so the files in force stay watched.
func TestLoadFilesOnFailure(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("pg_hba.conf", "include_if_exists new.conf\nbogus\n")
	cfgPath := write("pgcertgate.toml", `hba_file = "pg_hba.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
[backend]
dsn = "host=/tmp"
`)
	rt, files, err := LoadFiles(cfgPath)
	if err == nil || rt != nil {
		t.Fatalf("a bad pg_hba.conf loaded: %v", err)
	}
	var want []string
	for _, name := range []string{"new.conf", "pg_hba.conf", "pgcertgate.toml", "server.crt", "server.key"} {
		want = append(want, filepath.Join(dir, name))
	}
	if !slices.Equal(files, want) {
		t.Errorf("files:\n got %q\nwant %q", files, want)
	}

	write("pgcertgate.toml", "hba_file = \n")
	if _, files, err := LoadFiles(cfgPath); err == nil || files != nil {
		t.Errorf("unparsable configuration: files %q, error %v", files, err)
	}
}
