package identmap

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/golden/*.txt")

// TestGolden runs the data-driven files in testdata/golden. Each block is
//
//	directive args...
//	input lines (may be empty)
//	----
//	expected output lines
//	(blank line)
//
// Directives:
//
//	file NAME            the input becomes file NAME (relative to /etc)
//	load NAME            Load it; output is Map.String(), warnings, or the errors
//	check MAP USER SYS   Check against the last loaded map; args may be
//	                     Go-quoted; an optional members=user:role,… gives the
//	                     RoleChecker, roles=nil passes none
//
// An unknown directive fails the test: a typo must not pass silently.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) { runGolden(t, path) })
	}
}

type goldenBlock struct {
	comments []string // comment and blank lines before the block
	line     int
	cmd      string
	input    []string
	expected []string
}

func readGolden(t *testing.T, path string) (blocks []goldenBlock, trailer []string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var cur *goldenBlock
	state := 0 // 0 between blocks, 1 input, 2 expected
	for ln := 1; sc.Scan(); ln++ {
		l := sc.Text()
		switch state {
		case 0:
			if l == "" || strings.HasPrefix(l, "#") {
				trailer = append(trailer, l)
				continue
			}
			blocks = append(blocks, goldenBlock{comments: trailer, line: ln, cmd: l})
			trailer = nil
			cur = &blocks[len(blocks)-1]
			state = 1
		case 1:
			if l == "----" {
				state = 2
				continue
			}
			cur.input = append(cur.input, l)
		case 2:
			if l == "" {
				state = 0
				continue
			}
			cur.expected = append(cur.expected, l)
		}
	}
	if state == 1 {
		t.Fatalf("%s: block at line %d has no ----", path, cur.line)
	}
	return blocks, trailer
}

func runGolden(t *testing.T, path string) {
	blocks, trailer := readGolden(t, path)
	fsys := fstest.MapFS{}
	var m *Map
	for i := range blocks {
		b := &blocks[i]
		args := splitArgs(t, b.cmd)
		var out []string
		switch args[0] {
		case "file":
			if len(args) != 2 {
				t.Fatalf("line %d: file NAME", b.line)
			}
			content := strings.Join(b.input, "\n")
			if len(b.input) > 0 {
				content += "\n"
			}
			fsys["etc/"+args[1]] = &fstest.MapFile{Data: []byte(content)}
		case "load":
			if len(args) != 2 {
				t.Fatalf("line %d: load NAME", b.line)
			}
			var err error
			m, err = Load("/etc/"+args[1], authfile.ReadOptions{FS: authfile.NewFS(fsys)})
			if err != nil {
				out = append(out, strings.Split(err.Error(), "\n")...)
				m = nil
				break
			}
			if s := strings.TrimSuffix(m.String(), "\n"); s != "" {
				out = append(out, strings.Split(s, "\n")...)
			} else {
				out = append(out, "(no entries)")
			}
			for _, w := range m.Warnings {
				out = append(out, "warning: "+w.Error())
			}
		case "check":
			if len(args) < 4 {
				t.Fatalf("line %d: check MAP USER SYSTEM [members=...]", b.line)
			}
			if m == nil {
				t.Fatalf("line %d: check without a loaded map", b.line)
			}
			var roles RoleChecker = fakeRoles{}
			for _, opt := range args[4:] {
				switch {
				case strings.HasPrefix(opt, "members="):
					fr := fakeRoles{}
					for _, pair := range strings.Split(strings.TrimPrefix(opt, "members="), ",") {
						fr[pair] = true
					}
					roles = fr
				case opt == "roles=nil":
					roles = nil
				case opt == "roles=error":
					roles = errRoles{}
				default:
					t.Fatalf("line %d: unknown check option %q", b.line, opt)
				}
			}
			r, err := m.Check(context.Background(), args[1], args[2], args[3], roles)
			switch {
			case err != nil:
				out = append(out, "error: "+err.Error())
			case r.Matched && r.Entry != nil:
				out = append(out, fmt.Sprintf("matched %s:%d: %s", r.Entry.File, r.Entry.Line, r.Entry))
			case r.Matched:
				out = append(out, "matched")
			case r.Entry != nil:
				out = append(out, fmt.Sprintf("stopped at %s:%d: %s", r.Entry.File, r.Entry.Line, r.LogMessage))
			default:
				out = append(out, "no match: "+r.LogMessage)
			}
		default:
			t.Fatalf("%s:%d: unknown directive %q", path, b.line, args[0])
		}
		if *update {
			b.expected = out
			continue
		}
		if strings.Join(out, "\n") != strings.Join(b.expected, "\n") {
			t.Errorf("%s:%d: %s\n got:\n%s\nwant:\n%s", path, b.line, b.cmd,
				strings.Join(out, "\n"), strings.Join(b.expected, "\n"))
		}
	}
	if *update {
		var sb strings.Builder
		for i, b := range blocks {
			for j, l := range b.comments {
				if i > 0 && j == 0 && l == "" {
					continue // the blank line that ended the previous block
				}
				sb.WriteString(l + "\n")
			}
			sb.WriteString(b.cmd + "\n")
			for _, l := range b.input {
				sb.WriteString(l + "\n")
			}
			sb.WriteString("----\n")
			for _, l := range b.expected {
				sb.WriteString(l + "\n")
			}
			sb.WriteString("\n")
		}
		for _, l := range trailer {
			sb.WriteString(l + "\n")
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// splitArgs splits a directive line on spaces; an argument starting with
// a double quote is a Go-quoted string.
func splitArgs(t *testing.T, s string) []string {
	var args []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				t.Fatalf("bad quoted argument in %q", s)
			}
			v, _ := strconv.Unquote(q)
			args = append(args, v)
			s = s[len(q):]
			continue
		}
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			i = len(s)
		}
		args = append(args, s[:i])
		s = s[i:]
	}
	return args
}

// fakeRoles holds "user:role" memberships.
type fakeRoles map[string]bool

func (f fakeRoles) IsMember(_ context.Context, user, role string) (bool, error) {
	return f[user+":"+role], nil
}

type errRoles struct{}

func (errRoles) IsMember(context.Context, string, string) (bool, error) {
	return false, errors.New("catalog unavailable")
}
