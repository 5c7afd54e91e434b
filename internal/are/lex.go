package are

// This file ports the parts of PostgreSQL's Spencer regex compiler
// (src/backend/regex/regc_lex.c and regcomp.c, PostgreSQL 15–18, which do
// not differ in anything used here) that decide what an ARE means:
// the lexer, the parser and the shape of the sub-expression tree that
// pg_regexec's dissection walks to place capture groups.
//
// Nothing here is a new regex dialect. Each function names the C function
// it mirrors; the differences are only that we build a syntax tree over
// bytes instead of an NFA, and that constructs whose meaning RE2 cannot
// reproduce are parsed (so PostgreSQL's own syntax errors still win) and
// then refused.
//
// # Character model
//
// hba.c compiles and runs these regexes with pg_mb2wchar_with_len() while
// the backend has no database selected, i.e. in SQL_ASCII, and with
// C_COLLATION_OID. Every byte of the pattern and of the subject is one
// character 0–255, and classes follow the C locale: only ASCII bytes are
// letters, digits, spaces…; bytes 0x80–0x9F are [[:cntrl:]]; case folding
// touches only ASCII letters. (Checked against PostgreSQL 15 by
// TestPostgresRecordedSemantics; see testdata/pg15-regex.txt.)

import "fmt"

// Token types, as in regcomp.c. Punctuation tokens use their own byte value.
const (
	tEmpty   = 'n' // no token present
	tEOS     = 'e' // end of string
	tPlain   = 'p' // ordinary character
	tDigit   = 'd' // digit (in bound)
	tBackref = 'b' // back reference
	tCollel  = 'I' // start of [.
	tEclass  = 'E' // start of [=
	tCclass  = 'C' // start of [:
	tEnd     = 'X' // end of [. [= [:
	tCclassS = 's' // char class shorthand escape
	tCclassC = 'c' // complement char class shorthand escape
	tRange   = 'R' // - within [] which might be range delim.
	tLacon   = 'L' // lookaround constraint
	tWbdry   = 'w' // word boundary constraint \y
	tNwbdry  = 'W' // non-word-boundary constraint \Y
	tSbegin  = 'A' // \A
	tSend    = 'Z' // \Z
)

// Lexical contexts (regc_lex.c).
const (
	lERE = iota + 1
	lQ
	lEBND
	lBRACK
	lCEL
	lECL
	lCCL
)

// Compile flags (regex.h); only the ones the ARE lexer consults.
const (
	regExtended = 0001
	regAdvf     = 0002
	regAdvanced = 0003
	regQuote    = 0004
	regIcase    = 0010
	regExpanded = 0040
	regNlstop   = 0100
	regNlanch   = 0200
	regNewline  = 0300
)

// Error codes (regex.h) and their pg_regerror() texts (regerrs.h).
const (
	regBadpat   = 2
	regEcollate = 3
	regEctype   = 4
	regEescape  = 5
	regEsubreg  = 6
	regEbrack   = 7
	regEparen   = 8
	regEbrace   = 9
	regBadbr    = 10
	regErange   = 11
	regBadrpt   = 13
	regAssert   = 15
	regBadopt   = 18
	regEtoobig  = 19
)

var regErrText = map[int]string{
	regBadpat:   "invalid regexp (reg version 0.8)",
	regEcollate: "invalid collating element",
	regEctype:   "invalid character class",
	regEescape:  "invalid escape \\ sequence",
	regEsubreg:  "invalid backreference number",
	regEbrack:   "brackets [] not balanced",
	regEparen:   "parentheses () not balanced",
	regEbrace:   "braces {} not balanced",
	regBadbr:    "invalid repetition count(s)",
	regErange:   "invalid character range",
	regBadrpt:   "quantifier operand invalid",
	regAssert:   "\"cannot happen\" -- you found a bug",
	regBadopt:   "invalid embedded option",
	regEtoobig:  "regular expression is too complex",
}

// Sub-expression flags (regguts.h).
const (
	fLonger  = 01
	fShorter = 02
	fMixed   = 04
	fCap     = 010
	fBackr   = 020
	upProp   = fMixed | fCap | fBackr
)

func up(f int) int     { return (f & upProp) | ((f << 2) & (f << 1) & fMixed) }
func messy(f int) bool { return f&(fMixed|fCap|fBackr) != 0 }
func pref(f int) int   { return f & (fLonger | fShorter) }
func combine(a, b int) int {
	p := pref(a)
	if p == 0 {
		p = pref(b)
	}
	return up(a|b) | p
}

