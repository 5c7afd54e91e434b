// Package are implements PostgreSQL's Advanced Regular Expressions, as
// hba.c compiles them for pg_hba.conf and pg_ident.conf, on top of Go's
// regexp.
//
// hba.c regcomp_auth_token compiles the text after a token's leading '/'
// with REG_ADVANCED, and regexec_auth_token runs it, while the backend has
// no database selected: in SQL_ASCII with C_COLLATION_OID, so every byte of
// the pattern and of the name is one character and the classes are the C
// locale's. pg_hba.conf's database and user fields (16+) and
// pg_ident.conf's system-user and database-user fields all go through
// those two functions, so package hba and package identmap share this
// one.
//
// The pattern is lexed and parsed by a port of regc_lex.c and regcomp.c
// (lex.go, parse.go), which decides what it means and reports PostgreSQL's
// own errors with pg_regerror's text. The syntax tree is then run two
// ways, which must agree: MatchString on Go's RE2 over a byte-to-rune
// mapping, and MatchContext and Group1 on the package's own automata
// (nfa.go), with group 1 (pg_ident.conf's \1) placed by a port of
// regexec.c's dissection (match.go). The automata take time linear in the
// subject, however long a certificate's name is, and stop when their
// context is done. A construct whose meaning RE2 cannot reproduce is
// refused by Compile (an *Error with Unsupported set), never matched
// differently. Regexp's documentation has the table of decisions;
// testdata/pg15-regex.txt, recorded from PostgreSQL 15 by pgdiff_test.go,
// checks them.
//
// The package is pure: no I/O, no logging, no mutable global state.
package are

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// Regexp is a PostgreSQL advanced regular expression (ARE), compiled as
// hba.c regcomp_auth_token compiles the text after the leading '/': with
// REG_ADVANCED, the C collation and one character per byte. MatchString
// runs on Go's RE2 engine; MatchContext and Group1 run the same syntax
// tree on the package's own automata, and Group1 places group 1 for \1
// by the dissection rules of PostgreSQL's regexec.c, which RE2 does not
// share.
//
// The translation accepts a pattern only when the RE2 program means
// exactly what PostgreSQL's does; everything else is refused at load
// time. The decisions, one row per construct:
//
//	ARE construct                         decision   why / how
//	------------------------------------  ---------  -----------------------------------------------
//	literals, . [] [^] * + ? {m} {m,} {m,n} accepted   byte classes; . and [^…] include \n unless (?n)/(?p)
//	non-greedy *? +? ?? {m,n}?            accepted   same language; \1 uses ARE preference rules
//	| ( ) (?: )                           accepted
//	{m,n} with m or n > 255               PG error   invalid repetition count(s) (DUPMAX is 255, so
//	                                                 RE2's 1000 limit is never reached)
//	^ $                                   accepted   \A and \z (not Perl's "before final \n")
//	\A \Z                                 accepted   \A and \z; \Z is end of string only
//	\d \s \w \D \S \W, also inside []     accepted   C-locale ASCII classes; \s includes \v
//	[[:alpha:]] etc.                      accepted   C locale: ASCII only; cntrl is 0x00-0x1F and 0x7F-0x9F
//	[[.x.]] [[=x=]], [[.hyphen.]] …       accepted   one character, or a POSIX name from regc_locale.c
//	\a \b \B \e \f \n \r \t \v \cX        accepted   BEL, BACKSPACE (not RE2's word boundary),
//	                                                 BACKSLASH, ESC, FF, LF, CR, TAB, VT, control-X
//	\xhhh… \uhhhh \Uhhhhhhhh \0 \ooo      accepted   \x takes every following hex digit (unlike RE2);
//	                                                 octal up to 0377; values > 0xFF match nothing
//	\10 … with fewer groups than the number accepted as octal, as regc_lex.c's heuristic decides
//	\ before any other non-alphanumeric   accepted   that character
//	(?#comment)                           accepted   ignored
//	(?i) (?c)                             accepted   ASCII letters only fold (C locale); RE2's Unicode
//	                                                 folding (é/É, k/K) must not apply, see byte model
//	(?n) (?m) (?p) (?w) (?s)              accepted   newline-sensitive variants, expressed per construct
//	(?x) (?t)                             accepted   expanded syntax stripped as regc_lex.c skip() does
//	***= and (?q)                         accepted   the rest is a literal string
//	***:                                  accepted   no-op: the pattern is already an ARE
//	(?b) (?e)                             refused    POSIX BRE/ERE syntax is a different language
//	\1 … \9, \10 … back-references        refused    not regular; RE2 has none
//	(?=…) (?!…) (?<=…) (?<!…)             refused    lookaround; RE2 has none
//	\m \M \y \Y [[:<:]] [[:>:]]           refused    ARE word boundaries; RE2's \b differs (and
//	                                                 is \b backspace in ARE anyway)
//	(a{100}){100}, ((a{20}){20}){20}      refused    nested counts multiply beyond RE2's limit of 1000
//	                                                 (PostgreSQL accepts them up to its own "too complex")
//	other alphabetic escapes (\g, \k, \p…) PG error   invalid escape \ sequence
//	***?, malformed (?…) option           PG error   as PostgreSQL reports them
//
// One known difference remains: PostgreSQL refuses some pathological
// patterns with "regular expression is too complex" when its NFA
// optimizer exceeds internal size limits (typically anchors inside nested,
// counted, non-greedy repetitions). Predicting that would mean porting the
// NFA optimizer; such patterns are accepted here and matched with the
// semantics PostgreSQL would have had. Differential testing against
// PostgreSQL 15 met 6 of them in 1.7 million random patterns, and no
// other difference (see pgdiff_test.go).
//
// Byte model: PostgreSQL sees the pattern and the name as SQL_ASCII, one
// character per byte. Go sees UTF-8 runes, so each byte 0x80–0xFF is
// mapped to a rune in the private-use block U+F780–U+F7FF, which no Go
// class or case folding touches, and back. `/^jos.$` therefore does not
// match "josé" (é is two bytes) and `/^jos..$` does, as on PostgreSQL.
type Regexp struct {
	src   string // pattern text after '/'
	re2   string // the RE2 translation, over mapped runes
	prog  *regexp.Regexp
	tree  *subre
	whole *node
	nsub  int
	// search is any bytes then the pattern, read forward: where a match
	// can end. searchRev is the pattern then any bytes, read backward:
	// where a match can start. Both are the package's own automata, for
	// MatchContext and Group1.
	search, searchRev *prog
}

