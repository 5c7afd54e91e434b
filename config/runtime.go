package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/identmap"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// Runtime is everything a configuration file points at, loaded and
// checked. It is immutable once built: a reload builds a new Runtime and
// swaps it in whole, so a half-loaded state can never serve a connection.
type Runtime struct {
	Config *Config
	HBA    *hba.Conf
	// Ident is never nil; with no ident_file it has no entries.
	Ident *identmap.Map
	// ServerCert is the certificate chain and key presented to clients.
	ServerCert tls.Certificate
	// Verifier checks client chains against ssl_ca_file (or ssl_ca);
	// nil when neither is set.
	Verifier *certauth.Verifier
	// ClientCAs is what the TLS handshake verifies client chains against:
	// Verifier's set and the CA sets pg_hba.conf lines require with
	// clientca= (clientca.go). Nil when there is none, in which case no
	// client certificate is requested.
	ClientCAs *certauth.Trust
	// PeerTLS is the peer channel's certificate and CA with [cluster]
	// peer_ssl = "require"; nil otherwise.
	PeerTLS *PeerTLS
	// Backend is the template for backend connections. User, Database and
	// RuntimeParams are filled per client on a copy.
	Backend *pgconn.Config
	// Warnings are problems that do not refuse the configuration, each
	// naming file:line (e.g. an hba line whose method pgcertgate does not
	// perform).
	Warnings []error
	// Files lists, cleaned and sorted, every file and directory the load
	// read or looked for: the configuration file; pg_hba.conf and
	// pg_ident.conf with everything their @file, include,
	// include_if_exists and include_dir lines reach (missing optional ones
	// included); the certificate, key, CA and CRL files. ssl_crl_dir is
	// not listed: it is read at every verification.
	Files []string
}

// Load reads the configuration file and every file it names. All errors are
// collected and returned joined; each names its file (and line where there
// is one) exactly once.
func Load(path string) (*Runtime, error) {
	cfg, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Build(cfg)
}

// Build loads the files a parsed Config names.
func Build(cfg *Config) (*Runtime, error) {
	return build(cfg, fileSet{})
}