// dupMax is DUPMAX (_POSIX2_RE_DUP_MAX); dupInf marks an unbounded count.
const (
	dupMax = 255
	dupInf = dupMax + 1
)

// maxChr is CHR_MAX: escapes beyond it are REG_EESCAPE.
const maxChr = 0x7ffffffe

// Character classes, in regc_locale.c classNames order.
var classNames = []string{"alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph",
	"lower", "print", "punct", "space", "upper", "xdigit", "word"}

const (
	ccAlnum = iota
	ccAlpha
	ccASCII
	ccBlank
	ccCntrl
	ccDigit
	ccGraph
	ccLower
	ccPrint
	ccPunct
	ccSpace
	ccUpper
	ccXdigit
	ccWord
)

// Lookaround types, reported by name when refused.
var laconNames = map[uint32]string{
	1: "lookahead (?=…)", 2: "negative lookahead (?!…)",
	3: "lookbehind (?<=…)", 4: "negative lookbehind (?<!…)",
}

// lexer holds struct vars' lexical fields.
type lexer struct {
	pat       []byte
	now, stop int
	cflags    int
	lasttype  int
	nexttype  int
	nextvalue uint32
	lexcon    int
	nsubexp   int
	err       int
	unsup     string // first refused construct, if any
}

func (v *lexer) ateos() bool       { return v.now >= v.stop }
func (v *lexer) have(n int) bool   { return v.stop-v.now >= n }
func (v *lexer) next1(c byte) bool { return !v.ateos() && v.pat[v.now] == c }
func (v *lexer) next2(a, b byte) bool {
	return v.have(2) && v.pat[v.now] == a && v.pat[v.now+1] == b
}
func (v *lexer) next3(a, b, c byte) bool {
	return v.have(3) && v.pat[v.now] == a && v.pat[v.now+1] == b && v.pat[v.now+2] == c
}

// fail mirrors the ERR() macro: the first error sticks and the token
// stream ends.
func (v *lexer) fail(code int) {
	v.nexttype = tEOS
	if v.err == 0 {
		v.err = code
	}
}

// refuse records a construct we will not translate; parsing goes on so
// that PostgreSQL's own errors are still found and reported first.
func (v *lexer) refuse(format string, args ...any) {
	if v.unsup == "" {
		v.unsup = fmt.Sprintf(format, args...)
	}
}

func (v *lexer) ret(t int) bool { v.nexttype = t; return true }
func (v *lexer) retv(t int, val uint32) bool {
	v.nexttype, v.nextvalue = t, val
	return true
}
func (v *lexer) failw(code int) bool { v.fail(code); return false }

func iscalpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func iscdigit(c byte) bool { return '0' <= c && c <= '9' }
func iscspace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }

// lexstart mirrors regc_lex.c lexstart.
func (v *lexer) lexstart() {
	v.prefixes()
	if v.err != 0 {
		return
	}
	switch {
	case v.cflags&regQuote != 0:
		v.lexcon = lQ
	case v.cflags&regAdvanced == regAdvanced:
		v.lexcon = lERE
	default:
		// (?b) or (?e): a BRE or an ERE. Their lexers differ from the ARE
		// one in many small ways (backslashes in brackets, \{ \} \( \)…).
		v.refuse("embedded option (?b) or (?e), which switches to POSIX basic or extended syntax, is not supported")
		v.fail(regBadpat) // stop here; the error text is not used
		return
	}
	v.nexttype = tEmpty
	v.next()
}

