// Package config reads pgcertgate's TOML configuration file.
//
// Where PostgreSQL has a setting, the key carries its postgresql.conf name
// (listen_addresses, port, hba_file, ssl_ca_file, …) so that operators can
// carry their knowledge over. Loading the files the configuration points at
// (pg_hba.conf, pg_ident.conf, certificates) is done by Load in runtime.go;
// this file only knows the TOML shape and its defaults.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// Duration is a Go duration string in the configuration file ("60s", "1m").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler, so that String() of a
// Config round-trips.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Config is the parsed configuration file. Every field documents what its
// zero value means; Defaults fills in the non-zero defaults.
type Config struct {
	// Path is the file the configuration was read from. Relative paths
	// in the file resolve against its directory.
	Path string `toml:"-"`
	// source is the file's text, kept so that an error about a key can
	// name the key's line (keyError). Empty for a Config built in code.
	source string

	// ListenAddresses is a comma-separated list of host names or IP
	// addresses, "*" for all, as in postgresql.conf. Default "127.0.0.1"
	// (PostgreSQL's "localhost" without the resolver dependency). Empty
	// means no TCP listener, which needs unix_socket_directories.
	ListenAddresses string `toml:"listen_addresses"`
	// Port is the TCP port, and names the Unix-domain socket files
	// (.s.PGSQL.<port>). Default 6432.
	Port int `toml:"port"`

	// UnixSocketDirectories is a comma-separated list of directories to
	// listen in on a Unix-domain socket, as in postgresql.conf (unix.go).
	// Empty (default) means none: pg_hba.conf's local lines then match
	// nothing.
	UnixSocketDirectories string `toml:"unix_socket_directories"`
	// UnixSocketGroup is the group name or number given to the socket
	// files. Empty (default) leaves the proxy's own group.
	UnixSocketGroup string `toml:"unix_socket_group"`
	// UnixSocketPermissions is the socket files' mode, an integer (0o770)
	// or an octal string ("0770"). Default 0777, as in PostgreSQL.
	UnixSocketPermissions SocketPermissions `toml:"unix_socket_permissions"`

	// HBAFile is the pg_hba.conf to apply. Required.
	HBAFile string `toml:"hba_file"`
	// IdentFile is the pg_ident.conf for map= options. Empty means no
	// maps are defined, so any map= lookup fails.
	IdentFile string `toml:"ident_file"`

	// SSLCertFile and SSLKeyFile are the server certificate (with any
	// intermediates) and its private key. Both required: pgcertgate
	// exists to do TLS.
	SSLCertFile string `toml:"ssl_cert_file"`
	SSLKeyFile  string `toml:"ssl_key_file"`
	// SSLCAFile holds the CAs that client certificates must chain to.
	// Empty means no client certificate is requested, as in PostgreSQL,
	// so every cert or clientcert= line fails.
	SSLCAFile string `toml:"ssl_ca_file"`
	// SSLCRLFile and SSLCRLDir are certificate revocation lists. Empty
	// means no revocation checking. With either set, every certificate in
	// the chain needs a CRL from its issuer (OpenSSL's CRL_CHECK_ALL).
	SSLCRLFile string `toml:"ssl_crl_file"`
	SSLCRLDir  string `toml:"ssl_crl_dir"`
	// SSLCA is ssl_ca_file's content written inline, PEM text or PEM as
	// base64 on one line (a Kubernetes Secret's data), instead of
	// ssl_ca_file; setting both is an error. Empty means none.
	SSLCA string `toml:"ssl_ca"`
	// SSLClientKeyUsage is "openssl" (default; empty means openssl):
	// OpenSSL's purpose check, as PostgreSQL makes it, or "require": the
	// client's certificate must also carry an extendedKeyUsage with
	// clientAuth, and a keyUsage, if any, with digitalSignature. Refused
	// certificates fail the TLS handshake.
	SSLClientKeyUsage string `toml:"ssl_client_key_usage"`
	// SSLVerifyDepth is how many intermediate certificates a client chain
	// may hold, as OpenSSL's verify depth counts them: root, intermediate,
	// leaf passes at 1. Default 100, OpenSSL's, which PostgreSQL keeps.
	SSLVerifyDepth int `toml:"ssl_verify_depth"`
	// ClientCA holds the named CA sets that pg_hba.conf lines require
	// with clientca=@NAME ([client_ca.NAME] tables; clientca.go).
	ClientCA map[string]ClientCASet `toml:"client_ca"`
	// SSLMinProtocolVersion is "TLSv1.2" (default) or "TLSv1.3". Older
	// versions are refused outright.
	SSLMinProtocolVersion string `toml:"ssl_min_protocol_version"`

	// SSLOCSP asks the client certificate's OCSP responder during the
	// handshake: "off" (default; empty means off), "prefer" (revoked
	// refuses, good accepts, no usable answer leaves it to the CRLs or
	// accepts as unchecked) or "require" (only a fresh, verified good
	// accepts). Needs ssl_ca_file.
	SSLOCSP string `toml:"ssl_ocsp"`
	// SSLOCSPResponder is an http URL asked instead of the responder the
	// certificate's Authority Information Access names. Empty (default)
	// means the certificate's own.
	SSLOCSPResponder string `toml:"ssl_ocsp_responder"`
	// SSLOCSPTimeout bounds each OCSP request and CRL download, inside
	// authentication_timeout. Zero means 3s.
	SSLOCSPTimeout Duration `toml:"ssl_ocsp_timeout"`
	// SSLOCSPCacheMaxAge caps how long an OCSP answer is reused, whatever
	// its nextUpdate. Zero means 1h.
	SSLOCSPCacheMaxAge Duration `toml:"ssl_ocsp_cache_max_age"`
	// SSLCRLFetch fetches the CRLs named by the client chain's CRL
	// distribution points (http only), in addition to ssl_crl_file and
	// ssl_crl_dir. False (default) fetches nothing.
	SSLCRLFetch bool `toml:"ssl_crl_fetch"`
	// SSLCRLFetchMaxSize caps one CRL download, in bytes. Zero means
	// 10 MiB.
	SSLCRLFetchMaxSize int64 `toml:"ssl_crl_fetch_max_size"`
	// SSLCRLGrace is how long past its nextUpdate a fetched CRL is still
	// used when no newer one can be fetched. Zero (default) means none.
	SSLCRLGrace Duration `toml:"ssl_crl_grace"`
	// RevokedSessions is what happens to a running session whose client
	// certificate is revoked (a CRL reload, a fetched CRL, an OCSP
	// recheck) or expires: "keep" (default; empty means keep), as
	// PostgreSQL, which checks at login only, or "terminate".
	RevokedSessions string `toml:"revoked_sessions"`
	// SSLOCSPRecheckInterval is how often running sessions' certificates
	// are asked about again under ssl_ocsp with revoked_sessions =
	// "terminate". Zero means 5m.
	SSLOCSPRecheckInterval Duration `toml:"ssl_ocsp_recheck_interval"`

	// AuthenticationTimeout bounds the startup packet, the TLS handshake
	// and authentication together. Default 60s, as in PostgreSQL.
	AuthenticationTimeout Duration `toml:"authentication_timeout"`
	// ProxyProtocol is "on" to read a PROXY protocol (v1 or v2) header
	// from the sources in ProxyProtocolTrusted, and take the client
	// address from it. "" or "off" (default): no header is read.
	ProxyProtocol string `toml:"proxy_protocol"`
	// ProxyProtocolTrusted lists the networks (CIDR, or one address) of
	// the balancers whose PROXY headers are believed. A connection from
	// one of them must start with a header; one from anywhere else that
	// sends a header is closed. Required with proxy_protocol = "on".
	ProxyProtocolTrusted []string `toml:"proxy_protocol_trusted"`
	// proxyTrusted is ProxyProtocolTrusted parsed by validate.
	proxyTrusted []netip.Prefix
	// MaxConnections caps authenticated-or-authenticating sessions past
	// the startup packet. Default 1000.
	MaxConnections int `toml:"max_connections"`
	// MaxStartupConnections caps connections still in TLS or startup, so
	// that silent sockets cannot lock out real logins. Default
	// 2 × MaxConnections.
	MaxStartupConnections int `toml:"max_startup_connections"`

	// TCPKeepalivesIdle, TCPKeepalivesInterval (seconds) and
	// TCPKeepalivesCount tune client-side TCP keepalives as in
	// postgresql.conf. Zero means the operating system default.
	TCPKeepalivesIdle     int `toml:"tcp_keepalives_idle"`
	TCPKeepalivesInterval int `toml:"tcp_keepalives_interval"`
	TCPKeepalivesCount    int `toml:"tcp_keepalives_count"`

	// LogFormat is "text" (default) or "json". LogLevel is "debug",
	// "info" (default), "warn" or "error".
	LogFormat string `toml:"log_format"`
	LogLevel  string `toml:"log_level"`

	// RelayEngine is how authenticated sessions are relayed: "io_uring"
	// (the default on Linux, and Linux only), a few event loops that every
	// session's sockets join after authentication, each submitting a
	// turn's reads and writes in one system call; "eventloop" (Linux
	// only), the same loops over epoll, one system call per read and
	// write, which is also what "io_uring" runs on where the kernel
	// refuses io_uring; or "goroutine" (the default elsewhere), two
	// goroutines per session over Go's poller.
	RelayEngine string `toml:"relay_engine"`
	// RelayEventLoops is how many event loops relay sessions: 0 (default)
	// means one per four of GOMAXPROCS, at least one. Read at start.
	RelayEventLoops int `toml:"relay_event_loops"`

	// ShutdownTimeout is how long SIGTERM lets sessions finish before
	// closing them. Default 30s.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// DrainDelay is how long SIGTERM keeps accepting new sessions after
	// /readyz has begun to fail, so that a balancer's health checks
	// (interval × fall) take the replica out of rotation before it
	// refuses anyone; shutdown_timeout starts after it. Zero (default)
	// refuses new sessions at once.
	DrainDelay Duration `toml:"drain_delay"`

	// WatchFiles reloads the configuration, as SIGHUP does, when this
	// file or any file it names changes (pg_hba.conf and pg_ident.conf
	// with their includes, certificate, key, CA and CRL file), including
	// Kubernetes' swap of the ..data symlink in a ConfigMap or Secret
	// volume. Files are polled every second and a change is applied once
	// it has held still for a poll. False (default) means only SIGHUP
	// reloads.
	WatchFiles bool `toml:"watch_files"`

	Backend Backend `toml:"backend"`
	Admin   Admin   `toml:"admin"`
	// Cluster places this replica among others behind one balancer
	// (config/cluster.go). Zero: a single replica.
	Cluster Cluster `toml:"cluster"`
	// replicaID is cluster.replica_id with "auto" resolved.
	replicaID int
}

