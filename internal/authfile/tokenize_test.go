package authfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// render prints lines as "file:line [tok tok,tok] raw=..." for comparison.
func render(lines []Line) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s:%d", l.File, l.Line)
		for _, f := range l.Fields {
			b.WriteString(" ")
			for i, s := range f {
				if i > 0 {
					b.WriteString(",")
				}
				if s.Quoted {
					b.WriteString("Q")
				}
				b.WriteString("<" + s.Value + ">")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func readMap(t *testing.T, m fstest.MapFS, opts ReadOptions) ([]Line, []*Error, error) {
	t.Helper()
	opts.FS = NewFS(m)
	return ReadFile("/etc/pg/pg_hba.conf", opts)
}

// TestTokenize checks next_token and the line handling of
// tokenize_auth_file. The continuation rows reproduce a file that was
// loaded into PostgreSQL 15 (same line numbers and tokens).
func TestTokenize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"blanks and tabs", "host\tall  all\r all trust", "1 <host> <all> <all> <all> <trust>"},
		{"comment", "host all # all\n# whole line\n  # indented", "1 <host> <all>"},
		{"comment glued to token", "host all#x all", "1 <host> <all>"},
		{"quoted hash and comma", `"a#b","c,d" x`, `1 Q<a#b>,Q<c,d> <x>`},
		{"doubled quotes", `"a""b" """" ""`, `1 Q<a"b> Q<"> Q<>`},
		{"quote in the middle is not quoted", `a"ll" x"y z"w`, "1 <all> <xy zw>"},
		{"comma list with spaces", "a, b ,c", "1 <a>,<b> <c>"},
		{"comma runs", "a,,b, ,c", "1 <a>,<b>,<c>"},
		{"leading and trailing commas", ",a, b,", "1 <a>,<b>"},
		{"unterminated quote runs to end of line", `"a b`, "1 Q<a b>"},
		{"at alone is a token", "@ x", "1 <@> <x>"},
		{"quoted at is not a file", `"@file" x`, "1 Q<@file> <x>"},
		{"continuation", "host all \\\n  all all trust", "1 <host> <all> <all> <all> <trust>"},
		{"continuation in quotes (pg15)", "host \"my \\\ndb\" all", "1 <host> Q<my db> <all>"},
		{"continuation in comment (pg15)", "# c \\\nhost all all all bogus\nx", "3 <x>"},
		{"double backslash then blank line (pg15)", "host x\\\\\n\nhost y", "1 <host> <x\\>\n3 <host> <y>"},
		{"chained continuations (pg15)", "host all \\\n\\\nall all trust\r\nz", "1 <host> <all> <all> <all> <trust>\n4 <z>"},
		{"continuation at EOF (pg15)", "a \\", "1 <a>"},
		{"CRLF", "a b\r\nc\r\n", "1 <a> <b>\n2 <c>"},
		{"NUL ends the line", "a\x00 b\nc", "1 <a>\n2 <c>"},
		{"line numbers skip blanks", "\n\n a\n\n b", "3 <a>\n5 <b>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines, _, err := readMap(t, fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte(tc.in)}}, ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got := strings.TrimSpace(strings.ReplaceAll(render(lines), "/etc/pg/pg_hba.conf:", ""))
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestRawLine(t *testing.T) {
	lines, _, err := readMap(t, fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte("host all \\\n all all trust # why\r\n")}}, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "host all  all all trust # why"; lines[0].Raw != want {
		t.Errorf("Raw = %q, want %q", lines[0].Raw, want)
	}
}

// TestTokenLimit reproduces PostgreSQL 15's 10240-byte token buffer: a
// 10239-byte token is accepted, one more byte (or a closing quote or a
// comma counted against the limit) is an error. Checked against
// PostgreSQL 15.18.
func TestTokenLimit(t *testing.T) {
	long := strings.Repeat("x", 10239)
	tests := []struct {
		in      string
		wantErr bool
	}{
		{"host all " + long + " all trust", false},
		{"host all " + long + "y all trust", true},
		{`host all "` + long + `" all trust`, true},
		{"host all " + long + ",b all trust", true},
	}
	for i, tc := range tests {
		m := fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte(tc.in + "\nhost all all all trust\n")}}
		lines, _, err := readMap(t, m, ReadOptions{MaxTokenLen: 10239})
		if (err != nil) != tc.wantErr {
			t.Fatalf("case %d: err = %v", i, err)
		}
		if tc.wantErr {
			var he *Error
			if !errors.As(err, &he) || he.Line != 1 || he.Msg != fmt.Sprintf(`authentication file token too long, skipping: "%s"`, long) {
				t.Errorf("case %d: got %v", i, err)
			}
			if len(lines) != 1 || lines[0].Line != 2 {
				t.Errorf("case %d: the next line must still be read: %s", i, render(lines))
			}
		}
		// PostgreSQL 16+ has no limit.
		if _, _, err := readMap(t, m, ReadOptions{}); err != nil {
			t.Errorf("case %d without limit: %v", i, err)
		}
	}
}

