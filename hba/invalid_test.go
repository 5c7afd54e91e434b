package hba

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// invalidCase is one case of testdata/invalid_lines.txt (the format is
// described at the top of that file).
type invalidCase struct {
	name  string
	file  []string
	aux   map[string][]string
	at    string // "pg_hba.conf:N" or "NAME:N"
	err   string
	pg15  string
	flags []string
}

func readInvalidCases(t *testing.T) []invalidCase {
	t.Helper()
	f, err := os.Open("testdata/invalid_lines.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []invalidCase
	var cur *invalidCase
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		dir, arg, _ := strings.Cut(line, " ")
		if dir != "case" && cur == nil {
			t.Fatalf("invalid_lines.txt:%d: %q outside a case", n, dir)
		}
		switch dir {
		case "case":
			cur = &invalidCase{name: arg, aux: map[string][]string{}}
		case "file":
			cur.file = append(cur.file, arg)
		case "aux":
			name, text, _ := strings.Cut(arg, " ")
			cur.aux[name] = append(cur.aux[name], text)
		case "line":
			if !strings.Contains(arg, ":") {
				arg = "pg_hba.conf:" + arg
			}
			cur.at = arg
		case "error":
			cur.err = arg
		case "pg15":
			cur.pg15 = arg
		case "flag":
			switch arg {
			case "pg15-differs", "pgcertgate-only", "pg18-config":
			default:
				t.Fatalf("invalid_lines.txt:%d: unknown flag %q", n, arg)
			}
			cur.flags = append(cur.flags, arg)
		case "end":
			if cur.at == "" || cur.err == "" || cur.pg15 == "" || len(cur.file) == 0 {
				t.Fatalf("invalid_lines.txt:%d: case %q is incomplete", n, cur.name)
			}
			cases = append(cases, *cur)
			cur = nil
		default:
			t.Fatalf("invalid_lines.txt:%d: unknown directive %q", n, dir)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("invalid_lines.txt: case %q has no end", cur.name)
	}
	return cases
}

func (c invalidCase) has(flag string) bool {
	for _, f := range c.flags {
		if f == flag {
			return true
		}
	}
	return false
}

const testDir = "/etc/pg"

// TestInvalidLines loads every case of testdata/invalid_lines.txt and
// checks that exactly one error is reported, at the right file and line,
// with PostgreSQL's message.
func TestInvalidLines(t *testing.T) {
	cases := readInvalidCases(t)
	if len(cases) < 40 {
		t.Fatalf("only %d cases; want at least 40", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := fstest.MapFS{}
			m[strings.TrimPrefix(testDir, "/")+"/pg_hba.conf"] = &fstest.MapFile{Data: []byte(strings.Join(c.file, "\n") + "\n")}
			for name, lines := range c.aux {
				m[strings.TrimPrefix(testDir, "/")+"/"+name] = &fstest.MapFile{Data: []byte(strings.Join(lines, "\n") + "\n")}
			}
			conf, err := Load(testDir+"/pg_hba.conf", ReadOptions{FS: NewFS(m)})
			if err == nil {
				t.Fatalf("loaded without error:\n%s", conf)
			}
			if conf != nil {
				t.Errorf("Load returned a Conf together with an error")
			}
			errs := unjoin(err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), err)
			}
			var he *Error
			if !errors.As(errs[0], &he) {
				t.Fatalf("error %T is not *hba.Error", errs[0])
			}
			file, line, _ := strings.Cut(c.at, ":")
			wantLine, _ := strconv.Atoi(line)
			wantMsg := strings.ReplaceAll(c.err, "$DIR", testDir)
			if he.File != testDir+"/"+file || he.Line != wantLine || he.Msg != wantMsg {
				t.Errorf("got  %s:%d: %s\nwant %s:%d: %s", he.File, he.Line, he.Msg, testDir+"/"+file, wantLine, wantMsg)
			}
			if want := he.File + ":" + line + ": " + wantMsg; he.Error() != want {
				t.Errorf("Error() = %q, want %q", he.Error(), want)
			}
			if differs := c.pg15 != c.err && c.pg15 != "<null>"; differs != c.has("pg15-differs") {
				t.Errorf("pg15-differs flag is %v, but pg15 %q vs error %q", c.has("pg15-differs"), c.pg15, c.err)
			}
		})
	}
}

// unjoin flattens an errors.Join tree.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// TestLoadCollectsAllErrors checks that one bad line refuses the file and
// that every bad line is reported, in file order, with tokenizer and parser
// errors interleaved.
func TestLoadCollectsAllErrors(t *testing.T) {
	m := fstest.MapFS{
		"etc/pg/pg_hba.conf": {Data: []byte(strings.Join([]string{
			"host all all all trust",
			"host all all all bogus",
			"host all @missing all trust",
			"hostssl all all all cert",
			"host all all 1.2.3.4/99 trust",
		}, "\n"))},
	}
	_, err := Load("/etc/pg/pg_hba.conf", ReadOptions{FS: NewFS(m)})
	got := err.Error()
	want := `/etc/pg/pg_hba.conf:2: invalid authentication method "bogus"
/etc/pg/pg_hba.conf:3: could not open file "/etc/pg/missing": No such file or directory
/etc/pg/pg_hba.conf:5: invalid CIDR mask in address "1.2.3.4/99"`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestLoadEmptyAndMissing(t *testing.T) {
	m := fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte("# only a comment\n\n   \n")}}
	_, err := Load("/etc/pg/pg_hba.conf", ReadOptions{FS: NewFS(m)})
	if want := `/etc/pg/pg_hba.conf: configuration file "/etc/pg/pg_hba.conf" contains no entries`; err == nil || err.Error() != want {
		t.Errorf("empty file: got %v, want %s", err, want)
	}
	_, err = Load("/etc/pg/nope.conf", ReadOptions{FS: NewFS(m)})
	if want := `/etc/pg/nope.conf: could not open file "/etc/pg/nope.conf": No such file or directory`; err == nil || err.Error() != want {
		t.Errorf("missing file: got %v, want %s", err, want)
	}
}
