package pgwire

import (
	"fmt"
	"strings"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/hba"
)

// identityPrefix names the custom settings pgcertgate passes to the
// backend with [backend] pass_client_identity. PostgreSQL accepts dotted
// custom settings in the startup packet as placeholders, readable with
// current_setting('pgcertgate.identity').
const identityPrefix = "pgcertgate."

// refuseForgedIdentity refuses a client that sets pgcertgate.* itself, as
// a startup parameter or inside options (-c pgcertgate.x=… or
// --pgcertgate.x=…). Setting names are case-insensitive in PostgreSQL, so
// the check is too. It applies whether or not pass_client_identity is on,
// so that turning it on later cannot meet clients that already forge it.
func refuseForgedIdentity(si *startupInfo) error {
	for _, p := range si.params {
		name := strings.ToLower(p[0])
		if strings.HasPrefix(name, identityPrefix) || (name == "options" && strings.Contains(strings.ToLower(p[1]), identityPrefix)) {
			return fatal("42501", "forged_identity", "parameter \"%s\" cannot be set by the client: pgcertgate sets pgcertgate.* itself", forgedName(p))
		}
	}
	return nil
}

func forgedName(p [2]string) string {
	if strings.ToLower(p[0]) != "options" {
		return p[0]
	}
	lower := strings.ToLower(p[1])
	i := strings.Index(lower, identityPrefix)
	end := i
	for end < len(lower) && lower[end] != '=' && lower[end] != ' ' {
		end++
	}
	return p[1][i:end]
}

// identityParams are the settings pass_client_identity adds to the
// backend startup packet: the client's address, the certificate's DN
// (empty without a certificate) and the pg_hba.conf line that let it in.
func identityParams(c *clientConn, entry *hba.Entry) [][2]string {
	dn := ""
	if c.chain != nil {
		dn, _ = certauth.DistinguishedName(c.chain[0])
	}
	return [][2]string{
		{identityPrefix + "client_addr", c.addr.String()},
		{identityPrefix + "identity", dn},
		{identityPrefix + "hba_line", fmt.Sprintf("%s:%d", entry.File, entry.Line)},
	}
}