// prefixes mirrors regc_lex.c prefixes: ***=, ***: and (?flags).
func (v *lexer) prefixes() {
	if v.cflags&regQuote != 0 {
		return
	}
	if v.have(4) && v.next3('*', '*', '*') {
		switch v.pat[v.now+3] {
		case '?':
			v.fail(regBadpat)
			return
		case '=':
			v.cflags |= regQuote
			v.cflags &^= regAdvanced | regExpanded | regNewline
			v.now += 4
			return
		case ':':
			v.cflags |= regAdvanced
			v.now += 4
		default:
			v.fail(regBadrpt)
			return
		}
	}
	if v.cflags&regAdvanced != regAdvanced {
		return
	}
	if v.have(3) && v.next2('(', '?') && iscalpha(v.pat[v.now+2]) {
		v.now += 2
		for ; !v.ateos() && iscalpha(v.pat[v.now]); v.now++ {
			switch v.pat[v.now] {
			case 'b':
				v.cflags &^= regAdvanced | regQuote
			case 'c':
				v.cflags &^= regIcase
			case 'e':
				v.cflags |= regExtended
				v.cflags &^= regAdvf | regQuote
			case 'i':
				v.cflags |= regIcase
			case 'm', 'n':
				v.cflags |= regNewline
			case 'p':
				v.cflags |= regNlstop
				v.cflags &^= regNlanch
			case 'q':
				v.cflags |= regQuote
				v.cflags &^= regAdvanced
			case 's':
				v.cflags &^= regNewline
			case 't':
				v.cflags &^= regExpanded
			case 'w':
				v.cflags &^= regNlstop
				v.cflags |= regNlanch
			case 'x':
				v.cflags |= regExpanded
			default:
				v.fail(regBadopt)
				return
			}
		}
		if !v.next1(')') {
			v.fail(regBadopt)
			return
		}
		v.now++
		if v.cflags&regQuote != 0 {
			v.cflags &^= regExpanded | regNewline
		}
	}
}

// next mirrors regc_lex.c next for the ARE and literal contexts.
func (v *lexer) next() bool {
restart:
	if v.err != 0 {
		return false
	}
	v.lasttype = v.nexttype

	if v.cflags&regExpanded != 0 && (v.lexcon == lERE || v.lexcon == lEBND) {
		v.skip()
	}

	if v.ateos() {
		switch v.lexcon {
		case lERE, lQ:
			return v.ret(tEOS)
		case lEBND:
			return v.failw(regEbrace)
		default:
			return v.failw(regEbrack)
		}
	}

	c := v.pat[v.now]
	v.now++

	switch v.lexcon {
	case lQ:
		return v.retv(tPlain, uint32(c))
	case lEBND:
		switch {
		case iscdigit(c):
			return v.retv(tDigit, uint32(c-'0'))
		case c == ',':
			return v.ret(',')
		case c == '}':
			v.lexcon = lERE
			if v.next1('?') {
				v.now++
				return v.retv('}', 0)
			}
			return v.retv('}', 1)
		default:
			return v.failw(regBadbr)
		}
	case lBRACK:
		switch c {
		case ']':
			if v.lasttype == '[' {
				return v.retv(tPlain, uint32(c))
			}
			v.lexcon = lERE
			return v.ret(']')
		case '\\':
			if v.ateos() {
				return v.failw(regEescape)
			}
			if !v.lexescape() {
				return false
			}
			switch v.nexttype {
			case tPlain, tCclassS, tCclassC:
				return true
			}
			return v.failw(regEescape)
		case '-':
			if v.lasttype == '[' || v.next1(']') {
				return v.retv(tPlain, uint32(c))
			}
			return v.retv(tRange, uint32(c))
		case '[':
			if v.ateos() {
				return v.failw(regEbrack)
			}
			c2 := v.pat[v.now]
			v.now++
			switch c2 {
			case '.':
				v.lexcon = lCEL
				return v.ret(tCollel)
			case '=':
				v.lexcon = lECL
				return v.ret(tEclass)
			case ':':
				v.lexcon = lCCL
				return v.ret(tCclass)
			}
			v.now--
			return v.retv(tPlain, uint32(c))
		default:
			return v.retv(tPlain, uint32(c))
		}
	case lCEL, lECL, lCCL:
		endc := byte(':')
		switch v.lexcon {
		case lCEL:
			endc = '.'
		case lECL:
			endc = '='
		}
		if c == endc && v.next1(']') {
			v.now++
			v.lexcon = lBRACK
			return v.retv(tEnd, uint32(endc))
		}
		return v.retv(tPlain, uint32(c))
	}

	// lERE
	switch c {
	case '|':
		return v.ret('|')
	case '*', '+', '?':
		if v.next1('?') {
			v.now++
			return v.retv(int(c), 0)
		}
		return v.retv(int(c), 1)
	case '{':
		if v.cflags&regExpanded != 0 {
			v.skip()
		}
		if v.ateos() || !iscdigit(v.pat[v.now]) {
			return v.retv(tPlain, uint32(c))
		}
		v.lexcon = lEBND
		return v.ret('{')
	case '(':
		if v.next1('?') {
			v.now++
			if v.ateos() {
				return v.failw(regBadrpt)
			}
			c2 := v.pat[v.now]
			v.now++
			switch c2 {
			case ':':
				return v.retv('(', 0)
			case '#':
				for !v.ateos() && v.pat[v.now] != ')' {
					v.now++
				}
				if !v.ateos() {
					v.now++
				}
				// A comment is not a token; lasttype is unchanged
				// because nexttype still equals it.
				goto restart
			case '=':
				return v.retv(tLacon, 1)
			case '!':
				return v.retv(tLacon, 2)
			case '<':
				if v.ateos() {
					return v.failw(regBadrpt)
				}
				c3 := v.pat[v.now]
				v.now++
				switch c3 {
				case '=':
					return v.retv(tLacon, 3)
				case '!':
					return v.retv(tLacon, 4)
				}
				return v.failw(regBadrpt)
			}
			return v.failw(regBadrpt)
		}
		return v.retv('(', 1)
	case ')':
		return v.retv(')', uint32(c))
	case '[':
		if v.have(6) && v.pat[v.now] == '[' && v.pat[v.now+1] == ':' &&
			(v.pat[v.now+2] == '<' || v.pat[v.now+2] == '>') &&
			v.pat[v.now+3] == ':' && v.pat[v.now+4] == ']' && v.pat[v.now+5] == ']' {
			c = v.pat[v.now+2]
			v.now += 6
			return v.ret(int(c))
		}
		v.lexcon = lBRACK
		if v.next1('^') {
			v.now++
			return v.retv('[', 0)
		}
		return v.retv('[', 1)
	case '.', '^', '$':
		return v.ret(int(c))
	case '\\':
		if v.ateos() {
			return v.failw(regEescape)
		}
		return v.lexescape()
	default:
		return v.retv(tPlain, uint32(c))
	}
}