// highRuneBase is where bytes 0x80-0xFF go in the mapped rune space.
const highRuneBase = 0xF700

// Compile compiles a pattern (a token's text without its leading '/'), as
// hba.c regcomp_auth_token does. A refused pattern's error is an *Error:
// either PostgreSQL's own regcomp error, or the reason pgcertgate cannot
// match the pattern the way PostgreSQL does.
func Compile(pattern string) (*Regexp, error) {
	p := &parser{
		lexer: lexer{pat: []byte(pattern), stop: len(pattern), cflags: regAdvanced},
		subs:  map[int]bool{},
	}
	p.lexstart()
	if p.err != 0 && p.unsup != "" {
		return nil, unsupported(pattern, p.unsup)
	}
	var tree *subre
	if p.err == 0 {
		tree = p.parse(tEOS, false)
	}
	if p.err != 0 {
		return nil, &Error{Pattern: pattern, Msg: regErrText[p.err]}
	}
	if p.unsup != "" {
		return nil, unsupported(pattern, p.unsup)
	}
	whole := tree.syntax()
	var b strings.Builder
	emit(&b, whole)
	prog, err := regexp.Compile(b.String())
	if err != nil {
		// PostgreSQL accepted it, but RE2 cannot hold it: nested counted
		// repetitions whose counts multiply beyond RE2's limit of 1000,
		// such as (a{100}){100}, or a program too large.
		var se *syntax.Error
		if errors.As(err, &se) && se.Code == syntax.ErrInvalidRepeatSize {
			return nil, unsupported(pattern, "nested repetition counts multiply beyond the 1000 that Go's RE2 engine allows")
		}
		return nil, unsupported(pattern, fmt.Sprintf("too large for Go's RE2 engine (%v)", err))
	}
	bc := byteClasses(whole)
	compileProgs(tree, bc)
	anything := &node{op: nRepeat, subs: []*node{{op: nSet, set: byteSet{}.complement()}}, max: dupInf}
	return &Regexp{src: pattern, re2: b.String(), prog: prog, tree: tree, whole: whole, nsub: p.nsubexp,
		search:    compileProg(concat(anything, whole), false, bc),
		searchRev: compileProg(concat(whole, anything), true, bc),
	}, nil
}

