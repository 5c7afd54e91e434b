package hba

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/hba/hbatest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

const testDir = "/etc/pg"

// TestInvalidLines loads every case of testdata/invalid_lines.txt and
// checks that exactly one error is reported, at the right file and line,
// with PostgreSQL's message.
func TestInvalidLines(t *testing.T) {
	cases, err := hbatest.ReadInvalidCases("testdata/invalid_lines.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases; want at least 40", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			m := fstest.MapFS{}
			m[strings.TrimPrefix(testDir, "/")+"/pg_hba.conf"] = &fstest.MapFile{Data: []byte(strings.Join(c.File, "\n") + "\n")}
			for name, lines := range c.Aux {
				m[strings.TrimPrefix(testDir, "/")+"/"+name] = &fstest.MapFile{Data: []byte(strings.Join(lines, "\n") + "\n")}
			}
			conf, err := Load(testDir+"/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
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
			var he *authfile.Error
			if !errors.As(errs[0], &he) {
				t.Fatalf("error %T is not *authfile.Error", errs[0])
			}
			wantFile := testDir + "/" + c.ErrFile
			wantMsg := strings.ReplaceAll(c.Err, "$DIR", testDir)
			if he.File != wantFile || he.Line != c.Line || he.Msg != wantMsg {
				t.Errorf("got  %s:%d: %s\nwant %s:%d: %s", he.File, he.Line, he.Msg, wantFile, c.Line, wantMsg)
			}
			if want := he.File + ":" + strconv.Itoa(c.Line) + ": " + wantMsg; he.Error() != want {
				t.Errorf("Error() = %q, want %q", he.Error(), want)
			}
			if differs := c.PG15 != c.Err && c.PG15 != "<null>"; differs != c.Has("pg15-differs") {
				t.Errorf("pg15-differs flag is %v, but pg15 %q vs error %q", c.Has("pg15-differs"), c.PG15, c.Err)
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
	_, err := Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
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
	_, err := Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
	if want := `/etc/pg/pg_hba.conf: configuration file "/etc/pg/pg_hba.conf" contains no entries`; err == nil || err.Error() != want {
		t.Errorf("empty file: got %v, want %s", err, want)
	}
	_, err = Load("/etc/pg/nope.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
	if want := `/etc/pg/nope.conf: could not open file "/etc/pg/nope.conf": No such file or directory`; err == nil || err.Error() != want {
		t.Errorf("missing file: got %v, want %s", err, want)
	}
}
