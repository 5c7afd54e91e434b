package config

import (
	"fmt"

	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// hbaWarnings lists what a loaded pg_hba.conf is warned about without
// being refused: PostgreSQL's findings about the files (skipped
// include_if_exists files) first, then, record by record, the messages
// PostgreSQL logs for the record followed by pgcertgate's own. sockets
// says whether unix_socket_directories names any, without which local
// records match nothing.
func hbaWarnings(conf *hba.Conf, sockets bool) []error {
	var out []error
	for _, w := range conf.Warnings {
		out = append(out, w)
	}
	for _, e := range conf.Entries {
		for _, w := range e.Warnings {
			out = append(out, &authfile.Error{File: e.File, Line: e.Line, Msg: w})
		}
		if msg := policyWarning(e, sockets); msg != "" {
			out = append(out, &authfile.Error{File: e.File, Line: e.Line, Msg: msg})
		}
	}
	return out
}

// policyWarning says why a record PostgreSQL accepts can never let a
// connection through pgcertgate, or "" when it can: pgcertgate listens on
// a Unix-domain socket only with unix_socket_directories, has no GSSAPI
// encryption, and performs only some methods.
func policyWarning(e *hba.Entry, sockets bool) string {
	switch {
	case e.ConnType == hba.ConnLocal && !sockets:
		return `connection type "local" never matches: unix_socket_directories is empty, so pgcertgate has no Unix-domain socket`
	case e.ConnType == hba.ConnHostGSS:
		return `connection type "hostgssenc" never matches: pgcertgate does not support GSSAPI encryption`
	case !performed(e.Method):
		return fmt.Sprintf(`authentication method "%s" is not performed by pgcertgate; connections matching this line will be refused`, e.Method)
	}
	return ""
}

// performed reports whether pgcertgate itself carries out the method: only
// trust, reject, cert and (on local records, the only ones that may have
// it) peer. A connection that matches a record with any other method is
// refused.
func performed(m hba.Method) bool {
	return m == hba.MethodTrust || m == hba.MethodReject || m == hba.MethodCert || m == hba.MethodPeer
}
