package pgwire

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/hba"
)

// authInput is what authentication decides on: who connects, from where,
// how, and with which verified certificate.
type authInput struct {
	addr        netip.Addr
	ssl         bool
	chain       []*x509.Certificate // verified, leaf first; nil without a certificate
	user        string
	database    string
	replication replicationMode
}

// authRecord collects what authentication saw, for the audit log and for
// `pgcertgate explain`. None of it reaches the client.
type authRecord struct {
	entry *hba.Entry
	// attempts is the pg_hba.conf trace; only filled when explaining.
	attempts []hba.Attempt
	// identities are the certificate names tried against the user or map.
	identities []string
	// mapLine is the pg_ident.conf line that accepted the identity.
	mapLine string
	// mapLog is what PostgreSQL logs when the name check fails.
	mapLog string
}

func (r *authRecord) attrs() []slog.Attr {
	var a []slog.Attr
	if r.entry != nil {
		a = append(a, slog.String("hba_line", fmt.Sprintf("%s:%d", r.entry.File, r.entry.Line)),
			slog.String("hba_method", r.entry.Method.String()))
		if r.entry.Map != "" {
			a = append(a, slog.String("ident_map", r.entry.Map))
		}
	}
	for _, id := range r.identities {
		a = append(a, slog.String("cert_identity", id))
	}
	if r.mapLine != "" {
		a = append(a, slog.String("ident_line", r.mapLine))
	}
	return a
}

// authenticate runs authorize for a live connection and notes the outcome.
func (c *clientConn) authenticate(ctx context.Context, si *startupInfo) (*hba.Entry, error) {
	rec := &authRecord{}
	in := authInput{addr: c.addr, ssl: c.ssl, chain: c.chain, user: si.user, database: si.database, replication: si.replication}
	err := c.state.authorize(ctx, in, rec, false)
	c.note(rec.attrs()...)
	return rec.entry, err
}

// authorize applies pg_hba.conf and the matched line's method, mirroring
// PostgreSQL's ClientAuthentication (auth.c). A nil error means the client
// may proceed to the backend. With explain set, rec.attempts records every
// line tried.
func (st *state) authorize(ctx context.Context, in authInput, rec *authRecord, explain bool) error {
	req := hba.Request{
		Addr:        in.addr,
		SSL:         in.ssl,
		Database:    in.database,
		User:        in.user,
		Replication: in.replication == replicationPhysical,
	}
	var err error
	if explain {
		rec.entry, rec.attempts, err = st.rt.HBA.Explain(ctx, req, st.hbaEnv)
	} else {
		rec.entry, err = st.rt.HBA.Match(ctx, req, st.hbaEnv)
	}
	if err != nil {
		return fmt.Errorf("evaluating pg_hba.conf: %w", err)
	}
	entry := rec.entry
	if entry == nil {
		return noHBAEntry(in)
	}

	// Checks PostgreSQL makes before running the method.
	if entry.ClientCert != hba.ClientCertNone {
		if st.rt.Verifier == nil {
			return fatal(codeConfigFileError, "no_ca_configured", "client certificates can only be checked if a root certificate store is available")
		}
		if in.chain == nil {
			return fatal(codeInvalidAuthorization, "no_client_cert", "connection requires a valid client certificate")
		}
	}

	switch entry.Method {
	case hba.MethodReject:
		return hbaRejects(in)
	case hba.MethodTrust, hba.MethodCert:
	default:
		// A stock pg_hba.conf line whose method pgcertgate does not
		// perform: refuse, never fall through to another method.
		e := fatal(codeInvalidAuthorization, "method_not_supported",
			"authentication method \"%s\" is not supported by pgcertgate for user \"%s\"", entry.Method, in.user)
		e.LogDetail = fmt.Sprintf("Connection matched file %q line %d: %q", entry.File, entry.Line, entry.Raw)
		return e
	}

	// cert always checks the name; trust does with clientcert=verify-full.
	if entry.Method == hba.MethodCert || entry.ClientCert == hba.ClientCertVerifyFull {
		return st.checkCertName(ctx, in, rec)
	}
	return nil
}

// checkCertName is PostgreSQL's CheckCertAuth: the certificate's CN or DN
// (or, as pgcertgate extensions, a SAN) must equal the user or pass the
// line's map. With several SANs of the chosen kind, each is tried in
// certificate order and the first one accepted wins.
func (st *state) checkCertName(ctx context.Context, in authInput, rec *authRecord) error {
	entry := rec.entry
	failed := authFailed(in, entry)
	if len(in.chain) == 0 {
		// authorize refuses certificate-less clients on these lines
		// first; this keeps that an invariant rather than a panic.
		return fatal(codeInvalidAuthorization, "no_client_cert", "connection requires a valid client certificate")
	}
	names, err := certIdentities(in.chain[0], entry.ClientName)
	if err != nil || len(names) == 0 {
		failed.LogDetail = fmt.Sprintf("certificate authentication failed for user %q: client certificate contains no user name", in.user)
		return failed
	}
	rec.identities = names
	for _, name := range names {
		if entry.Map == "" {
			if name == in.user {
				return nil
			}
			rec.mapLog = fmt.Sprintf("provided user name (%s) and authenticated user name (%s) do not match", in.user, name)
			continue
		}
		res, err := st.rt.Ident.Check(ctx, entry.Map, in.user, name, st.identRoles())
		if err != nil {
			return fmt.Errorf("evaluating pg_ident.conf: %w", err)
		}
		if res.Matched {
			if res.Entry != nil {
				rec.mapLine = fmt.Sprintf("%s:%d", res.Entry.File, res.Entry.Line)
			}
			return nil
		}
		rec.mapLog = res.LogMessage
	}
	failed.LogDetail = rec.mapLog
	if entry.Method != hba.MethodCert {
		// PostgreSQL logs this line too for clientcert=verify-full.
		failed.LogDetail += fmt.Sprintf("; certificate validation (clientcert=verify-full) failed for user %q: %s mismatch", in.user, entry.ClientName)
	}
	if entry.Map != "" {
		failed.Reason = "ident_no_match"
	}
	return failed
}