// Error is why Compile refused a pattern. Its text is hba.c
// regcomp_auth_token's for a pattern PostgreSQL refuses too, and
// pgcertgate's own for one that PostgreSQL accepts but whose meaning Go's
// RE2 cannot reproduce (Unsupported); callers tell the two apart with
// errors.As and Unsupported rather than by the text.
type Error struct {
	// Pattern is the pattern given to Compile (the token without its '/').
	Pattern string
	// Msg is pg_regerror's text (regerrs.h), such as "parentheses () not
	// balanced", or, when Unsupported, the construct refused and why.
	Msg string
	// Unsupported is true when PostgreSQL accepts the pattern and
	// pgcertgate refuses it.
	Unsupported bool
}

// Error returns regcomp_auth_token's message, `invalid regular expression
// "%s": %s` (the pattern is not escaped, as in PostgreSQL), or
// pgcertgate's `regular expression "%s" is not supported by pgcertgate:
// %s`.
func (e *Error) Error() string {
	if e.Unsupported {
		return fmt.Sprintf("regular expression \"%s\" is not supported by pgcertgate: %s", e.Pattern, e.Msg)
	}
	return fmt.Sprintf("invalid regular expression \"%s\": %s", e.Pattern, e.Msg)
}

// unsupported builds the Error for a construct pgcertgate refuses.
func unsupported(pattern, msg string) *Error {
	return &Error{Pattern: pattern, Msg: msg, Unsupported: true}
}

// String returns the pattern as given to Compile (without the leading
// '/').
func (r *Regexp) String() string { return r.src }

// mapBytes maps a byte string into the rune space the RE2 program uses.
func mapBytes(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) * 2)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x80 {
			b.WriteByte(c)
		} else {
			b.WriteRune(rune(highRuneBase + int(c)))
		}
	}
	return b.String()
}

// MatchString reports whether the regex matches anywhere in s
// (pg_regexec with nmatch 0), on Go's RE2. RE2 takes time linear in
// len(s) but proportional to the pattern's size too, and cannot be
// stopped: a subject as long as a certificate identity may be goes to
// MatchContext instead.
func (r *Regexp) MatchString(s string) bool {
	return r.prog.MatchString(mapBytes(s))
}

// MatchContext reports, as MatchString does, whether the regex matches
// anywhere in s, on the package's own automaton: in time linear in len(s),
// and stopping with ctx's error once ctx is done.
func (r *Regexp) MatchContext(ctx context.Context, s string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m := newMatcher(ctx, s)
	ok := m.run(r.search, 0, len(s), anyPos).first() >= 0
	if m.err != nil {
		return false, m.err
	}
	return ok, nil
}

// Group1 runs the regex as check_ident_usermap does (pg_regexec with
// nmatch 2): matched says whether it matches at all; ok says whether
// group 1 took part in the match, and g1 is its text.
//
// It runs on the package's own automata, in time linear in len(s), and
// stops with ctx's error once ctx is done. Any other error is an internal
// inconsistency (the search found a match the dissection cannot place),
// which would be a bug; the caller fails closed.
func (r *Regexp) Group1(ctx context.Context, s string) (matched bool, g1 string, ok bool, err error) {
	if r.nsub == 0 {
		matched, err := r.MatchContext(ctx, s)
		return matched, "", false, err
	}
	m, matched, err := r.exec(ctx, s)
	if !matched || err != nil {
		return matched, "", false, err
	}
	if c, set := m.caps[1]; set {
		return true, s[c[0]:c[1]], true, nil
	}
	return true, "", false, nil
}