// lexescape mirrors regc_lex.c lexescape (backslash already eaten).
func (v *lexer) lexescape() bool {
	c := v.pat[v.now]
	v.now++
	if !iscalpha(c) && !iscdigit(c) {
		return v.retv(tPlain, uint32(c))
	}
	switch c {
	case 'a':
		return v.retv(tPlain, 007)
	case 'A':
		return v.retv(tSbegin, 0)
	case 'b':
		return v.retv(tPlain, '\b')
	case 'B':
		return v.retv(tPlain, '\\')
	case 'c':
		if v.ateos() {
			return v.failw(regEescape)
		}
		c2 := v.pat[v.now]
		v.now++
		return v.retv(tPlain, uint32(c2&037))
	case 'd':
		return v.retv(tCclassS, ccDigit)
	case 'D':
		return v.retv(tCclassC, ccDigit)
	case 'e':
		return v.retv(tPlain, 033)
	case 'f':
		return v.retv(tPlain, '\f')
	case 'm':
		return v.ret('<')
	case 'M':
		return v.ret('>')
	case 'n':
		return v.retv(tPlain, '\n')
	case 'r':
		return v.retv(tPlain, '\r')
	case 's':
		return v.retv(tCclassS, ccSpace)
	case 'S':
		return v.retv(tCclassC, ccSpace)
	case 't':
		return v.retv(tPlain, '\t')
	case 'u':
		n, ok := v.lexdigits(16, 4, 4)
		if !ok || n > maxChr {
			return v.failw(regEescape)
		}
		return v.retv(tPlain, n)
	case 'U':
		n, ok := v.lexdigits(16, 8, 8)
		if !ok || n > maxChr {
			return v.failw(regEescape)
		}
		return v.retv(tPlain, n)
	case 'v':
		return v.retv(tPlain, '\v')
	case 'w':
		return v.retv(tCclassS, ccWord)
	case 'W':
		return v.retv(tCclassC, ccWord)
	case 'x':
		n, ok := v.lexdigits(16, 1, 255)
		if !ok || n > maxChr {
			return v.failw(regEescape)
		}
		return v.retv(tPlain, n)
	case 'y':
		return v.retv(tWbdry, 0)
	case 'Y':
		return v.retv(tNwbdry, 0)
	case 'Z':
		return v.retv(tSend, 0)
	case '1', '2', '3', '4', '5', '6', '7', '8', '9':
		save := v.now
		v.now--
		n, ok := v.lexdigits(10, 1, 255)
		if !ok {
			return v.failw(regEescape)
		}
		if v.now == save || (int32(n) > 0 && int(int32(n)) <= v.nsubexp) {
			return v.retv(tBackref, n)
		}
		v.now = save
		fallthrough
	case '0':
		v.now--
		n, ok := v.lexdigits(8, 1, 3)
		if !ok {
			return v.failw(regEescape)
		}
		if n > 0xff {
			v.now--
			n >>= 3
		}
		return v.retv(tPlain, n)
	}
	return v.failw(regEescape)
}