// Admin is the operator HTTP endpoint: /metrics (Prometheus), /healthz
// (liveness) and /readyz (readiness).
type Admin struct {
	// ListenAddress is host:port for the admin endpoint, e.g.
	// "127.0.0.1:9930", or ":9930" for every address (needed in
	// Kubernetes, where kubelet probes the pod IP). Empty (default)
	// disables the endpoint. Changing it needs a restart.
	ListenAddress string `toml:"listen_address"`
	// Pprof serves Go's runtime profiles under /debug/pprof/ on the admin
	// endpoint, to profile a running proxy (CPU, live heap, goroutines)
	// without a restart. Off by default: the profiles show internals
	// (goroutine stacks name client addresses' handlers, heap sizes), so
	// turn it on only where the admin address is private. Changing it
	// needs a restart.
	Pprof bool `toml:"pprof"`
	// TokenFile holds the token that /api/* and the page at / require
	// (Bearer, or Basic auth with the token as password). Empty (default)
	// turns them off; /metrics, /healthz and /readyz never need it.
	TokenFile string `toml:"token_file"`
	// LoginHistorySize is how many connection attempts /api/logins keeps,
	// and CertificateInventorySize how many verified client certificates
	// /api/certificates keeps (least recently seen out first, within
	// 8 MiB per 10,000). Defaults 1000 and 10000, each 1..100000
	// (config/admin_bounds.go); zero, only in a Config not made by
	// Parse, means the default. A reload resizes both, keeping the newest.
	LoginHistorySize         int `toml:"login_history_size"`
	CertificateInventorySize int `toml:"certificate_inventory_size"`
}

