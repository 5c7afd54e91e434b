// Package hba implements a pg_hba.conf parser and matcher.
//
// The package mirrors PostgreSQL 18's src/backend/libpq/hba.c: the line
// parser (parse_hba_line, parse_hba_auth_opt) and the matcher (check_hba,
// check_db, check_role, check_hostname, check_ip). The tokenizer
// (tokenize_auth_file), which pg_ident.conf shares, is package
// internal/authfile. Error texts are PostgreSQL's own, so an operator sees
// the same message from pgcertgate as from the server. Where PostgreSQL 15
// and 18 differ, 18 wins; the known differences are listed in
// versions_test.go.
//
// The package models PostgreSQL's semantics only. What pgcertgate itself
// does with a record (which methods it performs, which connections it can
// receive) is its caller's business.
//
// The package is pure: it does no networking and no logging. File access
// goes through authfile.FileSystem, name resolution and role membership
// through the Resolver and RoleChecker interfaces.
package hba

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pgcertgate/pgcertgate/internal/are"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// Entry is one parsed pg_hba.conf record (hba.h HbaLine).
type Entry struct {
	// File and Line locate the record (its first physical line).
	File string
	Line int
	// Raw is the record's text with continuations joined.
	Raw string
	// RuleNumber is the 1-based position among the loaded records, as in
	// pg_hba_file_rules.rule_number (16+).
	RuleNumber int

	ConnType ConnType
	Database []authfile.String
	User     []authfile.String
	// Address is the zero Address for local records.
	Address Address
	// Method is the authentication method; "ident" on a local record is
	// stored as MethodPeer, as PostgreSQL does.
	Method Method
	// Options are the name=value options in file order, as written.
	Options []Option

	// ClientCert is the effective clientcert level: the option's value,
	// or ClientCertVerifyFull for every cert record.
	ClientCert ClientCertMode
	// ClientName is the certificate field compared with the user name.
	ClientName ClientName
	// Map is the map option (the pg_ident.conf map name), or "".
	Map string
	// ClientCA is the clientca option as written, a pgcertgate extension:
	// "@NAME" for a named CA set, or a PEM file (ClientCASet resolves
	// it); "" when the line uses ssl_ca_file.
	ClientCA string
	// ClientKeyUsageRequire is clientkeyusage=require, a pgcertgate
	// extension: the leaf needs an extendedKeyUsage with clientAuth, and a
	// keyUsage, if any, with digitalSignature.
	ClientKeyUsageRequire bool
	// Warnings are the messages PostgreSQL logs for the record without
	// refusing it, such as an invalid ldapscheme value.
	Warnings []string

	dbRegexps   []*are.Regexp // parallel to Database; nil for non-regex tokens
	userRegexps []*are.Regexp // parallel to User
}

// Location returns "file:line".
func (e *Entry) Location() string { return fmt.Sprintf("%s:%d", e.File, e.Line) }

// String returns the record in canonical form: one line, single spaces,
// lists joined with commas, quoting only where needed. Parsing the result
// gives an Entry with the same String.
func (e *Entry) String() string {
	var b strings.Builder
	b.WriteString(e.ConnType.String())
	b.WriteByte(' ')
	b.WriteString(authfile.Field(e.Database).String())
	b.WriteByte(' ')
	b.WriteString(authfile.Field(e.User).String())
	if e.ConnType != ConnLocal {
		b.WriteByte(' ')
		b.WriteString(e.Address.String())
	}
	b.WriteByte(' ')
	b.WriteString(e.Method.String())
	for _, o := range e.Options {
		b.WriteByte(' ')
		b.WriteString(o.String())
	}
	return b.String()
}

// UsesMembership reports whether matching the record may need role
// membership: an unquoted +role in the user field, or samerole/samegroup
// in the database field. Records without it never call the RoleChecker.
func (e *Entry) UsesMembership() bool {
	for _, d := range e.Database {
		if d.IsKeyword("samerole") || d.IsKeyword("samegroup") {
			return true
		}
	}
	for _, u := range e.User {
		if isMemberCheck(u) {
			return true
		}
	}
	return false
}

