package hba

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// The /regex database and user fields use package internal/are, the
// engine pg_ident.conf uses too, as hba.c regcomp_auth_token and
// regexec_auth_token serve both files in PostgreSQL. The engine's meaning
// is tested there against PostgreSQL 15's recorded answers (PostgreSQL 15
// has no hba regexes, so the rows below cannot be replayed on it as
// pg_hba.conf lines); these tests check that hba wires it in: both fields,
// quoted tokens, byte-wise matching, and the load-time messages.

// regexToken quotes a pattern as a pg_hba.conf token, so that commas,
// blanks and '#' stay in it.
func regexToken(pattern string) string {
	return `"/` + strings.ReplaceAll(pattern, `"`, `""`) + `"`
}

// TestRegexFields matches names against one /regex, as the database and
// as the user field.
func TestRegexFields(t *testing.T) {
	tests := []struct {
		re, name string
		want     bool
	}{
		{`^app_[0-9]+$`, "app_12", true},
		{`^app_[0-9]+$`, "app_x", false},
		{`pp`, "app", true}, // unanchored
		{`^(alice|bob)$`, "bobby", false},
		{`^a,b$`, "a,b", true},
		{`foo\Z`, "xfoo", true},
		{`[[:alpha:]]+$`, "abc", true},
		{`[[:alpha:]]+$`, "ab1", false},
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
		{`\B`, `\`, true},  // backslash, not RE2's non-boundary
		{`\b`, "\b", true}, // backspace, not RE2's word boundary
		{`(?#comment)x`, "x", true},
		{`a{`, "a{", true},
		{`a{x}`, "a{x}", true},
		{`\d+`, "12", true},
		{`[\d]`, "5", true},
		{`[a\]]`, "]", true},
		{`\.`, ".", true},
		{`\.`, "x", false},
		{`a*?`, "", true},
		{`a"b`, `a"b`, true},

		// One character per byte (SQL_ASCII, C locale), as at
		// authentication time: é is two characters, neither of them a
		// letter, and \u00e9 is the single byte 0xE9.
		{`é`, "é", true},
		{`x|.`, "é", true},
		{`^jos.$`, "josé", false},
		{`^jos..$`, "josé", true},
		{`^\xc3\xa9$`, "é", true},
		{`\u00e9`, "é", false},
		{`\u00e9`, "\xe9", true},
		{`[[:alpha:]]`, "é", false},
		{`\w`, "é", false},
		{`(?i)JOSé`, "josé", true},
		{`(?i)É`, "é", false}, // only ASCII letters fold

		// ARE syntax the old RE2 translator refused and the shared
		// engine reproduces.
		{`^[[.hyphen.]a]+$`, "a-a", true},
		{`[[=a=]]`, "a", true},
		{`(?x) ^ a b $ # comment`, "ab", true},
		{`(?n)^b$`, "a\nb", true},
		{`(?p)a.b`, "a\nb", false},
		{`^\101$`, "A", true},
	}
	ip := netip.MustParseAddr("192.0.2.1")
	for _, tc := range tests {
		tok := regexToken(tc.re)
		for _, conf := range []struct {
			field, text string
			req         Request
		}{
			{"database", "host " + tok + " all all trust", Request{Addr: ip, Database: tc.name, User: "u"}},
			{"user", "host all " + tok + " all trust", Request{Addr: ip, Database: "d", User: tc.name}},
		} {
			c := mustParse(t, conf.text)
			e, err := c.Match(context.Background(), conf.req, testEnv())
			if err != nil {
				t.Fatal(err)
			}
			if got := e != nil; got != tc.want {
				t.Errorf("%s %q ~ %s: matched %v, want %v", conf.field, tc.name, tok, got, tc.want)
			}
		}
	}
}

// TestRegexErrors: a pattern PostgreSQL refuses gets regcomp_auth_token's
// message (the pattern is printed as written, without escaping); one that
// PostgreSQL accepts and pgcertgate cannot match the same way gets
// pgcertgate's refusal. Either refuses the line, at its line number.
func TestRegexErrors(t *testing.T) {
	tests := []struct{ line, msg string }{
		{`host /^(db all all trust`, `invalid regular expression "^(db": parentheses () not balanced`},
		{`host all "/^a{3,2}$" all trust`, `invalid regular expression "^a{3,2}$": invalid repetition count(s)`},
		{`host all /\q all trust`, `invalid regular expression "\q": invalid escape \ sequence`},
		{`host all "/a""(" all trust`, `invalid regular expression "a"(": parentheses () not balanced`},
		{`host all /[[:foo:]] all trust`, `invalid regular expression "[[:foo:]]": invalid character class`},
		{`host all /[[.nope.]] all trust`, `invalid regular expression "[[.nope.]]": invalid collating element`},
		{`host all /\1 all trust`, `invalid regular expression "\1": invalid backreference number`},
		{`host all alice,/a**,/( all trust`, `invalid regular expression "a**": quantifier operand invalid`},
		{`host /( /) all trust`, `invalid regular expression "(": parentheses () not balanced`}, // database first
		{`host all /^(a)\1$ all trust`, `regular expression "^(a)\1$" is not supported by pgcertgate: back-reference \1 is not supported`},
		{`host /^(?!template) all all trust`, `regular expression "^(?!template)" is not supported by pgcertgate: negative lookahead (?!…) is not supported`},
		{`host all /\yfoo\y all trust`, `regular expression "\yfoo\y" is not supported by pgcertgate: word-boundary constraint (\y or \Y) is not supported`},
		{`host all /\mfoo all trust`, `regular expression "\mfoo" is not supported by pgcertgate: word-boundary constraint (\m, \M, [[:<:]] or [[:>:]]) is not supported`},
		{`host all /(?e)a all trust`, `regular expression "(?e)a" is not supported by pgcertgate: embedded option (?b) or (?e), which switches to POSIX basic or extended syntax, is not supported`},
	}
	for _, tc := range tests {
		m := fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte("host all all all trust\n" + tc.line + "\n")}}
		conf, err := Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
		if conf != nil || err == nil {
			t.Errorf("%s: loaded", tc.line)
			continue
		}
		if want := "/etc/pg/pg_hba.conf:2: " + tc.msg; err.Error() != want {
			t.Errorf("%s:\n got %s\nwant %s", tc.line, err, want)
		}
	}
}
