package pgwire

import (
	"fmt"
	"strings"

	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
)

// identityPrefix names the custom settings pgcertgate passes to the
// backend with [backend] pass_client_identity. PostgreSQL accepts dotted
// custom settings in the startup packet as placeholders, readable with
// current_setting('pgcertgate.identity').
const identityPrefix = "pgcertgate."

// refuseForgedIdentity refuses a client that sets pgcertgate.* itself, as
// a startup parameter or inside options, read exactly as the backend will
// read it (pg_split_opts, then getopt's -c and --). It applies whether or
// not pass_client_identity is on, so that turning it on later cannot meet
// clients that already forge it.
func refuseForgedIdentity(si *startupInfo) error {
	for _, p := range si.params {
		names := []string{p[0]}
		if p[0] == "options" {
			names = optionSettingNames(p[1])
		}
		for _, name := range names {
			if strings.HasPrefix(asciiLower(name), identityPrefix) {
				return fatal(pgerr.CodeInsufficientPrivilege, "forged_identity", "parameter \"%s\" cannot be set by the client: pgcertgate sets pgcertgate.* itself", name)
			}
		}
	}
	return nil
}

// asciiLower folds A–Z only, as PostgreSQL's guc_name_compare does; it
// never changes a string's length.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// splitOptions is PostgreSQL's pg_split_opts: arguments are separated by
// whitespace, and a backslash makes the next byte literal.
func splitOptions(s string) []string {
	var args []string
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		var arg []byte
		escaped := false
		for ; i < len(s); i++ {
			c := s[i]
			if isSpace(c) && !escaped {
				break
			}
			if !escaped && c == '\\' {
				escaped = true
				continue
			}
			escaped = false
			arg = append(arg, c)
		}
		args = append(args, string(arg))
	}
	return args
}

func isSpace(c byte) bool { return c == ' ' || ('\t' <= c && c <= '\r') }

// postgresOptString is the getopt string of process_postgres_switches: a
// letter followed by ':' takes an argument.
const postgresOptString = "B:bc:C:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:"

// optionSettingNames returns the setting names the options string sets
// with -c name=value, -cname=value or --name=value (where, as in
// ParseLongOption, '-' in the name means '_').
func optionSettingNames(options string) []string {
	args := splitOptions(options)
	var names []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		for j := 1; j < len(a); j++ {
			opt := a[j]
			k := strings.IndexByte(postgresOptString, opt)
			if k < 0 || k+1 >= len(postgresOptString) || postgresOptString[k+1] != ':' {
				continue // a flag, or unknown: getopt goes on
			}
			value := a[j+1:]
			if value == "" && i+1 < len(args) {
				i++
				value = args[i]
			}
			if opt == 'c' || opt == '-' {
				name, _, _ := strings.Cut(value, "=")
				if opt == '-' {
					name = strings.ReplaceAll(name, "-", "_")
				}
				names = append(names, name)
			}
			break // the rest of this argument was the option's value
		}
	}
	return names
}

// identityParams are the settings pass_client_identity adds to the
// backend startup packet: the client's address, the certificate's DN
// (empty without a certificate) and the pg_hba.conf line that let it in.
func identityParams(c *clientConn, entry *hba.Entry) [][2]string {
	return [][2]string{
		{identityPrefix + "client_addr", c.clientHost()},
		{identityPrefix + "identity", c.identity()},
		{identityPrefix + "hba_line", fmt.Sprintf("%s:%d", entry.File, entry.Line)},
	}
}
