package hba

import (
	"fmt"
	"path/filepath"
	"strings"
)

// pgcertgate's certificate options. PostgreSQL refuses them all
// ("unrecognized authentication option name"); a stock pg_hba.conf never
// has them, and `check` warns about each one.

// ValidCASetName reports whether name can name a [client_ca.NAME] table
// and be written clientca=@NAME: letters, digits, '_' and '-'.
func ValidCASetName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseClientCA is the clientca option: "@NAME" or a file name.
func parseClientCA(e *Entry, val string) string {
	if e.ConnType != ConnHostSSL {
		return `clientca can only be configured for "hostssl" rows`
	}
	if name, ok := strings.CutPrefix(val, "@"); ok && !ValidCASetName(name) {
		return fmt.Sprintf("invalid value for clientca: %s (a CA set name has only letters, digits, \"_\" and \"-\")", pgQuote(val))
	}
	if val == "" {
		return `invalid value for clientca: ""`
	}
	e.ClientCA = val
	return ""
}

// parseClientKeyUsage is the clientkeyusage option: "require", or
// "openssl" (OpenSSL's purpose check alone, the default; it cannot loosen
// a global ssl_client_key_usage = "require", which the handshake applies).
func parseClientKeyUsage(e *Entry, val string) string {
	if e.ConnType != ConnHostSSL {
		return `clientkeyusage can only be configured for "hostssl" rows`
	}
	switch val {
	case "require":
		e.ClientKeyUsageRequire = true
	case "openssl":
		e.ClientKeyUsageRequire = false
	default:
		return fmt.Sprintf("invalid value for clientkeyusage: %s", pgQuote(val))
	}
	return ""
}

// checkCertExtensions checks what the certificate options need from the
// whole line, once every option is read: clientca and clientkeyusage
// only mean something where the method checks the client certificate,
// and a pin needs a map, since a fingerprint never equals a user name.
func checkCertExtensions(e *Entry) string {
	checksCert := e.Method == MethodCert || e.ClientCert != ClientCertNone
	switch {
	case e.ClientCA != "" && !checksCert:
		return fmt.Sprintf(`clientca can only be configured where the client certificate is checked: method "cert", or clientcert=verify-ca or verify-full (method %s checks none)`, pgQuote(e.Method.String()))
	case e.ClientKeyUsageRequire && !checksCert:
		return fmt.Sprintf(`clientkeyusage can only be configured where the client certificate is checked: method "cert", or clientcert=verify-ca or verify-full (method %s checks none)`, pgQuote(e.Method.String()))
	case e.ClientName == ClientNameSHA256 && e.Map == "":
		return "clientname=SHA256 needs map=: a certificate fingerprint never equals a user name, so pg_ident.conf must bind it to roles"
	}
	return ""
}

// ClientCASet names the CA set the line requires: "@NAME" for clientca=@NAME,
// the clientca= file's path (a relative one taken from the directory of
// the pg_hba.conf that holds the line, cleaned), or "" when the line has
// no clientca= and uses ssl_ca_file.
func (e *Entry) ClientCASet() string {
	v := e.ClientCA
	if v == "" || strings.HasPrefix(v, "@") {
		return v
	}
	if !filepath.IsAbs(v) {
		v = filepath.Join(filepath.Dir(e.File), v)
	}
	return filepath.Clean(v)
}

// CertExtensions lists the line's clientca= and clientkeyusage= options
// as written, for the warning that PostgreSQL refuses them (clientname's
// extensions are ClientName.Extension).
func (e *Entry) CertExtensions() []Option {
	var out []Option
	for _, o := range e.Options {
		if o.Name == "clientca" || o.Name == "clientkeyusage" {
			out = append(out, o)
		}
	}
	return out
}
