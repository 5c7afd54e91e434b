package are

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestPostgresRecordedSemantics replays testdata/pg15-regex.txt, the
// answers PostgreSQL 15 gave (SQL_ASCII, C locale, as during
// authentication) for every curated (pattern, subject) pair: the regcomp
// error text, whether it matches, the whole match, and group 1. The file
// is recorded by pgdiff_test.go (go test -tags pgdiff), which also runs
// random differential checks against a live server.
func TestPostgresRecordedSemantics(t *testing.T) {
	f, err := os.Open("testdata/pg15-regex.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n, unsupported := 0, 0
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		data, _, _ := strings.Cut(line, "\t#")
		f := strings.Split(data, " ")
		if len(f) < 3 {
			t.Fatalf("line %d: malformed: %q", ln, line)
		}
		pat, err1 := hex.DecodeString(f[0])
		subj, err2 := hex.DecodeString(f[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("line %d: bad hex", ln)
		}
		var want pgResult
		switch f[2] {
		case "N":
		case "E":
			want.Err = strings.Join(f[3:], " ")
		case "M":
			if len(f) != 7 {
				t.Fatalf("line %d: malformed: %q", ln, line)
			}
			want.Match = true
			want.Start, _ = strconv.Atoi(f[3])
			want.End, _ = strconv.Atoi(f[4])
			want.NGroups, _ = strconv.Atoi(f[5])
			if f[6] == "NULL" {
				want.FirstNull = true
			} else {
				b, err := hex.DecodeString(f[6])
				if err != nil {
					t.Fatalf("line %d: bad hex", ln)
				}
				want.First = string(b)
			}
		default:
			t.Fatalf("line %d: unknown result kind %q", ln, f[2])
		}
		n++
		got, unsup := evalLikePostgres(string(pat), string(subj))
		if unsup != "" {
			unsupported++
			if want.Err != "" {
				t.Errorf("line %d: %q refused as unsupported (%s), but PostgreSQL rejects it: %s", ln, pat, unsup, want.Err)
			}
			continue
		}
		if got != want {
			t.Errorf("line %d: pattern %q subject %q:\n got %+v\nwant %+v", ln, pat, subj, got, want)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 5000 {
		t.Fatalf("only %d cases read", n)
	}
	t.Logf("%d recorded cases, %d of them refused as unsupported", n, unsupported)
}

// pgResult is what PostgreSQL reports for one (subject, pattern) pair,
// through regexp_match, regexp_instr and the regcomp error.
type pgResult struct {
	Err        string // regcomp error text, "" if the pattern compiled
	Match      bool
	Start, End int    // whole match, byte offsets
	NGroups    int    // array_length(regexp_match) (1 when no groups)
	First      string // (regexp_match)[1]: group 1, or the whole match
	FirstNull  bool
}

// evalLikePostgres computes pgResult with our implementation. unsupported
// is set when we refuse a pattern.
func evalLikePostgres(pattern, subject string) (r pgResult, unsupported string) {
	re, err := Compile(pattern)
	if err != nil {
		e := err.(*Error)
		if e.Unsupported {
			return r, e.Msg
		}
		r.Err = e.Msg
		return r, ""
	}
	m, matched, err := re.exec(context.Background(), subject)
	if err != nil {
		r.Err = err.Error()
		return r, ""
	}
	if !matched {
		return r, ""
	}
	r.Match = true
	// the full left-to-right scan must agree with RE2's leftmost start
	full := newMatcher(context.Background(), subject)
	if _, ok := full.find(re.tree); !ok || full.span != m.span {
		r.Err = "LEFTMOST START DISAGREES"
		return r, ""
	}
	caps := m.caps
	r.Start, r.End = m.span[0], m.span[1]
	if re.nsub == 0 {
		r.NGroups = 1
		r.First = subject[r.Start:r.End]
		return r, ""
	}
	r.NGroups = re.nsub
	if c, ok := caps[1]; ok {
		r.First = subject[c[0]:c[1]]
	} else {
		r.FirstNull = true
	}
	return r, ""
}

// TestRefusals is the refusal half of the table in Regexp's doc comment:
// each construct PostgreSQL accepts but RE2 cannot reproduce is refused
// with a message naming it, and PostgreSQL's own errors keep
// PostgreSQL's text (checked against PostgreSQL 15's
// pg_ident_file_mappings.error).
func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		pat, msg    string
		unsupported bool
	}{
		{`(a)\1`, `back-reference \1 is not supported`, true},
		{`(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)\10`, `back-reference \10 is not supported`, true},
		{`a(?=b)`, `lookahead (?=…) is not supported`, true},
		{`a(?!b)`, `negative lookahead (?!…) is not supported`, true},
		{`(?<=a)b`, `lookbehind (?<=…) is not supported`, true},
		{`(?<!a)b`, `negative lookbehind (?<!…) is not supported`, true},
		{`\ma`, `word-boundary constraint (\m, \M, [[:<:]] or [[:>:]]) is not supported`, true},
		{`a\M`, `word-boundary constraint (\m, \M, [[:<:]] or [[:>:]]) is not supported`, true},
		{`[[:<:]]a`, `word-boundary constraint (\m, \M, [[:<:]] or [[:>:]]) is not supported`, true},
		{`a[[:>:]]`, `word-boundary constraint (\m, \M, [[:<:]] or [[:>:]]) is not supported`, true},
		{`\ya`, `word-boundary constraint (\y or \Y) is not supported`, true},
		{`a\Y`, `word-boundary constraint (\y or \Y) is not supported`, true},
		{`(?b)a\{2\}`, `embedded option (?b) or (?e), which switches to POSIX basic or extended syntax, is not supported`, true},
		{`(?e)a`, `embedded option (?b) or (?e), which switches to POSIX basic or extended syntax, is not supported`, true},
		{`(a{100}){100}`, `nested repetition counts multiply beyond the 1000 that Go's RE2 engine allows`, true},
		{`((a{20}){20}){20}`, `nested repetition counts multiply beyond the 1000 that Go's RE2 engine allows`, true},

		// PostgreSQL's own errors win over our refusals
		{`(a)\1(`, `parentheses () not balanced`, false},
		{`\1`, `invalid backreference number`, false},
		{`(a\1)`, `invalid backreference number`, false},
		{`(a){0}\1`, `invalid backreference number`, false},
		{`a(?=(b)\1)`, `invalid backreference number`, false},
		{`(`, `parentheses () not balanced`, false},
		{`)`, `parentheses () not balanced`, false},
		{`[a`, `brackets [] not balanced`, false},
		{`a{1,2`, `braces {} not balanced`, false},
		{`a{256}`, `invalid repetition count(s)`, false},
		{`a{1,256}`, `invalid repetition count(s)`, false},
		{`a{2,1}`, `invalid repetition count(s)`, false},
		{`a{1x}`, `invalid repetition count(s)`, false},
		{`[b-a]`, `invalid character range`, false},
		{`[a-b-c]`, `invalid character range`, false},
		{`[[:foo:]]`, `invalid character class`, false},
		{`[[.nope.]]`, `invalid collating element`, false},
		{`[[==]]`, `invalid collating element`, false},
		{`\g`, `invalid escape \ sequence`, false},
		{`\x`, `invalid escape \ sequence`, false},
		{`\u12`, `invalid escape \ sequence`, false},
		{`\8`, `invalid backreference number`, false},
		{`\81`, `invalid escape \ sequence`, false},
		{`[\A]`, `invalid escape \ sequence`, false},
		{`[\1]`, `invalid escape \ sequence`, false},
		{`a\`, `invalid escape \ sequence`, false},
		{`a**`, `quantifier operand invalid`, false},
		{`*a`, `quantifier operand invalid`, false},
		{`^*`, `quantifier operand invalid`, false},
		{`a(?i)b`, `quantifier operand invalid`, false},
		{`***a`, `quantifier operand invalid`, false},
		{`***?`, `invalid regexp (reg version 0.8)`, false},
		{`(?z)a`, `invalid embedded option`, false},
		{`(?i`, `invalid embedded option`, false},
	} {
		_, err := Compile(c.pat)
		if err == nil {
			t.Errorf("%q: accepted, want %q", c.pat, c.msg)
			continue
		}
		e := err.(*Error)
		if e.Msg != c.msg || e.Unsupported != c.unsupported || e.Pattern != c.pat {
			t.Errorf("%q: got %+v, want %q (unsupported=%v)", c.pat, e, c.msg, c.unsupported)
		}
	}
}

// TestTranslation is the acceptance half of the table: what each accepted
// construct becomes in RE2, and the cases where the same spelling means
// different things in the two dialects.
func TestTranslation(t *testing.T) {
	for _, c := range []struct {
		pat, re2 string
		yes, no  []string
	}{
		{`^a.b$`, `(?:\Aa[\x{0}-\x{7F}\x{F780}-\x{F7FF}]b\z)`, []string{"a\nb", "a\xffb"}, []string{"ab\n"}},
		{`(?n)^b$`, `(?:(?m:^)b(?m:$))`, []string{"a\nb\nc"}, []string{"ab"}},
		{`(?n)a.b`, ``, []string{"a-b"}, []string{"a\nb"}},
		{`(?p)^b`, ``, []string{"b"}, []string{"a\nb"}},
		{`(?w)^b`, ``, []string{"a\nb"}, nil},
		{`(?n)[^x]`, ``, []string{"y"}, []string{"\n"}},
		{`[^x]`, ``, []string{"\n"}, nil},
		{`a\Z`, `(?:a\z)`, []string{"ba"}, []string{"a\n"}},
		{`\Aa`, `(?:\Aa)`, []string{"ab"}, []string{"ba"}},
		{`\b`, `\x{8}`, []string{"\b"}, []string{"a b", ""}},
		{`a\Bb`, `(?:a\\b)`, []string{`a\b`}, []string{"a b"}},
		{`[\b]`, `\x{8}`, []string{"\b"}, []string{"b"}},
		{`\e\a\f\v\cA`, "", []string{"\x1b\x07\f\v\x01"}, nil},
		{`\x41BC`, `[^\x00-\x{10FFFF}]`, nil, []string{"ABC", "A", "\u41bc"}}, // one character 0x41BC: no byte is it
		{`\x41`, "A", []string{"A"}, nil},
		{`\u00e9`, `\x{F7E9}`, []string{"\xe9"}, []string{"é"}},
		{`\101`, "A", []string{"A"}, nil},
		{`\0`, `\x{0}`, []string{"\x00"}, nil},
		{`\777`, "", []string{"?7"}, nil}, // \77 then 7
		{`\s`, `[\x{9}-\x{D}\x{20}]`, []string{"\v"}, []string{"\xa0", "\x85"}},
		{`\w`, `[0-9A-Z\x{5F}a-z]`, []string{"_"}, []string{"é", "\xe9"}},
		{`[[:cntrl:]]`, "", []string{"\x85", "\x7f"}, []string{"\xa0"}},
		{`[[:alpha:]]`, "", []string{"a"}, []string{"\xc3\xa9"}},
		{`[[.hyphen.]a]`, "", []string{"-", "a"}, []string{"b"}},
		{`[[=a=]]`, "a", []string{"a"}, nil},
		{`(?i)a`, `[Aa]`, []string{"A"}, nil},
		{`(?i)k`, `[Kk]`, []string{"K"}, []string{"\u212a"}},
		{`(?i)\xc9`, `\x{F7C9}`, []string{"\xc9"}, []string{"\xe9"}},
		{`(?i)[[:lower:]]`, "", []string{"Q"}, nil},
		{`(?x) a  b # comment`, "(?:ab)", []string{"ab"}, []string{"a b"}},
		{`(?x)a\ b`, "", []string{"a b"}, nil},
		{`(?x)[ ]`, " ", []string{" "}, nil},
		{`***=a.b`, "(?:a\\.b)", []string{"a.b"}, []string{"axb"}},
		{`(?q)a.b`, "(?:a\\.b)", []string{"a.b"}, []string{"axb"}},
		{`(?qi)a.B`, "", []string{"A.b"}, []string{"axb"}},
		{`***:(?i)a`, `[Aa]`, []string{"A"}, nil},
		{`(?#note)a`, "a", []string{"a"}, nil},
		{`a{,2}`, "(?:a\\{,2\\})", []string{"a{,2}"}, []string{"aa"}},
		{`a{`, "(?:a\\{)", []string{"a{"}, nil},
		{`x|`, "", []string{"anything", ""}, nil},
		{`^jos.$`, "", nil, []string{"josé"}},
		{`^jos..$`, "", []string{"josé"}, nil},
		{`[é]`, "", []string{"\xc3", "\xa9"}, []string{"e"}},
	} {
		re, err := Compile(c.pat)
		if err != nil {
			t.Errorf("%q: %v", c.pat, err)
			continue
		}
		if c.re2 != "" && re.re2 != c.re2 {
			t.Errorf("%q: RE2 %q, want %q", c.pat, re.re2, c.re2)
		}
		if _, err := regexp.Compile(re.re2); err != nil {
			t.Errorf("%q: %v", c.pat, err)
		}
		for _, s := range c.yes {
			if !re.MatchString(s) {
				t.Errorf("%q should match %q", c.pat, s)
			}
		}
		for _, s := range c.no {
			if re.MatchString(s) {
				t.Errorf("%q should not match %q", c.pat, s)
			}
		}
	}
}

// TestGroup1 checks capture placement against values observed on
// PostgreSQL 15, including at authentication time (cert CN josé and
// xY1234Z, see the package report).
func TestGroup1(t *testing.T) {
	for _, c := range []struct {
		pat, s, g1 string
		ok         bool
	}{
		{`o*?([a-z]{1,2})`, "jos\xc3\xa9", "j", true}, // RE2 alone would say "jo"
		{`Y*?([0-9]{1,3})`, "xY1234Z", "1", true},     // RE2 alone: "123"
		{`Y*([0-9]{1,3})`, "xY1234Z", "123", true},
		{`(a|ab)(c|bcd)(d*)`, "abcd", "ab", true}, // RE2 alone: "a"
		{`(a*)+`, "aaa", "", true},
		{`(a|b)*(Y)`, "xY1234Z", "", false},
		{`^(.*)@example\.com$`, "bob@example.com", "bob", true},
		{`^CN=([^,]+)`, "CN=alice,OU=x", "alice", true},
		{`(a)|b`, "b", "", false},
		{`((a)|b)+`, "ab", "b", true},
	} {
		re, err := Compile(c.pat)
		if err != nil {
			t.Fatalf("%q: %v", c.pat, err)
		}
		matched, g1, ok, err := re.Group1(context.Background(), c.s)
		if err != nil || !matched || ok != c.ok || g1 != c.g1 {
			t.Errorf("%q on %q: matched=%v g1=%q ok=%v err=%v; want g1=%q ok=%v", c.pat, c.s, matched, g1, ok, err, c.g1, c.ok)
		}
	}
}

func TestMapBytesRoundTrip(t *testing.T) {
	for _, s := range []string{"", "abc", "jos\xc3\xa9", "\x80\xff\x00\x7f"} {
		if got := unmapString(mapBytes(s)); got != s {
			t.Errorf("%q -> %q", s, got)
		}
	}
}

// TestErrorText: Error formats PostgreSQL's own refusals as hba.c
// regcomp_auth_token does (the pattern is printed unescaped), and
// pgcertgate's refusals with their own wording.
func TestErrorText(t *testing.T) {
	for _, c := range []struct{ pat, want string }{
		{`a"(`, `invalid regular expression "a"(": parentheses () not balanced`},
		{`\q`, `invalid regular expression "\q": invalid escape \ sequence`},
		{`(x)\1`, `regular expression "(x)\1" is not supported by pgcertgate: back-reference \1 is not supported`},
	} {
		_, err := Compile(c.pat)
		var e *Error
		if !errors.As(err, &e) || err.Error() != c.want {
			t.Errorf("%q: got %v, want %s", c.pat, err, c.want)
		}
	}
}
