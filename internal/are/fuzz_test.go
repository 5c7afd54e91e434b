package are

import (
	"context"
	"regexp"
	"strings"
	"testing"
)

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
		re, err := Compile(pattern)
		if err != nil {
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("%q: error of type %T", pattern, err)
			}
			if e.Msg == "" || e.Pattern != pattern {
				t.Fatalf("%q: error %+v", pattern, e)
			}
			return
		}
		if _, err := regexp.Compile(re.re2); err != nil {
			t.Fatalf("%q: translation %q does not compile: %v", pattern, re.re2, err)
		}
		for _, s := range []string{subject, "", pattern, strings.ToUpper(subject)} {
			matched, g1, ok, err := re.Group1(context.Background(), s)
			if err != nil {
				t.Fatalf("%q on %q: %v", pattern, s, err)
			}
			if matched != re.MatchString(s) {
				t.Fatalf("%q on %q: Group1 and MatchString disagree", pattern, s)
			}
			if ok && !strings.Contains(s, g1) {
				t.Fatalf("%q on %q: group 1 %q is not part of the subject", pattern, s, g1)
			}
			if m, ok, _ := re.exec(context.Background(), s); ok {
				full := newMatcher(context.Background(), s)
				if _, found := full.find(re.tree); !found || full.span != m.span {
					t.Fatalf("%q on %q: RE2's leftmost start and the full scan disagree", pattern, s)
				}
			}
		}
	})
}
