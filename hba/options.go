package hba

import (
	"fmt"
	"strconv"
	"strings"
)

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
	case "clientca":
		return parseClientCA(e, val)
	case "clientkeyusage":
		return parseClientKeyUsage(e, val)
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
	if msg := checkCertExtensions(e); msg != "" {
		return msg
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
