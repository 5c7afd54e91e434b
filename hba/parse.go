package hba

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pgcertgate/pgcertgate/internal/are"
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
	Database []String
	User     []String
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
	b.WriteString(Field(e.Database).String())
	b.WriteByte(' ')
	b.WriteString(Field(e.User).String())
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
func isMemberCheck(s String) bool { return !s.Quoted && strings.HasPrefix(s.Value, "+") }

// Conf is a loaded pg_hba.conf.
type Conf struct {
	// Entries are the records in file order, includes expanded in place.
	Entries []*Entry
	// Warnings are non-fatal findings: records pgcertgate can never serve,
	// skipped include_if_exists files, values PostgreSQL only logs.
	Warnings []*Error
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
func Load(path string, opts ReadOptions) (*Conf, error) {
	recs, warnings := readRecords(path, opts)
	conf := &Conf{Warnings: warnings}
	var errs []error
	for _, r := range recs {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		e, warn, err := parseLine(r.line)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conf.add(e, warn)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(conf.Entries) == 0 {
		return nil, &Error{File: path, Msg: fmt.Sprintf("configuration file %s contains no entries", pgQuote(path))}
	}
	return conf, nil
}

// Parse parses tokenized lines (from ReadFile). Like Load it collects every
// error and returns no Conf if there is any. Unlike Load it accepts an empty
// list, since it does not know the file's name.
func Parse(lines []Line) (*Conf, error) {
	conf := &Conf{}
	var errs []error
	for _, l := range lines {
		e, warn, err := parseLine(l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conf.add(e, warn)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return conf, nil
}

func (c *Conf) add(e *Entry, warn []string) {
	e.RuleNumber = len(c.Entries) + 1
	c.Entries = append(c.Entries, e)
	for _, w := range warn {
		c.Warnings = append(c.Warnings, &Error{File: e.File, Line: e.Line, Msg: w})
	}
	switch {
	case e.ConnType == ConnLocal:
		c.Warnings = append(c.Warnings, &Error{File: e.File, Line: e.Line,
			Msg: `connection type "local" never matches: pgcertgate has no Unix-domain socket`})
	case e.ConnType == ConnHostGSS:
		c.Warnings = append(c.Warnings, &Error{File: e.File, Line: e.Line,
			Msg: `connection type "hostgssenc" never matches: pgcertgate does not support GSSAPI encryption`})
	case !e.Method.Performed():
		c.Warnings = append(c.Warnings, &Error{File: e.File, Line: e.Line,
			Msg: fmt.Sprintf("authentication method %s is not performed by pgcertgate; connections matching this line will be refused", pgQuote(e.Method.String()))})
	}
}

// lineErr builds the error for a record.
func lineErr(l Line, format string, args ...any) *Error {
	return &Error{File: l.File, Line: l.Line, Msg: fmt.Sprintf(format, args...)}
}

// compileTokens compiles the /regex tokens of a database or user field
// (hba.c regcomp_auth_token: any token starting with '/', quoted or not).
// The engine is the one pg_ident.conf uses too, as in PostgreSQL: an ARE
// matched byte-wise in the C locale. Its error text is PostgreSQL's
// "invalid regular expression" message, or pgcertgate's refusal of a
// pattern Go's RE2 cannot match the same way.
func compileTokens(l Line, toks []String) ([]*are.Regexp, *Error) {
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

// parseLine mirrors hba.c parse_hba_line. It returns the entry, the
// messages PostgreSQL logs without refusing the line, or the first error.
func parseLine(l Line) (*Entry, []string, *Error) {
	e := &Entry{File: l.File, Line: l.Line, Raw: l.Raw}
	fields := l.Fields
	next := 0
	field := func() Field {
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
		return nil, nil, lineErr(l, "multiple values specified for connection type")
	}
	ct, ok := connTypes[f[0].Value]
	if !ok {
		return nil, nil, lineErr(l, "invalid connection type %s", pgQuote(f[0].Value))
	}
	e.ConnType = ct

	// Databases.
	if f = field(); f == nil {
		return nil, nil, lineErr(l, "end-of-line before database specification")
	}
	e.Database = append([]String(nil), f...)
	var err *Error
	if e.dbRegexps, err = compileTokens(l, e.Database); err != nil {
		return nil, nil, err
	}

	// Roles.
	if f = field(); f == nil {
		return nil, nil, lineErr(l, "end-of-line before role specification")
	}
	e.User = append([]String(nil), f...)
	if e.userRegexps, err = compileTokens(l, e.User); err != nil {
		return nil, nil, err
	}

	if ct != ConnLocal {
		if f = field(); f == nil {
			return nil, nil, lineErr(l, "end-of-line before IP address specification")
		}
		if len(f) > 1 {
			return nil, nil, lineErr(l, "multiple values specified for host address")
		}
		if err := parseAddress(l, f[0], field, &e.Address); err != nil {
			return nil, nil, err
		}
	}

	// Method.
	if f = field(); f == nil {
		return nil, nil, lineErr(l, "end-of-line before authentication method")
	}
	if len(f) > 1 {
		return nil, nil, lineErr(l, "multiple values specified for authentication type")
	}
	m, ok := methodByName(f[0].Value)
	if !ok {
		return nil, nil, lineErr(l, "invalid authentication method %s", pgQuote(f[0].Value))
	}
	if ct == ConnLocal && m == MethodIdent {
		// Backwards compatibility: ident on local sockets means peer.
		m = MethodPeer
	}
	e.Method = m
	switch {
	case ct == ConnLocal && m == MethodGSS:
		return nil, nil, lineErr(l, "gssapi authentication is not supported on local sockets")
	case ct != ConnLocal && m == MethodPeer:
		return nil, nil, lineErr(l, "peer authentication is only supported on local sockets")
	case ct != ConnHostSSL && m == MethodCert:
		return nil, nil, lineErr(l, "cert authentication is only supported on hostssl connections")
	}

	// Options.
	st := &optState{}
	for f = field(); f != nil; f = field() {
		for _, tok := range f {
			name, val, ok := strings.Cut(tok.Value, "=")
			if !ok {
				return nil, nil, lineErr(l, "authentication option not in name=value format: %s", tok.Value)
			}
			e.Options = append(e.Options, Option{Name: name, Value: val})
			if msg := parseAuthOpt(e, st, name, val); msg != "" {
				return nil, nil, lineErr(l, "%s", msg)
			}
		}
	}
	if msg := checkMandatory(e, st); msg != "" {
		return nil, nil, lineErr(l, "%s", msg)
	}
	if m == MethodCert {
		// cert implies the verify-full level.
		e.ClientCert = ClientCertVerifyFull
	}
	return e, st.warnings, nil
}

// parseAddress parses the address field (and, for an IP without /bits, the
// netmask field that follows), mirroring the address part of
// parse_hba_line.
func parseAddress(l Line, tok String, field func() Field, a *Address) *Error {
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

// optState collects what parse_hba_auth_opt stores and the final checks
// of parse_hba_line read.
type optState struct {
	ldapServer, ldapBaseDN, ldapBindDN, ldapBindPasswd            bool
	ldapSearchAttribute, ldapSearchFilter, ldapPrefix, ldapSuffix bool
	radiusServers, radiusSecrets, radiusPorts, radiusIdentifiers  []string
	radiusServersSet, radiusSecretsSet                            bool
	oauthIssuer, oauthScope, oauthSkipUsermap                     bool
	warnings                                                      []string
}

// onlyValidFor is INVALID_AUTH_OPTION's message.
func onlyValidFor(opt, methods string) string {
	return fmt.Sprintf("authentication option %s is only valid for authentication methods %s", pgQuote(opt), methods)
}

// parseAuthOpt mirrors hba.c parse_hba_auth_opt (PostgreSQL 18). It returns
// the error message, or "" when the option is accepted.
func parseAuthOpt(e *Entry, st *optState, name, val string) string {
	m := e.Method
	require := func(want Method, methods string) string {
		if m != want {
			return onlyValidFor(name, methods)
		}
		return ""
	}
	// radiusList is what hba.c repeats for each of the four RADIUS list
	// options: REQUIRE_AUTH_OPTION(uaRADIUS, ...), then SplitGUCList of the
	// value, refused as bad followed by the quoted value.
	radiusList := func(bad string) ([]string, string) {
		if msg := require(MethodRADIUS, "radius"); msg != "" {
			return nil, msg
		}
		list, ok := splitGUCList(val)
		if !ok {
			return nil, bad + " " + pgQuote(val)
		}
		return list, ""
	}
	switch name {
	case "map":
		switch m {
		case MethodIdent, MethodPeer, MethodGSS, MethodSSPI, MethodCert, MethodOAuth:
		default:
			return onlyValidFor("map", "ident, peer, gssapi, sspi, cert, and oauth")
		}
		e.Map = val
	case "clientcert":
		if e.ConnType != ConnHostSSL {
			return `clientcert can only be configured for "hostssl" rows`
		}
		switch val {
		case "verify-full":
			e.ClientCert = ClientCertVerifyFull
		case "verify-ca":
			if m == MethodCert {
				return `clientcert can only be set to "verify-full" when using "cert" authentication`
			}
			e.ClientCert = ClientCertVerifyCA
		default:
			return fmt.Sprintf("invalid value for clientcert: %s", pgQuote(val))
		}
	case "clientname":
		if e.ConnType != ConnHostSSL {
			return `clientname can only be configured for "hostssl" rows`
		}
		found := false
		for i, n := range clientNames {
			if n == val {
				e.ClientName = ClientName(i)
				found = true
			}
		}
		if !found {
			return fmt.Sprintf("invalid value for clientname: %s", pgQuote(val))
		}
	case "pamservice", "pam_use_hostname":
		return require(MethodPAM, "pam")
	case "ldapurl":
		if msg := require(MethodLDAP, "ldap"); msg != "" {
			return msg
		}
		return parseLDAPURL(st, val)
	case "ldaptls":
		return require(MethodLDAP, "ldap")
	case "ldapscheme":
		if msg := require(MethodLDAP, "ldap"); msg != "" {
			return msg
		}
		if val != "ldap" && val != "ldaps" {
			// PostgreSQL logs this but keeps the line.
			st.warnings = append(st.warnings, fmt.Sprintf("invalid ldapscheme value: %s", pgQuote(val)))
		}
	case "ldapserver":
		st.ldapServer = true
		return require(MethodLDAP, "ldap")
	case "ldapport":
		if msg := require(MethodLDAP, "ldap"); msg != "" {
			return msg
		}
		if atoi(val) == 0 {
			return fmt.Sprintf("invalid LDAP port number: %s", pgQuote(val))
		}
	case "ldapbinddn":
		st.ldapBindDN = true
		return require(MethodLDAP, "ldap")
	case "ldapbindpasswd":
		st.ldapBindPasswd = true
		return require(MethodLDAP, "ldap")
	case "ldapsearchattribute":
		st.ldapSearchAttribute = true
		return require(MethodLDAP, "ldap")
	case "ldapsearchfilter":
		st.ldapSearchFilter = true
		return require(MethodLDAP, "ldap")
	case "ldapbasedn":
		st.ldapBaseDN = true
		return require(MethodLDAP, "ldap")
	case "ldapprefix":
		st.ldapPrefix = true
		return require(MethodLDAP, "ldap")
	case "ldapsuffix":
		st.ldapSuffix = true
		return require(MethodLDAP, "ldap")
	case "krb_realm", "include_realm":
		if m != MethodGSS && m != MethodSSPI {
			return onlyValidFor(name, "gssapi and sspi")
		}
	case "compat_realm", "upn_username":
		if m != MethodSSPI {
			return onlyValidFor(name, "sspi")
		}
	case "radiusservers":
		list, msg := radiusList("could not parse RADIUS server list")
		if msg != "" {
			return msg
		}
		// PostgreSQL also resolves every server name here; a pure package
		// cannot, so unresolvable names are accepted.
		st.radiusServers, st.radiusServersSet = list, true
	case "radiusports":
		list, msg := radiusList("invalid RADIUS port number:")
		if msg != "" {
			return msg
		}
		for _, p := range list {
			if atoi(p) == 0 {
				return fmt.Sprintf("invalid RADIUS port number: %s", pgQuote(val))
			}
		}
		st.radiusPorts = list
	case "radiussecrets":
		list, msg := radiusList("could not parse RADIUS secret list")
		if msg != "" {
			return msg
		}
		st.radiusSecrets, st.radiusSecretsSet = list, true
	case "radiusidentifiers":
		list, msg := radiusList("could not parse RADIUS identifiers list")
		if msg != "" {
			return msg
		}
		st.radiusIdentifiers = list
	case "issuer":
		st.oauthIssuer = true
		return require(MethodOAuth, "oauth")
	case "scope":
		st.oauthScope = true
		return require(MethodOAuth, "oauth")
	case "validator":
		return require(MethodOAuth, "oauth")
	case "delegate_ident_mapping":
		if msg := require(MethodOAuth, "oauth"); msg != "" {
			return msg
		}
		st.oauthSkipUsermap = val == "1"
	default:
		return fmt.Sprintf("unrecognized authentication option name: %s", pgQuote(name))
	}
	return ""
}

// checkMandatory mirrors the checks at the end of parse_hba_line.
func checkMandatory(e *Entry, st *optState) string {
	mandatory := func(method, arg string) string {
		return fmt.Sprintf("authentication method %s requires argument %s to be set", pgQuote(method), pgQuote(arg))
	}
	switch e.Method {
	case MethodLDAP:
		// ldapserver is not mandatory with OpenLDAP (DNS SRV lookup).
		if st.ldapPrefix || st.ldapSuffix {
			if st.ldapBaseDN || st.ldapBindDN || st.ldapBindPasswd || st.ldapSearchAttribute || st.ldapSearchFilter {
				return "cannot mix options for simple bind and search+bind modes"
			}
		} else if !st.ldapBaseDN {
			return `authentication method "ldap" requires argument "ldapbasedn", "ldapprefix", or "ldapsuffix" to be set`
		}
		if st.ldapSearchAttribute && st.ldapSearchFilter {
			return "cannot use ldapsearchattribute together with ldapsearchfilter"
		}
	case MethodRADIUS:
		// An empty list is NIL in PostgreSQL, so it fails the mandatory
		// check before the "cannot be empty" ones.
		if len(st.radiusServers) == 0 {
			return mandatory("radius", "radiusservers")
		}
		if len(st.radiusSecrets) == 0 {
			return mandatory("radius", "radiussecrets")
		}
		n := len(st.radiusServers)
		if s := len(st.radiusSecrets); s != 1 && s != n {
			return fmt.Sprintf("the number of RADIUS secrets (%d) must be 1 or the same as the number of RADIUS servers (%d)", s, n)
		}
		if p := len(st.radiusPorts); p > 1 && p != n {
			return fmt.Sprintf("the number of RADIUS ports (%d) must be 1 or the same as the number of RADIUS servers (%d)", p, n)
		}
		if p := len(st.radiusIdentifiers); p > 1 && p != n {
			return fmt.Sprintf("the number of RADIUS identifiers (%d) must be 1 or the same as the number of RADIUS servers (%d)", p, n)
		}
	case MethodOAuth:
		if !st.oauthScope {
			return mandatory("oauth", "scope")
		}
		if !st.oauthIssuer {
			return mandatory("oauth", "issuer")
		}
		// check_oauth_validator depends on the server's
		// oauth_validator_libraries setting, which pgcertgate does not
		// have; it is not checked.
		if st.oauthSkipUsermap && e.Map != "" {
			return "map cannot be used in combination with delegate_ident_mapping"
		}
	}
	return ""
}

// atoi mirrors C atoi: leading white space, an optional sign, digits; it
// stops at the first other byte and yields 0 when there are no digits.
func atoi(s string) int {
	i := 0
	for i < len(s) && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	v := 0
	for i < len(s) && isDigit(s[i]) {
		if v < 1<<40 {
			v = v*10 + int(s[i]-'0')
		}
		i++
	}
	if neg {
		return -v
	}
	return v
}

func isGUCSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// splitGUCList mirrors varlena.c SplitGUCList with a comma separator:
// white space around elements is dropped, elements may be double-quoted
// ("" for a quote), an empty string is an empty list, and an empty
// unquoted element is an error.
func splitGUCList(s string) ([]string, bool) {
	i := 0
	for i < len(s) && isGUCSpace(s[i]) {
		i++
	}
	if i == len(s) {
		return nil, true
	}
	var out []string
	for {
		var cur string
		if s[i] == '"' {
			var b strings.Builder
			i++
			for {
				j := strings.IndexByte(s[i:], '"')
				if j < 0 {
					return nil, false
				}
				b.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			cur = b.String()
		} else {
			start := i
			for i < len(s) && s[i] != ',' && !isGUCSpace(s[i]) {
				i++
			}
			if i == start {
				return nil, false
			}
			cur = s[start:i]
		}
		for i < len(s) && isGUCSpace(s[i]) {
			i++
		}
		out = append(out, cur)
		if i < len(s) && s[i] == ',' {
			i++
			for i < len(s) && isGUCSpace(s[i]) {
				i++
			}
			if i == len(s) {
				// "a," : the next element is empty and unquoted.
				return nil, false
			}
			continue
		}
		if i == len(s) {
			return out, true
		}
		return nil, false
	}
}

// LDAP URL error codes of OpenLDAP's ldap_url_parse, and the text
// PostgreSQL prints for them: it passes them to ldap_err2string, which
// knows them as unrelated LDAP result codes (checked against PostgreSQL 15
// on Debian: ldapurl=foo gives "Time limit exceeded").
var ldapURLErrText = map[int]string{
	3:  "Time limit exceeded",                   // LDAP_URL_ERR_BADSCHEME
	4:  "Size limit exceeded",                   // LDAP_URL_ERR_BADENCLOSURE
	5:  "Compare False",                         // LDAP_URL_ERR_BADURL
	6:  "Compare True",                          // LDAP_URL_ERR_BADHOST
	7:  "Authentication method not supported",   // LDAP_URL_ERR_BADATTRS
	8:  "Strong(er) authentication required",    // LDAP_URL_ERR_BADSCOPE
	9:  "Partial results and referral received", // LDAP_URL_ERR_BADFILTER
	10: "Referral",                              // LDAP_URL_ERR_BADEXTS
}

// parseLDAPURL is a best-effort mirror of the ldapurl branch of
// parse_hba_auth_opt with OpenLDAP's ldap_url_parse: it checks the scheme
// and port and records which search options the URL sets.
func parseLDAPURL(st *optState, val string) string {
	fail := func(code int) string {
		return fmt.Sprintf("could not parse LDAP URL %s: %s", pgQuote(val), ldapURLErrText[code])
	}
	u := val
	enclosed := false
	if strings.HasPrefix(u, "<") {
		enclosed = true
		u = u[1:]
	}
	if len(u) >= 4 && strings.EqualFold(u[:4], "URL:") {
		u = u[4:]
	}
	if enclosed {
		if !strings.HasSuffix(u, ">") {
			return fail(4)
		}
		u = u[:len(u)-1]
	}
	scheme := ""
	for _, s := range []string{"ldap", "ldaps", "ldapi", "cldap"} {
		if len(u) >= len(s)+3 && strings.EqualFold(u[:len(s)+3], s+"://") {
			scheme = s
		}
	}
	if scheme == "" {
		return fail(3)
	}
	u = u[len(scheme)+3:]
	hostport, rest, hasPath := strings.Cut(u, "/")
	if !hasPath {
		hostport, rest, _ = strings.Cut(u, "?")
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		port := hostport[i+1:]
		if port != "" {
			if _, err := strconv.Atoi(port); err != nil {
				return fail(5)
			}
		}
	}
	st.ldapServer = true
	if hasPath {
		parts := strings.SplitN(rest, "?", 4)
		st.ldapBaseDN = true
		if len(parts) > 1 && parts[1] != "" {
			st.ldapSearchAttribute = true
		}
		if len(parts) > 2 {
			switch strings.ToLower(parts[2]) {
			case "", "base", "one", "onelevel", "sub", "subtree", "subord", "subordinate", "children":
			default:
				return fail(8)
			}
		}
		if len(parts) > 3 {
			filter, _, _ := strings.Cut(parts[3], "?")
			if filter != "" {
				st.ldapSearchFilter = true
			}
		}
	}
	if scheme != "ldap" && scheme != "ldaps" {
		return fmt.Sprintf("unsupported LDAP URL scheme: %s", scheme)
	}
	return ""
}