// Backend describes how pgcertgate reaches the PostgreSQL it fronts.
type Backend struct {
	// DSN is a libpq conninfo string or URL for the backend. It must not
	// set user, dbname or options: those come from each client. Required.
	DSN string `toml:"dsn"`
	// ConnectTimeout bounds each backend connection attempt. Default 10s.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// Reuse keeps the backend connection of a session that ends cleanly
	// (Terminate while idle, outside a transaction), resets it with
	// ServerResetQuery, and hands it to the next authenticated client with
	// the same user, database and startup parameters, as PgBouncer's
	// session pooling does. Replication connections are never kept.
	// Default false: every client gets a fresh backend.
	Reuse bool `toml:"reuse"`
	// ReuseIdleTimeout closes kept backends unused this long. Default 60s.
	ReuseIdleTimeout Duration `toml:"reuse_idle_timeout"`
	// ReuseMaxIdle caps kept backends in total, across every user,
	// database and parameter set: they hold backend connection slots.
	// Default 100.
	ReuseMaxIdle int `toml:"reuse_max_idle"`
	// ReuseMaxLifetime closes a backend older than this when its session
	// ends instead of keeping it (PgBouncer's server_lifetime): a kept
	// backend skips PostgreSQL's login-time checks (NOLOGIN, VALID UNTIL,
	// CONNECT privilege, ALTER ROLE … SET), so their changes reach reused
	// sessions within this time. Default 1h.
	ReuseMaxLifetime Duration `toml:"reuse_max_lifetime"`
	// ServerResetQuery runs on a backend before it is kept (PgBouncer's
	// server_reset_query). Default "DISCARD ALL", which drops temporary
	// tables, prepared statements, LISTENs, advisory locks and every SET.
	ServerResetQuery string `toml:"server_reset_query"`
	// PassClientIdentity passes the client's address, its certificate DN
	// and the matching pg_hba.conf line to the backend as the custom
	// settings pgcertgate.client_addr, pgcertgate.identity and
	// pgcertgate.hba_line, for audit triggers and row-level security.
	// Clients may never set pgcertgate.* themselves. Default false.
	PassClientIdentity bool `toml:"pass_client_identity"`
	// CatalogUser is the role used to read pg_auth_members when
	// pg_hba.conf or pg_ident.conf uses +role, samerole or samegroup.
	// Empty means such lines cannot be evaluated and are an error at load.
	CatalogUser string `toml:"catalog_user"`
	// IdentityLedger records every session in the backend database's
	// identity ledger (pgcertgate install-sql) before the client is
	// greeted, and refuses the session when that fails. Default false.
	// Changing it needs a restart.
	IdentityLedger bool `toml:"identity_ledger"`
	// LedgerUser is the role that writes the ledger; required with
	// identity_ledger. It may equal catalog_user.
	LedgerUser string `toml:"ledger_user"`
}

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		ListenAddresses:       "127.0.0.1",
		Port:                  6432,
		UnixSocketPermissions: 0o777,
		SSLMinProtocolVersion: "TLSv1.2",
		SSLVerifyDepth:        certauth.DefaultVerifyDepth,
		AuthenticationTimeout: Duration{60 * time.Second},
		MaxConnections:        1000,
		LogFormat:             "text",
		LogLevel:              "info",
		ShutdownTimeout:       Duration{30 * time.Second},
		Admin: Admin{
			LoginHistorySize:         DefaultLoginHistorySize,
			CertificateInventorySize: DefaultCertificateInventorySize,
		},
		Backend: Backend{
			ConnectTimeout:   Duration{10 * time.Second},
			ReuseIdleTimeout: Duration{60 * time.Second},
			ReuseMaxIdle:     100,
			ReuseMaxLifetime: Duration{time.Hour},
			ServerResetQuery: "DISCARD ALL",
		},
	}
}