// isMemberCheck is hba.c token_is_member_check.
func isMemberCheck(s authfile.String) bool { return !s.Quoted && strings.HasPrefix(s.Value, "+") }

// Conf is a loaded pg_hba.conf.
type Conf struct {
	// Entries are the records in file order, includes expanded in place.
	Entries []*Entry
	// Warnings are the tokenizer's non-fatal findings, such as skipped
	// include_if_exists files. A record's own are in its Entry.Warnings.
	Warnings []*authfile.Error
}

// String returns the canonical form of every record, one per line.
func (c *Conf) String() string {
	var b strings.Builder
	for _, e := range c.Entries {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Load reads, tokenizes and parses a pg_hba.conf, mirroring hba.c
// load_hba: every line is checked and every error collected; if any line is
// bad the whole file is refused and err is the errors.Join of one *Error per
// bad line, in file order. A file without records is refused with
// `configuration file "…" contains no entries`.
func Load(path string, opts authfile.ReadOptions) (*Conf, error) {
	recs, warnings := authfile.ReadRecords(path, opts)
	conf := &Conf{Warnings: warnings}
	var errs []error
	for _, r := range recs {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		e, err := parseLine(r.Line)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conf.add(e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(conf.Entries) == 0 {
		return nil, &authfile.Error{File: path, Msg: fmt.Sprintf("configuration file %s contains no entries", pgQuote(path))}
	}
	return conf, nil
}

// Parse parses tokenized lines (from authfile.ReadFile). Like Load it
// collects every error and returns no Conf if there is any. Unlike Load it
// accepts an empty list, since it does not know the file's name.
func Parse(lines []authfile.Line) (*Conf, error) {
	conf := &Conf{}
	var errs []error
	for _, l := range lines {
		e, err := parseLine(l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conf.add(e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return conf, nil
}

func (c *Conf) add(e *Entry) {
	e.RuleNumber = len(c.Entries) + 1
	c.Entries = append(c.Entries, e)
}

// pgQuote formats a string the way PostgreSQL's \"%s\" does: raw bytes
// between double quotes, without Go escaping.
func pgQuote(s string) string { return `"` + s + `"` }

// lineErr builds the error for a record.
func lineErr(l authfile.Line, format string, args ...any) *authfile.Error {
	return &authfile.Error{File: l.File, Line: l.Line, Msg: fmt.Sprintf(format, args...)}
}

// compileTokens compiles the /regex tokens of a database or user field
// (hba.c regcomp_auth_token: any token starting with '/', quoted or not).
// The engine is the one pg_ident.conf uses too, as in PostgreSQL: an ARE
// matched byte-wise in the C locale. Its error text is PostgreSQL's
// "invalid regular expression" message, or pgcertgate's refusal of a
// pattern Go's RE2 cannot match the same way.
func compileTokens(l authfile.Line, toks []authfile.String) ([]*are.Regexp, *authfile.Error) {
	var res []*are.Regexp
	for i, t := range toks {
		if !strings.HasPrefix(t.Value, "/") {
			continue
		}
		re, err := are.Compile(t.Value[1:])
		if err != nil {
			return nil, lineErr(l, "%s", err.Error())
		}
		if res == nil {
			res = make([]*are.Regexp, len(toks))
		}
		res[i] = re
	}
	return res, nil
}

// parseLine mirrors hba.c parse_hba_line. It returns the entry, with the
// messages PostgreSQL logs without refusing the line, or the first error.
func parseLine(l authfile.Line) (*Entry, *authfile.Error) {
	e := &Entry{File: l.File, Line: l.Line, Raw: l.Raw}
	fields := l.Fields
	next := 0
	field := func() authfile.Field {
		if next >= len(fields) {
			return nil
		}
		f := fields[next]
		next++
		return f
	}

	// Connection type.
	f := field()
	if len(f) > 1 {
		return nil, lineErr(l, "multiple values specified for connection type")
	}
	ct, ok := connTypes[f[0].Value]
	if !ok {
		return nil, lineErr(l, "invalid connection type %s", pgQuote(f[0].Value))
	}
	e.ConnType = ct

	// Databases.
	if f = field(); f == nil {
		return nil, lineErr(l, "end-of-line before database specification")
	}
	e.Database = append([]authfile.String(nil), f...)
	var err *authfile.Error
	if e.dbRegexps, err = compileTokens(l, e.Database); err != nil {
		return nil, err
	}

	// Roles.
	if f = field(); f == nil {
		return nil, lineErr(l, "end-of-line before role specification")
	}
	e.User = append([]authfile.String(nil), f...)
	if e.userRegexps, err = compileTokens(l, e.User); err != nil {
		return nil, err
	}

	if ct != ConnLocal {
		if f = field(); f == nil {
			return nil, lineErr(l, "end-of-line before IP address specification")
		}
		if len(f) > 1 {
			return nil, lineErr(l, "multiple values specified for host address")
		}
		if err := parseAddress(l, f[0], field, &e.Address); err != nil {
			return nil, err
		}
	}

	// Method.
	if f = field(); f == nil {
		return nil, lineErr(l, "end-of-line before authentication method")
	}
	if len(f) > 1 {
		return nil, lineErr(l, "multiple values specified for authentication type")
	}
	m, ok := methodByName(f[0].Value)
	if !ok {
		return nil, lineErr(l, "invalid authentication method %s", pgQuote(f[0].Value))
	}
	if ct == ConnLocal && m == MethodIdent {
		// Backwards compatibility: ident on local sockets means peer.
		m = MethodPeer
	}
	e.Method = m
	switch {
	case ct == ConnLocal && m == MethodGSS:
		return nil, lineErr(l, "gssapi authentication is not supported on local sockets")
	case ct != ConnLocal && m == MethodPeer:
		return nil, lineErr(l, "peer authentication is only supported on local sockets")
	case ct != ConnHostSSL && m == MethodCert:
		return nil, lineErr(l, "cert authentication is only supported on hostssl connections")
	}

	// Options.
	st := &optState{}
	for f = field(); f != nil; f = field() {
		for _, tok := range f {
			name, val, ok := strings.Cut(tok.Value, "=")
			if !ok {
				return nil, lineErr(l, "authentication option not in name=value format: %s", tok.Value)
			}
			e.Options = append(e.Options, Option{Name: name, Value: val})
			if msg := parseAuthOpt(e, st, name, val); msg != "" {
				return nil, lineErr(l, "%s", msg)
			}
		}
	}
	if msg := checkMandatory(e, st); msg != "" {
		return nil, lineErr(l, "%s", msg)
	}
	if m == MethodCert {
		// cert implies the verify-full level.
		e.ClientCert = ClientCertVerifyFull
	}
	e.Warnings = st.warnings
	return e, nil
}

// parseAddress parses the address field (and, for an IP without /bits, the
// netmask field that follows), mirroring the address part of
// parse_hba_line.
func parseAddress(l authfile.Line, tok authfile.String, field func() authfile.Field, a *Address) *authfile.Error {
	switch {
	case tok.IsKeyword("all"):
		a.Kind = AddressAll
		return nil
	case tok.IsKeyword("samehost"):
		a.Kind = AddressSameHost
		return nil
	case tok.IsKeyword("samenet"):
		a.Kind = AddressSameNet
		return nil
	}
	str, bits, hasSlash := strings.Cut(tok.Value, "/")
	ip, ok := parseNumericHost(str)
	if !ok {
		if hasSlash {
			return lineErr(l, "specifying both host name and CIDR mask is invalid: %s", pgQuote(tok.Value))
		}
		a.Kind = AddressHostName
		a.Host = str
		return nil
	}
	a.Kind = AddressIP
	a.IP = ip
	if hasSlash {
		n, ok := parseCIDRBits(bits)
		if !ok || n > ip.BitLen() {
			return lineErr(l, "invalid CIDR mask in address %s", pgQuote(tok.Value))
		}
		a.Mask = cidrMask(ip.Is4(), n)
		a.CIDR = true
		return nil
	}
	f := field()
	if f == nil {
		return lineErr(l, "end-of-line before netmask specification")
	}
	if len(f) > 1 {
		return lineErr(l, "multiple values specified for netmask")
	}
	mask, ok := parseNumericHost(f[0].Value)
	if !ok {
		// getaddrinfo(AI_NUMERICHOST) fails with EAI_NONAME.
		return lineErr(l, "invalid IP mask %s: Name or service not known", pgQuote(f[0].Value))
	}
	if mask.Is4() != ip.Is4() {
		return lineErr(l, "IP address and mask do not match")
	}
	a.Mask = mask.WithZone("")
	return nil
}

// cidrMask builds the mask of n leading one bits (ip.c
// pg_sockaddr_cidr_mask).
func cidrMask(v4 bool, n int) netip.Addr {
	size := 16
	if v4 {
		size = 4
	}
	b := make([]byte, size)
	for i := 0; i < n; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// isDigit and isHex are C's isdigit and isxdigit in the C locale.
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// parseCIDRBits mirrors the strtol call of pg_sockaddr_cidr_mask: optional
// leading white space and sign, decimal digits, nothing after them.
func parseCIDRBits(s string) (int, bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	v := 0
	for i < len(s) && isDigit(s[i]) {
		if v < 1<<20 {
			v = v*10 + int(s[i]-'0')
		}
		i++
	}
	if s == "" || i == start || i != len(s) {
		return 0, false
	}
	if neg {
		v = -v
	}
	if v < 0 {
		return 0, false
	}
	return v, true
}

// parseNumericHost mirrors getaddrinfo with AI_NUMERICHOST as glibc does
// it: IPv4 in inet_aton's forms ("10", "127.1", "0x7f.1", "010.0.0.1"
// octal), or IPv6 (with an optional zone).
func parseNumericHost(s string) (netip.Addr, bool) {
	if v, ok := inetAton(s); ok {
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
	}
	if strings.Contains(s, ":") {
		a, err := netip.ParseAddr(s)
		if err == nil && a.Is6() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// inetAton mirrors glibc's __inet_aton_exact: one to four parts separated
// by dots, each decimal, octal (leading 0) or hexadecimal (0x); the last
// part fills the remaining bytes; nothing may follow.
func inetAton(s string) (uint32, bool) {
	var parts []uint64
	i := 0
	for {
		if i >= len(s) || !isDigit(s[i]) {
			return 0, false
		}
		var val uint64
		base := uint64(10)
		digit := false
		if s[i] == '0' {
			i++
			if i < len(s) && (s[i] == 'x' || s[i] == 'X') {
				base = 16
				i++
			} else {
				base = 8
				digit = true
			}
		}
		for i < len(s) {
			c := s[i]
			switch {
			case isDigit(c):
				if base == 8 && (c == '8' || c == '9') {
					return 0, false
				}
				val = val*base + uint64(c-'0')
			case base == 16 && isHex(c):
				val = val<<4 | uint64(hexVal(c))
			default:
				goto done
			}
			if val > 0xffffffff {
				return 0, false
			}
			digit = true
			i++
		}
	done:
		if i < len(s) && s[i] == '.' {
			if len(parts) > 2 || val > 0xff {
				return 0, false
			}
			parts = append(parts, val)
			i++
			continue
		}
		if i != len(s) || !digit {
			return 0, false
		}
		max := [...]uint64{0xffffffff, 0xffffff, 0xffff, 0xff}[len(parts)]
		if val > max {
			return 0, false
		}
		for k, p := range parts {
			val |= p << (24 - 8*k)
		}
		return uint32(val), true
	}
}

func hexVal(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