// identRoles is the membership oracle for ident +group lines, nil when no
// catalog_user is configured (Load refuses such lines then).
func (st *state) identRoles() hba.RoleChecker {
	if st.roles == nil {
		return nil
	}
	return st.roles
}

// certIdentities returns the names a certificate offers for clientname=,
// in the order they are tried.
func certIdentities(cert *x509.Certificate, kind hba.ClientName) ([]string, error) {
	switch kind {
	case hba.ClientNameDN:
		dn, err := certauth.DistinguishedName(cert)
		if err != nil || dn == "" {
			return nil, err
		}
		return []string{dn}, nil
	case hba.ClientNameSANEmail:
		return certauth.SANs(cert, certauth.SANEmail), nil
	case hba.ClientNameSANDNS:
		return certauth.SANs(cert, certauth.SANDNS), nil
	case hba.ClientNameSANURI:
		return certauth.SANs(cert, certauth.SANURI), nil
	default:
		cn, ok, err := certauth.CommonName(cert)
		if err != nil || !ok || cn == "" {
			return nil, err
		}
		return []string{cn}, nil
	}
}

// authFailed is auth_failed's message for the line's method.
func authFailed(in authInput, entry *hba.Entry) *Error {
	if entry.Method == hba.MethodCert {
		return fatal(codeInvalidAuthorization, "cert_name_mismatch", "certificate authentication failed for user \"%s\"", in.user)
	}
	return fatal(codeInvalidAuthorization, "cert_name_mismatch", "\"%s\" authentication failed for user \"%s\"", entry.Method, in.user)
}

// encryptionState is the tail PostgreSQL appends to hba failures.
func encryptionState(in authInput) string {
	if in.ssl {
		return "SSL encryption"
	}
	return "no encryption"
}

func noHBAEntry(in authInput) *Error {
	if in.replication == replicationPhysical {
		return fatal(codeInvalidAuthorization, "no_hba_match",
			"no pg_hba.conf entry for replication connection from host \"%s\", user \"%s\", %s", in.addr, in.user, encryptionState(in))
	}
	return fatal(codeInvalidAuthorization, "no_hba_match",
		"no pg_hba.conf entry for host \"%s\", user \"%s\", database \"%s\", %s", in.addr, in.user, in.database, encryptionState(in))
}

func hbaRejects(in authInput) *Error {
	if in.replication == replicationPhysical {
		return fatal(codeInvalidAuthorization, "hba_reject",
			"pg_hba.conf rejects replication connection for host \"%s\", user \"%s\", %s", in.addr, in.user, encryptionState(in))
	}
	return fatal(codeInvalidAuthorization, "hba_reject",
		"pg_hba.conf rejects connection for host \"%s\", user \"%s\", database \"%s\", %s", in.addr, in.user, in.database, encryptionState(in))
}

// peerNameError mirrors what PostgreSQL's backend does with a client
// certificate once authentication is over: pgstat_bestart records the
// leaf's subject and issuer for pg_stat_ssl through be-secure-openssl.c
// X509_NAME_to_cstring, which raises ERROR 22023 "could not get NID for
// ASN1_OBJECT object" (FATAL during startup) for an attribute type OpenSSL
// has no NID for, such as 1.2.3.4. A certificate that passed pg_hba.conf
// and the map is still refused then. It happens after InitPostgres has
// checked the database and the role, so it is checked once the backend
// has accepted the connection, before the client is greeted.
func peerNameError(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return nil
	}
	for _, raw := range [][]byte{chain[0].RawSubject, chain[0].RawIssuer} {
		if dn, err := certauth.FormatDN(raw); err == nil && hasUnknownAttribute(dn) {
			return fatal(codeInvalidParameterValue, "cert_name_unknown_attribute", "could not get NID for ASN1_OBJECT object")
		}
	}
	return nil
}

// hasUnknownAttribute reports whether an RFC 2253 name from
// certauth.FormatDN has an attribute OpenSSL does not know: FormatDN prints
// those as a dotted OID, and every known one by its short name, which
// never starts with a digit. Values escape ',' and '+' with a backslash,
// so unescaped ones separate attributes.
func hasUnknownAttribute(dn string) bool {
	start := true
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		if start && '0' <= c && c <= '9' {
			return true
		}
		start = false
		switch c {
		case '\\':
			i++
		case ',', '+':
			start = true
		}
	}
	return false
}