// build is Build noting in read the files the tokenizer reaches.
func build(cfg *Config, read fileSet) (*Runtime, error) {
	rt := &Runtime{Config: cfg}
	var errs []error

	// Token lengths: follow PostgreSQL 18, which has no limit.
	readOpts := authfile.ReadOptions{FS: read.fs()}
	if conf, err := hba.Load(cfg.HBAFile, readOpts); err != nil {
		errs = append(errs, cfg.fileErrors("hba_file", cfg.HBAFile, err)...)
	} else {
		rt.HBA = conf
		rt.Warnings = append(rt.Warnings, hbaWarnings(conf, len(cfg.SocketDirs()) > 0)...)
	}

	rt.Ident = &identmap.Map{}
	if cfg.IdentFile != "" {
		if m, err := identmap.Load(cfg.IdentFile, readOpts); err != nil {
			// Unlike PostgreSQL, which starts with no maps, an invalid
			// ident file is fatal: failing closed is the point of a gate.
			errs = append(errs, cfg.fileErrors("ident_file", cfg.IdentFile, err)...)
		} else {
			rt.Ident = m
			for _, w := range m.Warnings {
				rt.Warnings = append(rt.Warnings, w)
			}
		}
	}

	if rt.HBA != nil {
		errs = append(errs, checkCrossReferences(cfg, rt)...)
	}

	if err := checkKeyFilePermissions(cfg.SSLKeyFile); err != nil {
		errs = append(errs, cfg.keyError("ssl_key_file", "%w", err))
	} else if cert, err := tls.LoadX509KeyPair(cfg.SSLCertFile, cfg.SSLKeyFile); err != nil {
		errs = append(errs, cfg.keyError("ssl_cert_file", "could not load server certificate file \"%s\" with key file \"%s\": %w", cfg.SSLCertFile, cfg.SSLKeyFile, err))
	} else {
		rt.ServerCert = cert
	}

	if v, err := cfg.loadDefaultCA(); err != nil {
		errs = append(errs, err)
	} else {
		rt.Verifier = v
	}
	errs = append(errs, buildTrust(cfg, rt, read)...)

	rt.Warnings = append(rt.Warnings, cfg.clusterWarnings()...)
	if pt, perrs := cfg.loadPeerTLS(); perrs != nil {
		errs = append(errs, perrs...)
	} else {
		rt.PeerTLS = pt
	}

	if b, err := ParseBackendDSN(cfg.Backend.DSN); err != nil {
		errs = append(errs, cfg.keyError("backend.dsn", "%w", err))
	} else {
		b.ConnectTimeout = cfg.Backend.ConnectTimeout.Duration
		rt.Backend = b
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	rt.Files = read.list(cfg)
	return rt, nil
}

// checkCrossReferences reports what only makes sense across files: lines
// that need role membership without a catalog_user to look it up, and map=
// names that no ident line defines (a warning: PostgreSQL accepts them and
// fails at connect time).
func checkCrossReferences(cfg *Config, rt *Runtime) []error {
	var errs []error
	for _, e := range rt.HBA.Entries {
		where := fmt.Sprintf("%s:%d", e.File, e.Line)
		if cfg.Backend.CatalogUser == "" && (e.UsesMembership() || (e.Map != "" && rt.Ident.UsesMembership(e.Map))) {
			errs = append(errs, fmt.Errorf("%s: role membership (+role, samerole, samegroup or an ident +group) needs [backend] catalog_user", where))
		}
		if e.Map != "" && !identDefines(rt.Ident, e.Map) {
			rt.Warnings = append(rt.Warnings, fmt.Errorf("%s: map %q is not defined in %s; connections matching this line will fail", where, e.Map, identName(cfg)))
		}
		if e.ClientName.Extension() {
			rt.Warnings = append(rt.Warnings, fmt.Errorf("%s: clientname=%s is a pgcertgate extension that PostgreSQL refuses", where, e.ClientName))
		}
	}
	return errs
}

func identDefines(m *identmap.Map, name string) bool {
	for _, e := range m.Entries {
		if e.MapName == name {
			return true
		}
	}
	return false
}

func identName(cfg *Config) string {
	if cfg.IdentFile == "" {
		return "ident_file (not set)"
	}
	return cfg.IdentFile
}

// backendKeys are the conninfo keys a backend DSN may set: how to reach
// and authenticate to the server. user, dbname and every run-time
// parameter (options, application_name, …) come from each client instead.
var backendKeys = []string{
	"host", "port", "password", "passfile", "connect_timeout",
	"sslmode", "sslkey", "sslcert", "sslcertmode", "sslrootcert", "sslnegotiation", "sslpassword", "sslsni",
	"krbspn", "krbsrvname", "target_session_attrs", "service", "servicefile",
	"min_protocol_version", "max_protocol_version", "channel_binding", "require_auth",
}

// ParseBackendDSN parses the backend DSN, refusing keys that belong to the
// client (user, dbname, options and other run-time parameters).
//
// pgconn merges PG* environment variables into the result; cmd/pgcertgate
// clears them at startup, and pgwire replaces RuntimeParams per client, so
// the proxy's environment never reaches a client session.
func ParseBackendDSN(dsn string) (*pgconn.Config, error) {
	c, err := pgconn.ParseConfigWithOptions(dsn, pgconn.ParseConfigOptions{ConnStringAllowedKeys: backendKeys})
	if err != nil {
		if strings.Contains(err.Error(), "ConnStringAllowedKeys") {
			return nil, fmt.Errorf("may set only connection parameters (%s); user, dbname and options come from each client: %w", strings.Join(backendKeys, ", "), err)
		}
		return nil, err
	}
	return c, nil
}

// checkKeyFilePermissions mirrors PostgreSQL's check_ssl_key_file_permissions
// (be-secure-common.c): the key must be a regular file owned by us or root,
// 0600 or less when ours, 0640 or less when root's.
func checkKeyFilePermissions(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("could not access private key file %q: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("private key file %q is not a regular file", path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := uint32(fi.Mode().Perm())
	euid := uint32(os.Geteuid())
	if st.Uid != euid && st.Uid != 0 {
		return fmt.Errorf("private key file %q must be owned by the database user or root", path)
	}
	// Root-owned keys (Kubernetes secrets, /etc/ssl/private) may be
	// group-readable; keys owned by the running user may not.
	if (st.Uid == 0 && mode&0o037 != 0) || (st.Uid != 0 && mode&0o077 != 0) {
		return fmt.Errorf("private key file %q has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root", path)
	}
	return nil
}
