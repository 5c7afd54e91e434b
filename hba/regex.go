package hba

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// RegexpError explains why a PostgreSQL regular expression was refused.
// Unsupported is true when the pattern is valid for PostgreSQL's Spencer
// ARE engine but uses a feature that Go's RE2 engine cannot honour
// faithfully (back-references, lookaround, \m and \M, collating elements,
// most embedded options); pgcertgate refuses such patterns instead of
// silently matching differently.
type RegexpError struct {
	Pattern     string
	Msg         string
	Unsupported bool
}

// Error renders the message PostgreSQL's regcomp_auth_token uses for
// patterns it refuses itself, and a pgcertgate-specific one for patterns
// it accepts but pgcertgate cannot run.
func (e *RegexpError) Error() string {
	if e.Unsupported {
		return fmt.Sprintf("regular expression %s is not supported by pgcertgate: %s", pgQuote(e.Pattern), e.Msg)
	}
	return fmt.Sprintf("invalid regular expression %s: %s", pgQuote(e.Pattern), e.Msg)
}

// CompileRegexp compiles a PostgreSQL ARE (the text after the leading '/'
// of an hba or ident token) into an equivalent Go regexp, or explains why it
// cannot. The result is unanchored, like pg_regexec: it reports whether the
// pattern matches anywhere in the string. PostgreSQL compiles these patterns
// with the C collation, so character classes and case folding are ASCII-only
// there, as they are in Go; a case-insensitive pattern with non-ASCII text is
// refused because Go would fold it differently.
//
// Whether a string matches is the same under ARE's and RE2's leftmost rules;
// which submatch is reported may differ, which matters only to callers that
// use captures (pg_ident.conf's \1).
func CompileRegexp(pattern string) (*regexp.Regexp, error) {
	goPat, err := translateARE(pattern)
	if err != nil {
		return nil, err
	}
	re, cerr := regexp.Compile(goPat)
	if cerr != nil {
		return nil, &RegexpError{Pattern: pattern, Msg: areMessage(cerr)}
	}
	return re, nil
}

// areMessage maps a Go regexp/syntax error to the text PostgreSQL's
// pg_regerror gives for the same mistake (checked against PostgreSQL 15).
func areMessage(err error) string {
	var se *syntax.Error
	if !errors.As(err, &se) {
		return err.Error()
	}
	switch se.Code {
	case syntax.ErrMissingParen, syntax.ErrUnexpectedParen:
		return "parentheses () not balanced"
	case syntax.ErrMissingBracket:
		return "brackets [] not balanced"
	case syntax.ErrInvalidRepeatSize:
		return "invalid repetition count(s)"
	case syntax.ErrMissingRepeatArgument, syntax.ErrInvalidRepeatOp:
		return "quantifier operand invalid"
	case syntax.ErrInvalidCharRange:
		return "invalid character range"
	case syntax.ErrInvalidCharClass:
		return "invalid character class"
	case syntax.ErrInvalidEscape, syntax.ErrTrailingBackslash:
		return `invalid escape \ sequence`
	case syntax.ErrInvalidPerlOp, syntax.ErrInvalidNamedCapture:
		return "invalid embedded option"
	}
	return se.Error()
}

const areDupMax = 255 // DUPMAX in PostgreSQL's regex engine

