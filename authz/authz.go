// Package authz decides one connection attempt, as PostgreSQL's
// ClientAuthentication does: the pg_hba.conf line, the checks that line's
// method makes of the client certificate, the certificate identity and the
// pg_ident.conf map. It gives the decision, the client's error (PostgreSQL's
// text and SQLSTATE) and, on request, the trace that explain prints. It
// opens no socket and reads no file: what it needs (the loaded files, a
// role-membership oracle, a resolver) comes in the Snapshot.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/identmap"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
)

// Snapshot is what one loaded configuration decides with. A reload builds
// a new one; a connection keeps the one it started with.
type Snapshot struct {
	HBA *hba.Conf
	// Ident is never nil; with no ident_file it has no entries.
	Ident *identmap.Map
	// CAConfigured is set when ssl_ca_file is: only then can a client
	// certificate be requested and checked.
	CAConfigured bool
	// Trust is what the handshake verified client chains against:
	// ssl_ca_file's CA set and the sets lines require with clientca=
	// (certchecks.go). Nil when none is configured.
	Trust *certauth.Trust
	// Now is the clock a line's checks verify with; nil means time.Now.
	Now func() time.Time
	// Env is pg_hba.conf's environment: local addresses for samehost and
	// samenet, the resolver for host names, and the role-membership
	// oracle for +role, samerole and pg_ident.conf's +group (nil without
	// a catalog_user).
	Env hba.Env
	// Users gives peer authentication the OS user name of a uid; nil
	// refuses every peer line.
	Users UserLookup
}

// Request is one connection attempt: who connects, from where, how, and
// with which verified certificate.
type Request struct {
	Addr netip.Addr
	// Local is set for a Unix-domain socket connection, which only
	// pg_hba.conf's local lines match; Addr and SSL are then unused.
	Local bool
	// PeerUID is the socket peer's user id (SO_PEERCRED), for peer
	// authentication; PeerCredErr is why it could not be read.
	PeerUID     uint32
	PeerCredErr error
	SSL         bool
	// Peer is the client certificate, verified; nil without one.
	Peer *certauth.Peer
	// Revocation runs the OCSP and fetched-CRL checks on a chain that a
	// line's own CA set built anew (certchecks.go). Nil refuses such a
	// chain: a caller that asks no one (explain, which makes no network
	// request) passes a check that accepts and says so.
	Revocation RevocationCheck
	User       string
	Database   string
	// Replication is set for a physical replication connection, which
	// pg_hba.conf matches against the "replication" database keyword.
	Replication bool
}

// encryption is the tail PostgreSQL appends to hba failures.
func (r *Request) encryption() string {
	if r.SSL {
		return "SSL encryption"
	}
	return "no encryption"
}

// Decision is what authorization saw, for the audit log and for explain.
// None of it reaches the client.
type Decision struct {
	// Entry is the pg_hba.conf line that matched; nil when none did.
	Entry *hba.Entry
	// Attempts is the pg_hba.conf trace, filled only when tracing.
	Attempts []hba.Attempt
	// Identities are the certificate names tried against the user or map.
	Identities []string
	// Identity is the one of them the check accepted, or the OS user name
	// a peer line accepted; empty when the line checks no name.
	Identity string
	// MapLine is the pg_ident.conf line ("file:line") that accepted the
	// identity.
	MapLine string
	// MapLog is what PostgreSQL logs when the name check fails.
	MapLog string
	// Checks are the line's certificate checks beyond PostgreSQL's, in
	// the order they ran (certchecks.go).
	Checks []CertCheck
	// CASetRequired is the CA set the line required, and CASetVerified
	// the one the chain verified to, when the line's set was checked.
	CASetRequired, CASetVerified string
	// OSUser is the socket peer's OS user name, once peer authentication
	// has looked it up: the identity of a peer session.
	OSUser string
}

// Attrs are the decision's audit-log attributes. Identities are capped,
// since a certificate can carry tens of kilobytes of them.
func (d *Decision) Attrs() []slog.Attr {
	var a []slog.Attr
	if d.Entry != nil {
		a = append(a, slog.String("hba_line", d.Entry.Location()),
			slog.String("hba_method", d.Entry.Method.String()))
		if d.Entry.Map != "" {
			a = append(a, slog.String("ident_map", d.Entry.Map))
		}
	}
	for i, id := range d.Identities {
		if i == certauth.LogListMax {
			a = append(a, slog.Int("cert_identities_omitted", len(d.Identities)-i))
			break
		}
		a = append(a, slog.String("cert_identity", certauth.LogText(id)))
	}
	if d.OSUser != "" {
		a = append(a, slog.String("os_user", certauth.LogText(d.OSUser)))
	}
	if d.MapLine != "" {
		a = append(a, slog.String("ident_line", d.MapLine))
	}
	if d.CASetRequired != "" {
		a = append(a, slog.String("ca_set_required", d.CASetRequired), slog.String("ca_set_verified", d.CASetVerified))
	}
	return a
}