// TestIncludes covers @file and the include directives of PostgreSQL 16+
// (documented in "The pg_hba.conf File"; behaviour per hba.c
// tokenize_auth_file and conffiles.c GetConfFilesInDir).
func TestIncludes(t *testing.T) {
	m := fstest.MapFS{
		"etc/pg/pg_hba.conf": {Data: []byte(strings.Join([]string{
			"host @dbs @../users/staff all trust", // 1: @file relative to this file, nested, with comments
			"include extra.conf",                  // 2
			"include_if_exists missing.conf",      // 3: skipped with a warning
			"include_dir conf.d",                  // 4: sorted *.conf only
			`"include" quoted.conf`,               // 5: quoting does not matter for directives
			"host all @empty all trust",           // 6: an empty @file contributes no field
			"host @\"dbs\" all all trust",         // 7: @"x" is a file reference
			"host all all all trust",              // 8
		}, "\n"))},
		"etc/pg/dbs":                 {Data: []byte("db1, db2 # comment\n\"db 3\"\n@more\n")},
		"etc/pg/more":                {Data: []byte("db4\n")},
		"etc/users/staff":            {Data: []byte("alice\nbob\n")},
		"etc/pg/extra.conf":          {Data: []byte("hostssl all all all cert\n")},
		"etc/pg/quoted.conf":         {Data: []byte("host q q all trust\n")},
		"etc/pg/empty":               {Data: []byte("# nothing\n")},
		"etc/pg/conf.d/b.conf":       {Data: []byte("host b b all trust\n")},
		"etc/pg/conf.d/a.conf":       {Data: []byte("host a a all trust\n\nhost a2 a2 all trust\n")},
		"etc/pg/conf.d/B.conf":       {Data: []byte("host B B all trust\n")},
		"etc/pg/conf.d/.hidden.conf": {Data: []byte("bogus\n")},
		"etc/pg/conf.d/c.conf.bak":   {Data: []byte("bogus\n")},
		"etc/pg/conf.d/.conf":        {Data: []byte("bogus\n")},
		"etc/pg/conf.d/sub.conf/x":   {Data: []byte("bogus\n")},
	}
	lines, warnings, err := readMap(t, m, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `/etc/pg/pg_hba.conf:1 <host> <db1>,<db2>,Q<db 3>,<db4> <alice>,<bob> <all> <trust>
/etc/pg/extra.conf:1 <hostssl> <all> <all> <all> <cert>
/etc/pg/conf.d/B.conf:1 <host> <B> <B> <all> <trust>
/etc/pg/conf.d/a.conf:1 <host> <a> <a> <all> <trust>
/etc/pg/conf.d/a.conf:3 <host> <a2> <a2> <all> <trust>
/etc/pg/conf.d/b.conf:1 <host> <b> <b> <all> <trust>
/etc/pg/quoted.conf:1 <host> <q> <q> <all> <trust>
/etc/pg/pg_hba.conf:6 <host> <all> <all> <trust>
/etc/pg/pg_hba.conf:7 <host> <db1>,<db2>,Q<db 3>,<db4> <all> <all> <trust>
/etc/pg/pg_hba.conf:8 <host> <all> <all> <all> <trust>
`
	if got := render(lines); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if len(warnings) != 1 || warnings[0].Error() != `/etc/pg/pg_hba.conf:3: skipping missing authentication file "/etc/pg/missing.conf"` {
		t.Errorf("warnings = %v", warnings)
	}
}

func TestIncludeErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"nested @file loop", map[string]string{"pg_hba.conf": "host @loop all all trust", "loop": "@loop"},
			`/etc/pg/pg_hba.conf:1: could not open file "/etc/pg/loop": maximum nesting depth exceeded`},
		{"include loop", map[string]string{"pg_hba.conf": "include a.conf", "a.conf": "include pg_hba.conf"},
			`/etc/pg/pg_hba.conf:1: could not open file "/etc/pg/a.conf": maximum nesting depth exceeded`},
		{"error inside @file is the referencing line's", map[string]string{"pg_hba.conf": "host @dbs all all trust", "dbs": "a\n@nope"},
			`/etc/pg/pg_hba.conf:1: could not open file "/etc/pg/nope": No such file or directory`},
		{"errors inside include_dir files are theirs", map[string]string{"pg_hba.conf": "include_dir d", "d/a.conf": "include x", "d/b.conf": "include y"},
			"/etc/pg/d/a.conf:1: could not open file \"/etc/pg/d/x\": No such file or directory\n/etc/pg/d/b.conf:1: could not open file \"/etc/pg/d/y\": No such file or directory"},
		{"include a directory", map[string]string{"pg_hba.conf": "include d", "d/a.conf": "x"},
			`/etc/pg/pg_hba.conf:1: could not read file "/etc/pg/d": Is a directory`},
		{"include_dir of a blank name", map[string]string{"pg_hba.conf": `include_dir " "`},
			`/etc/pg/pg_hba.conf:1: empty configuration directory name`},
		{"absolute include", map[string]string{"pg_hba.conf": "include /nowhere/x.conf"},
			`/etc/pg/pg_hba.conf:1: could not open file "/nowhere/x.conf": No such file or directory`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := fstest.MapFS{}
			for n, d := range tc.files {
				m["etc/pg/"+n] = &fstest.MapFile{Data: []byte(d)}
			}
			_, _, err := readMap(t, m, ReadOptions{})
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestNestingDepth checks CONF_FILE_MAX_DEPTH: ten levels of includes
// below the top file are fine, the eleventh is refused.
func TestNestingDepth(t *testing.T) {
	build := func(n int) fstest.MapFS {
		m := fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte("include f1")}}
		for i := 1; i < n; i++ {
			m[fmt.Sprintf("etc/pg/f%d", i)] = &fstest.MapFile{Data: []byte(fmt.Sprintf("include f%d", i+1))}
		}
		m[fmt.Sprintf("etc/pg/f%d", n)] = &fstest.MapFile{Data: []byte("host all all all trust")}
		return m
	}
	if lines, _, err := readMap(t, build(10), ReadOptions{}); err != nil || len(lines) != 1 {
		t.Errorf("depth 10: %v %v", lines, err)
	}
	_, _, err := readMap(t, build(11), ReadOptions{})
	if want := `/etc/pg/f10:1: could not open file "/etc/pg/f11": maximum nesting depth exceeded`; err == nil || err.Error() != want {
		t.Errorf("depth 11: got %v", err)
	}
}