// lexdigits mirrors regc_lex.c lexdigits, including its unsigned
// wrap-around (the callers range-check).
func (v *lexer) lexdigits(base, minlen, maxlen int) (uint32, bool) {
	var n uint32
	l := 0
	for ; l < maxlen && !v.ateos(); l++ {
		c := v.pat[v.now]
		d := -1
		switch {
		case '0' <= c && c <= '9':
			d = int(c - '0')
		case 'a' <= c && c <= 'f':
			d = int(c-'a') + 10
		case 'A' <= c && c <= 'F':
			d = int(c-'A') + 10
		}
		if d < 0 || d >= base {
			break
		}
		v.now++
		n = n*uint32(base) + uint32(d)
	}
	return n, l >= minlen
}

// skip mirrors regc_lex.c skip: white space and #-comments in (?x) mode.
func (v *lexer) skip() {
	for {
		for !v.ateos() && iscspace(v.pat[v.now]) {
			v.now++
		}
		if v.ateos() || v.pat[v.now] != '#' {
			return
		}
		for !v.ateos() && v.pat[v.now] != '\n' {
			v.now++
		}
	}
}

// see, eat and nextTok are the SEE, EAT and NEXT macros.
func (v *lexer) see(t int) bool { return v.nexttype == t }
func (v *lexer) eat(t int) bool { return v.see(t) && v.next() }
func (v *lexer) nextTok()       { v.next() }

// cnames is regc_locale.c's table of collating-element names, the POSIX
// names usable in [[.name.]] and [[=name=]].
var cnames = map[string]byte{
	"NUL": 0, "SOH": 1, "STX": 2, "ETX": 3, "EOT": 4, "ENQ": 5, "ACK": 6, "BEL": 7,
	"alert": 7, "BS": 8, "backspace": 8, "HT": 9, "tab": 9, "LF": 10, "newline": 10,
	"VT": 11, "vertical-tab": 11, "FF": 12, "form-feed": 12, "CR": 13,
	"carriage-return": 13, "SO": 14, "SI": 15, "DLE": 16, "DC1": 17, "DC2": 18,
	"DC3": 19, "DC4": 20, "NAK": 21, "SYN": 22, "ETB": 23, "CAN": 24, "EM": 25,
	"SUB": 26, "ESC": 27, "IS4": 28, "FS": 28, "IS3": 29, "GS": 29, "IS2": 30,
	"RS": 30, "IS1": 31, "US": 31, "space": ' ', "exclamation-mark": '!',
	"quotation-mark": '"', "number-sign": '#', "dollar-sign": '$',
	"percent-sign": '%', "ampersand": '&', "apostrophe": '\'',
	"left-parenthesis": '(', "right-parenthesis": ')', "asterisk": '*',
	"plus-sign": '+', "comma": ',', "hyphen": '-', "hyphen-minus": '-',
	"period": '.', "full-stop": '.', "slash": '/', "solidus": '/', "zero": '0',
	"one": '1', "two": '2', "three": '3', "four": '4', "five": '5', "six": '6',
	"seven": '7', "eight": '8', "nine": '9', "colon": ':', "semicolon": ';',
	"less-than-sign": '<', "equals-sign": '=', "greater-than-sign": '>',
	"question-mark": '?', "commercial-at": '@', "left-square-bracket": '[',
	"backslash": '\\', "reverse-solidus": '\\', "right-square-bracket": ']',
	"circumflex": '^', "circumflex-accent": '^', "underscore": '_',
	"low-line": '_', "grave-accent": '`', "left-brace": '{',
	"left-curly-bracket": '{', "vertical-line": '|', "right-brace": '}',
	"right-curly-bracket": '}', "tilde": '~', "DEL": 0177,
}

// element mirrors regc_locale.c element. Single characters stand for
// themselves; longer names come from cnames.
func (v *lexer) element(name []byte) uint32 {
	if len(name) == 1 {
		return uint32(name[0])
	}
	if c, ok := cnames[string(name)]; ok {
		return uint32(c)
	}
	v.fail(regEcollate)
	return 0
}
