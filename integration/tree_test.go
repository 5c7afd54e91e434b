package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxTrackedSize bounds a tracked file: generated tables and recorded
// test data are text and well below it; anything larger is an artefact.
const maxTrackedSize = 1 << 20

// TestTrackedFiles refuses a tree that tracks a build artefact: an
// executable or object file (as file(1) sees it), or any file over 1 MiB.
func TestTrackedFiles(t *testing.T) {
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v (the tests run from a git checkout)", err)
	}
	root := strings.TrimSpace(string(top))
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var files []string
	for _, f := range bytes.Split(out, []byte{0}) {
		if len(f) == 0 {
			continue
		}
		path := filepath.Join(root, string(f))
		fi, err := os.Lstat(path)
		if err != nil {
			continue // deleted in the work tree, not yet committed
		}
		if fi.Mode().IsRegular() {
			files = append(files, path)
			if fi.Size() > maxTrackedSize {
				t.Errorf("%s: %d bytes, over the %d-byte limit for a tracked file", f, fi.Size(), maxTrackedSize)
			}
		}
	}
	for _, bad := range binaryFiles(t, files) {
		t.Errorf("%s is a binary (%s): build artefacts are not tracked", bad[0], bad[1])
	}
}

// binaryFiles returns the files file(1) reports as executables, shared
// libraries or object code, with their MIME types.
func binaryFiles(t *testing.T, files []string) [][2]string {
	t.Helper()
	if _, err := exec.LookPath("file"); err != nil {
		t.Fatal("file(1) is missing: install Debian's file package (make test does, as root)")
	}
	var found [][2]string
	for len(files) > 0 {
		n := min(len(files), 500)
		out, err := exec.Command("file", append([]string{"--mime-type", "--no-pad", "--separator", "\t"}, files[:n]...)...).Output()
		if err != nil {
			t.Fatalf("file: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			name, mime, ok := strings.Cut(line, "\t")
			if !ok {
				t.Fatalf("file: unexpected line %q", line)
			}
			mime = strings.TrimSpace(mime)
			switch mime {
			case "application/x-executable", "application/x-pie-executable", "application/x-sharedlib",
				"application/x-object", "application/x-mach-binary", "application/x-dosexec",
				"application/x-coredump", "application/x-archive":
				found = append(found, [2]string{name, mime})
			}
		}
		files = files[n:]
	}
	return found
}
