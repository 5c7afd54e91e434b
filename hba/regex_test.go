package hba

import (
	"errors"
	"testing"
)

// TestCompileRegexpMatches compares the translated patterns with
// PostgreSQL's ARE engine: every row's want was produced by PostgreSQL 15
// (`select subject ~ pattern`, C collation for the ASCII-only rows).
func TestCompileRegexpMatches(t *testing.T) {
	tests := []struct {
		re, s string
		want  bool
	}{
		{`^app_[0-9]+$`, "app_12", true},
		{`^app_[0-9]+$`, "app_x", false},
		{`\yfoo\y`, "a foo b", true},
		{`\yfoo\y`, "afoob", false},
		{`\Yoo`, "foo", true},
		{`foo\Z`, "xfoo", true},
		{`[[:alpha:]]+$`, "abc", true},
		{`[[:alpha:]]+$`, "ab1", false},
		{`[[:alpha:]]`, "é", false},
		{`\w`, "é", false},
		{`***=a.b`, "a.b", true},
		{`***=a.b`, "axb", false},
		{`***:a`, "a", true},
		{`(?i)ABC`, "xabcx", true},
		{`(?i)ABC`, "xabx", false},
		{`\x41`, "A", true},
		{`[]a]`, "]", true},
		{`[^]a]`, "]", false},
		{`a{2,3}`, "aa", true},
		{`a{2,3}`, "a", false},
		{`a.b`, "a\nb", true},
		{`\B`, `\`, true},
		{`\b`, "\b", true},
		{`(?#comment)x`, "x", true},
		{`a{`, "a{", true},
		{`a{x}`, "a{x}", true},
		{`\d+`, "12", true},
		{`[\d]`, "5", true},
		{`[a\]]`, "]", true},
		{`\.`, ".", true},
		{`\.`, "x", false},
		{`\u00e9`, "é", true},
		{`é`, "é", true},
		{`^(alice|bob)$`, "bobby", false},
		{`a*?`, "", true},
		{`x|.`, "é", true},
	}
	for _, tc := range tests {
		re, err := CompileRegexp(tc.re)
		if err != nil {
			t.Errorf("%q: %v", tc.re, err)
			continue
		}
		if got := re.MatchString(tc.s); got != tc.want {
			t.Errorf("%q ~ %q = %v, want %v", tc.s, tc.re, got, tc.want)
		}
	}
}

// TestCompileRegexpErrors: the invalid rows carry PostgreSQL 15's
// pg_regerror text for the same pattern; the unsupported rows are valid
// AREs that Go's RE2 cannot run faithfully.
func TestCompileRegexpErrors(t *testing.T) {
	tests := []struct {
		re          string
		msg         string
		unsupported bool
	}{
		{`(`, "parentheses () not balanced", false},
		{`)`, "parentheses () not balanced", false},
		{`a)`, "parentheses () not balanced", false},
		{`[`, "brackets [] not balanced", false},
		{`[a`, "brackets [] not balanced", false},
		{`a{2`, "braces {} not balanced", false},
		{`a{3,2}`, "invalid repetition count(s)", false},
		{`a{300}`, "invalid repetition count(s)", false},
		{`*a`, "quantifier operand invalid", false},
		{`a**`, "quantifier operand invalid", false},
		{`+a`, "quantifier operand invalid", false},
		{`?`, "quantifier operand invalid", false},
		{`a|*`, "quantifier operand invalid", false},
		{`x{2}{3}`, "quantifier operand invalid", false},
		{`a++`, "quantifier operand invalid", false},
		{`***x`, "quantifier operand invalid", false},
		{`a(?i)b`, "quantifier operand invalid", false},
		{`\q`, `invalid escape \ sequence`, false},
		{`\Q`, `invalid escape \ sequence`, false},
		{`\k`, `invalid escape \ sequence`, false},
		{`\p{L}`, `invalid escape \ sequence`, false},
		{`a\`, `invalid escape \ sequence`, false},
		{`[z-a]`, "invalid character range", false},
		{`[[:foo:]]`, "invalid character class", false},
		{`(?P<n>a)`, "invalid embedded option", false},
		{`(a)\1`, "back-references", true},
		{`a(?=b)`, "lookahead constraints", true},
		{`a(?!b)`, "lookahead constraints", true},
		{`(?<=a)b`, "lookbehind constraints", true},
		{`(?<!a)b`, "lookbehind constraints", true},
		{`\mfoo\M`, `word-boundary escapes \m and \M`, true},
		{`[[:<:]]a`, "word-boundary classes [[:<:]] and [[:>:]]", true},
		{`[[.a.]]`, "collating elements [. .]", true},
		{`[[=a=]]`, "equivalence classes [= =]", true},
		{`(?x)a b`, `embedded option 'x'`, true},
		{`(?n)^a`, `embedded option 'n'`, true},
		{`(?i)é`, "case-insensitive matching of non-ASCII text", true},
		{`\0`, "octal escapes", true},
	}
	for _, tc := range tests {
		_, err := CompileRegexp(tc.re)
		var re *RegexpError
		if !errors.As(err, &re) {
			t.Errorf("%q: got %v, want a *RegexpError", tc.re, err)
			continue
		}
		if re.Msg != tc.msg || re.Unsupported != tc.unsupported || re.Pattern != tc.re {
			t.Errorf("%q: got %+v, want msg %q unsupported %v", tc.re, re, tc.msg, tc.unsupported)
		}
	}
}