// CatalogError is a role-membership oracle's own failure (it could not
// connect, or its query failed). It is the proxy's problem, not the
// client's: the client gets what it gets when the backend cannot be
// reached, and the text, which names the catalog role and the backend's
// message, goes to the log only.
type CatalogError struct {
	Op  string // "connect", "query"
	Err error
}

func (e *CatalogError) Error() string { return "catalog " + e.Op + ": " + e.Err.Error() }
func (e *CatalogError) Unwrap() error { return e.Err }

// Authorize applies pg_hba.conf and the matched line's method, mirroring
// PostgreSQL's ClientAuthentication (auth.c). A nil error means the client
// may proceed to the backend; otherwise the error is a *pgerr.Error with
// the client's message, or the context's error when the authentication
// deadline ran out. With trace set, the Decision's Attempts record every
// line tried. The Decision is never nil.
func Authorize(ctx context.Context, snap *Snapshot, req *Request, trace bool) (*Decision, error) {
	d := &Decision{}
	hreq := hba.Request{
		Addr:        req.Addr,
		Local:       req.Local,
		SSL:         req.SSL,
		Database:    req.Database,
		User:        req.User,
		Replication: req.Replication,
	}
	var err error
	if trace {
		d.Entry, d.Attempts, err = snap.HBA.Explain(ctx, hreq, snap.Env)
	} else {
		d.Entry, err = snap.HBA.Match(ctx, hreq, snap.Env)
	}
	if err != nil {
		return d, lookupFailed("evaluating pg_hba.conf", err)
	}
	entry := d.Entry
	if entry == nil {
		return d, noHBAEntry(req)
	}

	// Checks PostgreSQL makes before running the method.
	if entry.ClientCert != hba.ClientCertNone {
		if !caAvailable(snap, entry) {
			return d, pgerr.Fatal(pgerr.CodeConfigFileError, "no_ca_configured", "client certificates can only be checked if a root certificate store is available")
		}
		if req.Peer == nil {
			return d, noClientCert()
		}
		if err := runLineChecks(ctx, snap, req, d); err != nil {
			return d, err
		}
	}

	switch entry.Method {
	case hba.MethodReject:
		return d, hbaRejects(req)
	case hba.MethodTrust, hba.MethodCert:
	case hba.MethodPeer:
		// pg_hba.conf allows peer on local lines only.
		if req.Local {
			return d, checkPeer(ctx, snap, req, d)
		}
		fallthrough
	default:
		// A stock pg_hba.conf line whose method pgcertgate does not
		// perform: refuse, never fall through to another method.
		e := pgerr.Fatal(pgerr.CodeInvalidAuthorization, "method_not_supported",
			"authentication method \"%s\" is not supported by pgcertgate for user \"%s\"", entry.Method, req.User)
		e.LogDetail = fmt.Sprintf("Connection matched file %q line %d: %q", entry.File, entry.Line, entry.Raw)
		return d, e
	}

	// cert always checks the name; trust does with clientcert=verify-full.
	if entry.Method == hba.MethodCert || entry.ClientCert == hba.ClientCertVerifyFull {
		return d, checkCertName(ctx, snap, req, d)
	}
	return d, nil
}

// checkCertName is PostgreSQL's CheckCertAuth: the certificate's CN or DN
// (or, as pgcertgate extensions, a SAN) must equal the user or pass the
// line's map. With several SANs of the chosen kind, each is tried in
// certificate order and the first one accepted wins.
func checkCertName(ctx context.Context, snap *Snapshot, req *Request, d *Decision) error {
	entry := d.Entry
	failed := authFailed(req, entry)
	if req.Peer == nil {
		// Authorize refuses certificate-less clients on these lines
		// first; this keeps that an invariant rather than a panic.
		return noClientCert()
	}
	names, err := req.Peer.Identities(identitySource(entry.ClientName))
	if err != nil || len(names) == 0 {
		failed.LogDetail = fmt.Sprintf("certificate authentication failed for user %q: client certificate contains no user name", req.User)
		return failed
	}
	d.Identities = names
	for _, name := range names {
		if entry.Map == "" {
			if name == req.User {
				d.Identity = name
				return nil
			}
			d.MapLog = fmt.Sprintf("provided user name (%s) and authenticated user name (%s) do not match", req.User, certauth.LogText(name))
			continue
		}
		res, err := snap.Ident.Check(ctx, entry.Map, req.User, name, snap.Env.Roles)
		if err != nil {
			return lookupFailed("evaluating pg_ident.conf", err)
		}
		if res.Matched {
			if res.Entry != nil {
				d.MapLine = fmt.Sprintf("%s:%d", res.Entry.File, res.Entry.Line)
			}
			d.Identity = name
			return nil
		}
		// PostgreSQL's text names the identity: keep a bounded part.
		d.MapLog = strings.ReplaceAll(res.LogMessage, name, certauth.LogText(name))
	}
	failed.LogDetail = d.MapLog
	if entry.Method != hba.MethodCert {
		// PostgreSQL logs this line too for clientcert=verify-full.
		failed.LogDetail += fmt.Sprintf("; certificate validation (clientcert=verify-full) failed for user %q: %s mismatch", req.User, entry.ClientName)
	}
	if entry.Map != "" {
		failed.Reason = "ident_no_match"
	}
	if entry.ClientName == hba.ClientNameSHA256 {
		failed.Reason = "pin_mismatch"
	}
	return failed
}