// exec runs the regex as pg_regexec does when asked for submatches: the
// leftmost position where a match starts (one backward pass), then the
// match from there and its dissection.
func (r *Regexp) exec(ctx context.Context, s string) (*matcher, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	return r.execOn(newMatcher(ctx, s))
}

// execOn is exec on a given matcher (tests set its cache budget).
func (r *Regexp) execOn(m *matcher) (*matcher, bool, error) {
	begin := m.run(r.searchRev, m.n, 0, nil).first()
	switch {
	case m.err != nil:
		return nil, false, m.err
	case begin < 0:
		return m, false, nil
	case !m.findAt(r.tree, begin):
		if m.err != nil {
			return nil, false, m.err
		}
		return nil, false, errEngines
	}
	return m, true, nil
}

// errEngines reports that the search and the dissection disagree (a bug).
var errEngines = errors.New("internal error: match engines disagree")

// emit writes the RE2 syntax for n.
func emit(b *strings.Builder, n *node) {
	switch n.op {
	case nSet:
		emitSet(b, n.set)
	case nEmpty:
		b.WriteString("(?:)")
	case nConcat:
		b.WriteString("(?:")
		for _, s := range n.subs {
			emit(b, s)
		}
		b.WriteString(")")
	case nAlt:
		b.WriteString("(?:")
		for i, s := range n.subs {
			if i > 0 {
				b.WriteString("|")
			}
			emit(b, s)
		}
		b.WriteString(")")
	case nRepeat:
		b.WriteString("(?:")
		emit(b, n.subs[0])
		b.WriteString(")")
		switch {
		case n.max == dupInf:
			fmt.Fprintf(b, "{%d,}", n.min)
		case n.min == n.max:
			fmt.Fprintf(b, "{%d}", n.min)
		default:
			fmt.Fprintf(b, "{%d,%d}", n.min, n.max)
		}
	case nBOS:
		b.WriteString(`\A`)
	case nEOS:
		b.WriteString(`\z`)
	case nBOL:
		b.WriteString(`(?m:^)`)
	case nEOL:
		b.WriteString(`(?m:$)`)
	}
}

// emitSet writes a byte set as an RE2 class over mapped runes.
func emitSet(b *strings.Builder, s byteSet) {
	empty := true
	for _, w := range s {
		if w != 0 {
			empty = false
		}
	}
	if empty {
		b.WriteString(`[^\x00-\x{10FFFF}]`)
		return
	}
	if n := setSize(s); n == 1 {
		for c := 0; c < 256; c++ {
			if !s.has(byte(c)) {
				continue
			}
			if 0x20 <= c && c < 0x7f {
				b.WriteString(regexp.QuoteMeta(string(rune(c))))
			} else {
				fmt.Fprintf(b, `\x{%X}`, byteRune(c))
			}
		}
		return
	}
	b.WriteString("[")
	for c := 0; c < 256; {
		if !s.has(byte(c)) {
			c++
			continue
		}
		d := c
		// ranges never cross 0x7F/0x80, where the mapping jumps
		for d+1 < 256 && s.has(byte(d+1)) && !(d == 0x7f) {
			d++
		}
		writeClassRune(b, byteRune(c))
		if d > c {
			b.WriteString("-")
			writeClassRune(b, byteRune(d))
		}
		c = d + 1
	}
	b.WriteString("]")
}

func byteRune(c int) rune {
	if c < 0x80 {
		return rune(c)
	}
	return rune(highRuneBase + c)
}

func writeClassRune(b *strings.Builder, r rune) {
	if r < 0x80 && (r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
		b.WriteRune(r)
		return
	}
	fmt.Fprintf(b, `\x{%X}`, r)
}

func setSize(s byteSet) int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// unmapString is the inverse of mapBytes (used by tests).
func unmapString(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		s = s[n:]
		if r >= highRuneBase+0x80 && r <= highRuneBase+0xff {
			b.WriteByte(byte(r - highRuneBase))
		} else {
			b.WriteByte(byte(r))
		}
	}
	return b.String()
}