// Parse decodes a configuration file's bytes. path is used for relative
// file names and error messages. Every problem is reported, joined, each
// as file:line: key: message (keyError), the line being the key's own.
func Parse(path string, data []byte) (*Config, error) {
	c := Defaults()
	c.Path, c.source = path, string(data)
	md, err := toml.Decode(c.source, &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			// A syntax error, or a value its type refused (a duration):
			// the decoder knows the line.
			if perr.LastKey != "" {
				return nil, fmt.Errorf("%s:%d: %s: %s", path, perr.Position.Line, perr.LastKey, perr.Message)
			}
			return nil, fmt.Errorf("%s:%d: %s", path, perr.Position.Line, perr.Message)
		}
		if errs := c.typeErrors(); len(errs) > 0 {
			sortByLine(errs)
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, c.errorAt(k, "unrecognized configuration parameter"))
	}
	// Derived only from a valid max_connections, so that one bad value
	// is one error.
	if c.MaxStartupConnections == 0 && c.MaxConnections >= 1 {
		c.MaxStartupConnections = 2 * c.MaxConnections
	}
	errs = append(errs, c.validate()...)
	if len(errs) > 0 {
		sortByLine(errs)
		return nil, errors.Join(errs...)
	}
	c.resolvePaths()
	return &c, nil
}

// ReadFile reads and parses a configuration file.
func ReadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("could not read configuration file: %w", err)
	}
	return Parse(path, data)
}