// identitySource is the certificate field a clientname= option names.
func identitySource(n hba.ClientName) certauth.IdentitySource {
	switch n {
	case hba.ClientNameDN:
		return certauth.IdentityDN
	case hba.ClientNameSANEmail:
		return certauth.IdentitySANEmail
	case hba.ClientNameSANDNS:
		return certauth.IdentitySANDNS
	case hba.ClientNameSANURI:
		return certauth.IdentitySANURI
	case hba.ClientNameSHA256:
		return certauth.IdentitySHA256
	}
	return certauth.IdentityCN
}

// lookupFailed is the error for a pg_hba.conf or pg_ident.conf evaluation
// that could not finish. A failed role-membership lookup is the proxy's own
// catalog failing, and the client learns nothing of it; anything else (the
// authentication deadline) is returned wrapped, and the caller treats it
// as the deadline it is.
func lookupFailed(what string, err error) error {
	if _, ok := errors.AsType[*CatalogError](err); ok {
		return pgerr.BackendUnavailable("catalog_error", fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func noClientCert() *pgerr.Error {
	return pgerr.Fatal(pgerr.CodeInvalidAuthorization, "no_client_cert", "connection requires a valid client certificate")
}

// authFailed is auth_failed's message for the line's method.
func authFailed(req *Request, entry *hba.Entry) *pgerr.Error {
	if entry.Method == hba.MethodCert {
		return pgerr.Fatal(pgerr.CodeInvalidAuthorization, "cert_name_mismatch", "certificate authentication failed for user \"%s\"", req.User)
	}
	return pgerr.Fatal(pgerr.CodeInvalidAuthorization, "cert_name_mismatch", "\"%s\" authentication failed for user \"%s\"", entry.Method, req.User)
}

func noHBAEntry(req *Request) *pgerr.Error {
	if req.Replication {
		return pgerr.Fatal(pgerr.CodeInvalidAuthorization, "no_hba_match",
			"no pg_hba.conf entry for replication connection from host \"%s\", user \"%s\", %s", req.host(), req.User, req.encryption())
	}
	return pgerr.Fatal(pgerr.CodeInvalidAuthorization, "no_hba_match",
		"no pg_hba.conf entry for host \"%s\", user \"%s\", database \"%s\", %s", req.host(), req.User, req.Database, req.encryption())
}

func hbaRejects(req *Request) *pgerr.Error {
	if req.Replication {
		return pgerr.Fatal(pgerr.CodeInvalidAuthorization, "hba_reject",
			"pg_hba.conf rejects replication connection for host \"%s\", user \"%s\", %s", req.host(), req.User, req.encryption())
	}
	return pgerr.Fatal(pgerr.CodeInvalidAuthorization, "hba_reject",
		"pg_hba.conf rejects connection for host \"%s\", user \"%s\", database \"%s\", %s", req.host(), req.User, req.Database, req.encryption())
}

// AfterBackend is what PostgreSQL's backend does with a client certificate
// once authentication is over: pgstat_bestart records the leaf's subject
// and issuer for pg_stat_ssl through be-secure-openssl.c
// X509_NAME_to_cstring, which raises ERROR 22023 "could not get NID for
// ASN1_OBJECT object" (FATAL during startup) for an attribute type OpenSSL
// has no NID for, such as 1.2.3.4. A certificate that passed pg_hba.conf
// and the map is still refused then. It happens after InitPostgres has
// checked the database and the role, so the caller asks once the backend
// has accepted the connection, before the client is greeted.
func AfterBackend(peer *certauth.Peer) error {
	if peer != nil && peer.UnknownAttribute {
		return pgerr.Fatal(pgerr.CodeInvalidParameterValue, "cert_name_unknown_attribute", "could not get NID for ASN1_OBJECT object")
	}
	return nil
}

// CommonNameError is be_tls_open_server's check, made before pg_hba.conf
// is read: a CN holding a NUL byte (CVE-2009-4034), or a subject OpenSSL
// cannot decode, drops the connection without a message, whatever
// pg_hba.conf says.
func CommonNameError(peer *certauth.Peer) error {
	if peer == nil || peer.CNErr == nil {
		return nil
	}
	return &pgerr.Error{Severity: pgerr.SeverityFatal, Reason: "cert_name_invalid", LogDetail: peer.CNErr.Error()}
}