// translateARE rewrites an ARE into RE2 syntax.
func translateARE(p string) (string, error) {
	invalid := func(msg string) error { return &RegexpError{Pattern: p, Msg: msg} }
	unsupported := func(msg string) error { return &RegexpError{Pattern: p, Msg: msg, Unsupported: true} }

	// Directors: ***= makes the rest a literal, ***: forces ARE.
	s := p
	switch {
	case strings.HasPrefix(s, "***="):
		return "(?s)" + regexp.QuoteMeta(s[4:]), nil
	case strings.HasPrefix(s, "***:"):
		s = s[4:]
	case strings.HasPrefix(s, "***"):
		return "", invalid("quantifier operand invalid")
	}

	var out strings.Builder
	caseInsensitive := false
	// Embedded options are only allowed at the very start of an ARE.
	if strings.HasPrefix(s, "(?") && len(s) > 2 && isASCIILetter(s[2]) {
		end := strings.IndexByte(s, ')')
		if end < 0 {
			return "", invalid("invalid embedded option")
		}
		for _, c := range s[2:end] {
			switch c {
			case 'i':
				caseInsensitive = true
			case 'c':
				caseInsensitive = false
			case 's', 't':
				// The defaults: not newline-sensitive, tight syntax.
			case 'b', 'e', 'm', 'n', 'p', 'q', 'w', 'x':
				return "", unsupported(fmt.Sprintf("embedded option %q", c))
			default:
				return "", invalid("invalid embedded option")
			}
		}
		s = s[end+1:]
	}
	if caseInsensitive {
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				return "", unsupported("case-insensitive matching of non-ASCII text")
			}
		}
	}

	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '\\':
			if i+1 >= len(s) {
				return "", invalid(`invalid escape \ sequence`)
			}
			tr, n, err := translateEscape(s[i+1:], false, invalid, unsupported)
			if err != nil {
				return "", err
			}
			out.WriteString(tr)
			i += 1 + n
		case '(':
			if strings.HasPrefix(s[i:], "(?") {
				rest := s[i+2:]
				switch {
				case strings.HasPrefix(rest, ":"):
					out.WriteString("(?:")
					i += 3
				case strings.HasPrefix(rest, "#"):
					end := strings.IndexByte(rest, ')')
					if end < 0 {
						return "", invalid("parentheses () not balanced")
					}
					i += 2 + end + 1
				case strings.HasPrefix(rest, "="), strings.HasPrefix(rest, "!"):
					return "", unsupported("lookahead constraints")
				case strings.HasPrefix(rest, "<=") || strings.HasPrefix(rest, "<!"):
					return "", unsupported("lookbehind constraints")
				default:
					return "", invalid("quantifier operand invalid")
				}
				continue
			}
			out.WriteByte('(')
			i++
		case '[':
			tr, n, err := translateBracket(s[i:], invalid, unsupported)
			if err != nil {
				return "", err
			}
			out.WriteString(tr)
			i += n
		case '{':
			if i+1 < len(s) && isDigit(s[i+1]) {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return "", invalid("braces {} not balanced")
				}
				body := s[i+1 : i+end]
				lo, hi := body, ""
				if k := strings.IndexByte(body, ','); k >= 0 {
					lo, hi = body[:k], body[k+1:]
				}
				if !allDigits(lo) || (hi != "" && !allDigits(hi)) {
					return "", invalid("braces {} not balanced")
				}
				m, _ := strconv.Atoi(lo)
				if m > areDupMax {
					return "", invalid("invalid repetition count(s)")
				}
				if hi != "" {
					n, _ := strconv.Atoi(hi)
					if n > areDupMax || n < m {
						return "", invalid("invalid repetition count(s)")
					}
				}
				out.WriteString(s[i : i+end+1])
				i += end + 1
				continue
			}
			// Not a bound: a literal brace in ARE.
			out.WriteString(`\{`)
			i++
		case '}':
			out.WriteString(`\}`)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return "", unsupported("invalid UTF-8")
			}
			out.WriteString(s[i : i+n])
			i += n
		}
	}
	prefix := "(?s)"
	if caseInsensitive {
		prefix = "(?is)"
	}
	return prefix + out.String(), nil
}

func isASCIILetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool       { return c >= '0' && c <= '9' }
func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// translateEscape translates the escape whose text (after the backslash)
// starts e. It returns the RE2 text and how many bytes of e it used.
func translateEscape(e string, inBracket bool, invalid, unsupported func(string) error) (string, int, error) {
	c := e[0]
	lit := func(r rune) string {
		if inBracket {
			return bracketLiteral(r)
		}
		return regexp.QuoteMeta(string(r))
	}
	switch c {
	case 'a':
		return `\x07`, 1, nil
	case 'b':
		return `\x08`, 1, nil // backspace in ARE, not a word boundary
	case 'B':
		return `\\`, 1, nil // a synonym for backslash in ARE
	case 'e':
		return `\x1b`, 1, nil
	case 'f', 'n', 'r', 't', 'v':
		return `\` + string(c), 1, nil
	case 'c':
		if len(e) < 2 {
			return "", 0, invalid(`invalid escape \ sequence`)
		}
		return fmt.Sprintf(`\x{%x}`, e[1]&0x1f), 2, nil
	case 'x':
		n := 1
		for n < len(e) && isHex(e[n]) {
			n++
		}
		if n == 1 {
			return "", 0, invalid(`invalid escape \ sequence`)
		}
		v, err := strconv.ParseUint(e[1:n], 16, 32)
		if err != nil || v > utf8.MaxRune {
			return "", 0, invalid(`invalid escape \ sequence`)
		}
		return fmt.Sprintf(`\x{%x}`, v), n, nil
	case 'u', 'U':
		want := 4
		if c == 'U' {
			want = 8
		}
		if len(e) < 1+want {
			return "", 0, invalid(`invalid escape \ sequence`)
		}
		for k := 1; k <= want; k++ {
			if !isHex(e[k]) {
				return "", 0, invalid(`invalid escape \ sequence`)
			}
		}
		v, _ := strconv.ParseUint(e[1:1+want], 16, 32)
		if v > utf8.MaxRune {
			return "", 0, invalid(`invalid escape \ sequence`)
		}
		return fmt.Sprintf(`\x{%x}`, v), 1 + want, nil
	case 'd', 's', 'w':
		return `\` + string(c), 1, nil
	case 'D', 'S', 'W':
		if inBracket {
			return "", 0, invalid(`invalid escape \ sequence`)
		}
		return `\` + string(c), 1, nil
	}
	if !inBracket {
		switch c {
		case 'A':
			return `\A`, 1, nil
		case 'Z':
			return `\z`, 1, nil
		case 'y':
			return `\b`, 1, nil
		case 'Y':
			return `\B`, 1, nil
		case 'm', 'M':
			return "", 0, unsupported(`word-boundary escapes \m and \M`)
		}
	}
	if isDigit(c) {
		if c == '0' {
			return "", 0, unsupported("octal escapes")
		}
		return "", 0, unsupported("back-references")
	}
	if c < utf8.RuneSelf && (isASCIILetter(c) || isDigit(c)) {
		return "", 0, invalid(`invalid escape \ sequence`)
	}
	r, n := utf8.DecodeRuneInString(e)
	if r == utf8.RuneError && n == 1 {
		return "", 0, unsupported("invalid UTF-8")
	}
	return lit(r), n, nil
}

// bracketLiteral spells r for use inside an RE2 character class.
func bracketLiteral(r rune) string {
	switch r {
	case '\\', ']', '[', '-', '^':
		return `\` + string(r)
	}
	return string(r)
}

var areClasses = map[string]bool{
	"alnum": true, "alpha": true, "ascii": true, "blank": true, "cntrl": true, "digit": true,
	"graph": true, "lower": true, "print": true, "punct": true, "space": true, "upper": true,
	"word": true, "xdigit": true,
}

// translateBracket translates the bracket expression at the start of s
// and returns its RE2 spelling and length.
func translateBracket(s string, invalid, unsupported func(string) error) (string, int, error) {
	var out strings.Builder
	out.WriteByte('[')
	i := 1
	if i < len(s) && s[i] == '^' {
		out.WriteByte('^')
		i++
	}
	first := true
	for {
		if i >= len(s) {
			return "", 0, invalid("brackets [] not balanced")
		}
		c := s[i]
		if c == ']' && !first {
			out.WriteByte(']')
			return out.String(), i + 1, nil
		}
		first = false
		switch {
		case c == '[' && i+1 < len(s) && (s[i+1] == ':' || s[i+1] == '.' || s[i+1] == '='):
			kind := s[i+1]
			end := strings.Index(s[i+2:], string(kind)+"]")
			if end < 0 {
				return "", 0, invalid("brackets [] not balanced")
			}
			name := s[i+2 : i+2+end]
			switch kind {
			case ':':
				if name == "<" || name == ">" {
					return "", 0, unsupported("word-boundary classes [[:<:]] and [[:>:]]")
				}
				if !areClasses[name] {
					return "", 0, invalid("invalid character class")
				}
				if name == "word" {
					out.WriteString(`\w`)
				} else {
					out.WriteString("[:" + name + ":]")
				}
			case '.':
				return "", 0, unsupported("collating elements [. .]")
			case '=':
				return "", 0, unsupported("equivalence classes [= =]")
			}
			i += 2 + end + 2
		case c == '\\':
			if i+1 >= len(s) {
				return "", 0, invalid("brackets [] not balanced")
			}
			tr, n, err := translateEscape(s[i+1:], true, invalid, unsupported)
			if err != nil {
				return "", 0, err
			}
			out.WriteString(tr)
			i += 1 + n
		case c == '-':
			// A range dash stays a dash; a literal one at either end is
			// also fine unescaped in RE2.
			out.WriteByte('-')
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return "", 0, unsupported("invalid UTF-8")
			}
			if r == '[' || r == '^' || r == ']' {
				out.WriteString(`\` + string(r))
			} else {
				out.WriteString(s[i : i+n])
			}
			i += n
		}
	}
}