func (c *Config) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, c.keyError(key, format, args...))
	}
	errs = append(errs, c.validateRelayEngine()...)
	if c.Port < 1 || c.Port > 65535 {
		bad("port", "%d is outside the valid range 1..65535", c.Port)
	}
	if strings.TrimSpace(c.ListenAddresses) == "" && strings.TrimSpace(c.UnixSocketDirectories) == "" {
		bad("listen_addresses", "empty, and so is unix_socket_directories: pgcertgate would listen nowhere")
	}
	if c.HBAFile == "" {
		bad("hba_file", "required")
	}
	if c.SSLCertFile == "" {
		bad("ssl_cert_file", "required")
	}
	if c.SSLKeyFile == "" {
		bad("ssl_key_file", "required")
	}
	if c.SSLCAFile == "" && c.SSLCA == "" && (c.SSLCRLFile != "" || c.SSLCRLDir != "") {
		key := "ssl_crl_file"
		if c.SSLCRLFile == "" {
			key = "ssl_crl_dir"
		}
		bad(key, "CRLs are set but ssl_ca_file is empty")
	}
	if !slices.Contains([]string{"TLSv1.2", "TLSv1.3"}, c.SSLMinProtocolVersion) {
		bad("ssl_min_protocol_version", "%q (TLSv1.2 or TLSv1.3)", c.SSLMinProtocolVersion)
	}
	if c.AuthenticationTimeout.Duration < time.Second || c.AuthenticationTimeout.Duration > 600*time.Second {
		// PostgreSQL's range for authentication_timeout is 1s..600s.
		bad("authentication_timeout", "%s is outside the valid range 1s..600s", c.AuthenticationTimeout.Duration)
	}
	if c.MaxConnections < 1 {
		bad("max_connections", "%d (must be at least 1)", c.MaxConnections)
	}
	if c.MaxStartupConnections < 0 {
		// Zero is "2 × max_connections"; Parse derives it.
		bad("max_startup_connections", "%d (must be at least 1)", c.MaxStartupConnections)
	}
	for _, k := range []struct {
		key string
		v   int
	}{{"tcp_keepalives_idle", c.TCPKeepalivesIdle}, {"tcp_keepalives_interval", c.TCPKeepalivesInterval}, {"tcp_keepalives_count", c.TCPKeepalivesCount}} {
		if k.v < 0 {
			bad(k.key, "%d (must be 0 or more)", k.v)
		}
	}
	if !slices.Contains([]string{"text", "json"}, c.LogFormat) {
		bad("log_format", "%q (text or json)", c.LogFormat)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("log_level", "%q (debug, info, warn or error)", c.LogLevel)
	}
	if c.Backend.DSN == "" {
		bad("backend.dsn", "required")
	}
	if c.Backend.ConnectTimeout.Duration <= 0 {
		bad("backend.connect_timeout", "must be positive")
	}
	if a := c.Admin.ListenAddress; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil {
			bad("admin.listen_address", "%q is not host:port (%v)", a, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad("admin.listen_address", "%q: port %q is outside the valid range 0..65535", a, port)
		}
	}
	if c.Backend.Reuse && c.Backend.ReuseMaxIdle < 1 {
		bad("backend.reuse_max_idle", "%d (must be at least 1 with reuse = true)", c.Backend.ReuseMaxIdle)
	}
	if c.Backend.Reuse && strings.TrimSpace(c.Backend.ServerResetQuery) == "" {
		// Without a reset, temporary objects, prepared statements, SET
		// ROLE and advisory locks would pass from one client to the next.
		bad("backend.server_reset_query", "must not be empty with reuse = true")
	}
	errs = append(errs, c.validateRevocation()...)
	errs = append(errs, c.validateClientCA()...)
	errs = append(errs, c.validateUnix()...)
	errs = append(errs, c.validateProxyProtocol()...)
	errs = append(errs, c.validateCluster()...)
	errs = append(errs, c.validateLedger()...)
	errs = append(errs, c.validateAdminBounds()...)
	return errs
}

// resolvePaths makes every file name absolute against the configuration
// file's directory, as PostgreSQL resolves an include against the
// including file's: the configuration then moves as one directory, and
// does not depend on the directory pgcertgate was started in.
func (c *Config) resolvePaths() {
	dir := filepath.Dir(c.Path)
	for _, p := range []*string{&c.HBAFile, &c.IdentFile, &c.SSLCertFile, &c.SSLKeyFile, &c.SSLCAFile, &c.SSLCRLFile, &c.SSLCRLDir, &c.Admin.TokenFile,
		&c.Cluster.PeerSSLCertFile, &c.Cluster.PeerSSLKeyFile, &c.Cluster.PeerSSLCAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	c.resolveClientCAPaths(dir)
}

// ListenAddrs splits listen_addresses into host:port strings. "*" means
// every address, IPv4 and IPv6.
func (c *Config) ListenAddrs() []string {
	var out []string
	for _, h := range strings.Split(c.ListenAddresses, ",") {
		h = strings.TrimSpace(h)
		switch h {
		case "":
			continue
		case "*":
			h = ""
		}
		out = append(out, netJoin(h, c.Port))
	}
	return out
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}
