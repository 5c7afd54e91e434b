package identmap

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/hba"
)

// FuzzParse: whatever the file, Load never panics; when it succeeds, the
// canonical String() parses back to the same String() (parse → print →
// parse → print is stable), with the same compiled regexes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"m alice bob\n",
		"m \"/^(.*)@example\\.com$\" \\1\n",
		"\"m x\" \"all\" all\nm +g \"+g\"\n",
		"m /^jos..$ \"jos\xc3\xa9\" extra\n",
		"m a,b c\nm a\n",
		"m \"/(\" u\n",
		"m x \\\n y\n",
		"m \"a\"\"b\" \"\"\n",
		"@x y z\n",
		"m /(?i)x \"/^y\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		m, err := loadString(content)
		if err != nil {
			return
		}
		first := m.String()
		m2, err := loadString(first)
		if err != nil {
			t.Fatalf("canonical form does not load: %v\ninput:  %q\nprinted: %q", err, content, first)
		}
		if second := m2.String(); second != first {
			t.Fatalf("not stable:\n%q\n%q", first, second)
		}
		if len(m.Entries) != len(m2.Entries) {
			t.Fatalf("entry count changed: %d vs %d", len(m.Entries), len(m2.Entries))
		}
		for i, e := range m.Entries {
			e2 := m2.Entries[i]
			if e.MapName != e2.MapName || e.System != e2.System || e.User.Value != e2.User.Value ||
				isMemberCheck(e.User) != isMemberCheck(e2.User) || e.User.IsKeyword("all") != e2.User.IsKeyword("all") {
				t.Fatalf("entry %d changed meaning: %#v vs %#v", i, e, e2)
			}
			if (e.systemRE == nil) != (e2.systemRE == nil) || e.systemRE != nil && e.systemRE.re2 != e2.systemRE.re2 {
				t.Fatalf("entry %d: system regex changed", i)
			}
			// Check never panics on the loaded map.
			_, _ = m.Check(context.Background(), e.MapName, e.User.Value, e.System.Value, fakeRoles{})
		}
	})
}

func loadString(content string) (*Map, error) {
	fsys := fstest.MapFS{"etc/pg_ident.conf": &fstest.MapFile{Data: []byte(content)}}
	return Load("/etc/pg_ident.conf", hba.ReadOptions{FS: hba.NewFS(fsys)})
}

// FuzzTranslateRegex: compiling any pattern never panics; an accepted
// pattern's RE2 translation compiles in Go; and on a handful of subjects
// the two engines (RE2 for "does it match", the dissection for group 1)
// agree, which Group1 reports as an error otherwise.
func FuzzTranslateRegex(f *testing.F) {
	for _, s := range []string{
		`^(.*)@example\.com$`, `Y*?([0-9]{1,3})`, `(a|ab)(c|bcd)(d*)`, `(?i)[[:lower:]]+`, `(?n)^a$`,
		`***=a.b`, `(?x) a b # c`, `[[.hyphen.][:alpha:]\d]`, `\x41BC\u00e9\0\777`, `(a)\1`, `a(?=b)`,
		`\m`, `(?b)a`, `a{1,255}`, `(a*)*`, `((a)|b)+?`, `[^\D\n]`, `^jos..$`, `\Aa|b\Z`, `(?p)a.b[^c]`,
	} {
		f.Add(s, "xY1234Z bob@example.com ab\nAB jos\xc3\xa9")
	}
	f.Fuzz(func(t *testing.T, pattern, subject string) {
		if len(pattern) > 200 || len(subject) > 64 {
			return
		}
		re, err := compileRegexp(pattern)
		if err != nil {
			if _, ok := err.(*areError); !ok {
				t.Fatalf("%q: error of type %T", pattern, err)
			}
			if err.Error() == "" {
				t.Fatalf("%q: empty error", pattern)
			}
			return
		}
		if _, err := regexp.Compile(re.re2); err != nil {
			t.Fatalf("%q: translation %q does not compile: %v", pattern, re.re2, err)
		}
		for _, s := range []string{subject, "", pattern, strings.ToUpper(subject)} {
			matched, g1, ok, err := re.Group1(s)
			if err != nil {
				t.Fatalf("%q on %q: %v", pattern, s, err)
			}
			if matched != re.MatchString(s) {
				t.Fatalf("%q on %q: Group1 and MatchString disagree", pattern, s)
			}
			if ok && !strings.Contains(s, g1) {
				t.Fatalf("%q on %q: group 1 %q is not part of the subject", pattern, s, g1)
			}
			if m, ok, _ := re.exec(s); ok {
				full := newMatcher(s)
				if _, found := full.find(re.tree); !found || full.span != m.span {
					t.Fatalf("%q on %q: RE2's leftmost start and the full scan disagree", pattern, s)
				}
			}
		}
	})
}