// TestStringRoundTrip checks that String() re-reads as the same token.
func TestStringRoundTrip(t *testing.T) {
	vals := []String{
		{"all", false}, {"all", true}, {"", true}, {"a b", false}, {"a b", true}, {`a"b`, true},
		{`a"b`, false}, {"a,b", false}, {"#x", true}, {"x#", false}, {"@file", true}, {"@", false},
		{"a\\", false}, {"a\\", true}, {"+my group", false}, {"\t", true}, {"ldapbinddn=cn=a, o=b", false},
	}
	for _, v := range vals {
		text := v.String() + " end"
		lines, _, err := readMap(t, fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte(text)}}, ReadOptions{})
		if err != nil || len(lines) != 1 || len(lines[0].Fields) != 2 || len(lines[0].Fields[0]) != 1 {
			t.Errorf("%#v: %q does not re-read as one token: %v %v", v, text, render(lines), err)
			continue
		}
		if got := lines[0].Fields[0][0]; got != v {
			t.Errorf("%#v: %q re-reads as %#v", v, text, got)
		}
	}
}

// TestIncludeExplosion: a file that includes itself five times would make
// PostgreSQL read about ten million files; pgcertgate stops early.
func TestIncludeExplosion(t *testing.T) {
	m := fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte(strings.Repeat("include pg_hba.conf\n", 5))}}
	_, _, err := readMap(t, m, ReadOptions{})
	if err == nil || !strings.Contains(err.Error(), "more than 10000 authentication files read") {
		t.Errorf("got %v", err)
	}
}

// TestOSFileSystem runs the include machinery on the real file system:
// relative paths, include_dir skipping a directory named like a .conf
// file (also through a symlink), and a symlinked file being read.
func TestOSFileSystem(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := dir + "/" + name
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pg_hba.conf", "include_dir conf.d\nhost @users.list all all trust\n")
	write("users.list", "a b\n")
	write("conf.d/10-a.conf", "host a all all trust\n")
	write("conf.d/dir.conf/ignored.conf", "bogus\n")
	write("real/20-b.conf", "host b all all trust\n")
	write("realdir/x", "")
	if err := os.Symlink(dir+"/real/20-b.conf", dir+"/conf.d/20-b.conf"); err != nil {
		t.Skip("no symlinks:", err)
	}
	if err := os.Symlink(dir+"/realdir", dir+"/conf.d/30-dir.conf"); err != nil {
		t.Fatal(err)
	}
	lines, _, err := ReadFile(dir+"/pg_hba.conf", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.ReplaceAll(render(lines), dir, "$DIR")
	want := `$DIR/conf.d/10-a.conf:1 <host> <a> <all> <all> <trust>
$DIR/conf.d/20-b.conf:1 <host> <b> <all> <all> <trust>
$DIR/pg_hba.conf:2 <host> <a>,<b> <all> <all> <trust>
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	_, _, err = ReadFile(dir+"/nope.conf", ReadOptions{})
	if err == nil || !strings.HasSuffix(err.Error(), `/nope.conf": No such file or directory`) {
		t.Errorf("missing: %v", err)
	}
}
