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
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
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

	// ListenAddresses is a comma-separated list of host names or IP
	// addresses, "*" for all, as in postgresql.conf. Default "127.0.0.1"
	// (PostgreSQL's "localhost" without the resolver dependency).
	ListenAddresses string `toml:"listen_addresses"`
	// Port is the TCP port. Default 6432.
	Port int `toml:"port"`

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
	// SSLMinProtocolVersion is "TLSv1.2" (default) or "TLSv1.3". Older
	// versions are refused outright.
	SSLMinProtocolVersion string `toml:"ssl_min_protocol_version"`

	// AuthenticationTimeout bounds the startup packet, the TLS handshake
	// and authentication together. Default 60s, as in PostgreSQL.
	AuthenticationTimeout Duration `toml:"authentication_timeout"`
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

	// ShutdownTimeout is how long SIGTERM lets sessions finish before
	// closing them. Default 30s.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`

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
}

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		ListenAddresses:       "127.0.0.1",
		Port:                  6432,
		SSLMinProtocolVersion: "TLSv1.2",
		AuthenticationTimeout: Duration{60 * time.Second},
		MaxConnections:        1000,
		LogFormat:             "text",
		LogLevel:              "info",
		ShutdownTimeout:       Duration{30 * time.Second},
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
// naming the file (and line where TOML gives one).
func Parse(path string, data []byte) (*Config, error) {
	c := Defaults()
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			if perr.LastKey != "" {
				return nil, fmt.Errorf("%s:%d: invalid value for parameter %q: %s", path, perr.Position.Line, perr.LastKey, perr.Message)
			}
			return nil, fmt.Errorf("%s:%d: %s", path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("%s: unrecognized configuration parameter %q", path, k.String()))
	}
	if c.MaxStartupConnections == 0 {
		c.MaxStartupConnections = 2 * c.MaxConnections
	}
	errs = append(errs, c.validate()...)
	if len(errs) > 0 {
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
		errs = append(errs, fmt.Errorf("%s: invalid value for parameter %q: %s", c.Path, key, fmt.Sprintf(format, args...)))
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("port", "%d is outside the valid range 1..65535", c.Port)
	}
	if strings.TrimSpace(c.ListenAddresses) == "" {
		bad("listen_addresses", "empty: pgcertgate would listen nowhere")
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
	if c.SSLCAFile == "" && (c.SSLCRLFile != "" || c.SSLCRLDir != "") {
		bad("ssl_crl_file", "CRLs are set but ssl_ca_file is empty")
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
	if c.MaxStartupConnections < 1 {
		bad("max_startup_connections", "%d (must be at least 1)", c.MaxStartupConnections)
	}
	for key, v := range map[string]int{"tcp_keepalives_idle": c.TCPKeepalivesIdle, "tcp_keepalives_interval": c.TCPKeepalivesInterval, "tcp_keepalives_count": c.TCPKeepalivesCount} {
		if v < 0 {
			bad(key, "%d (must be 0 or more)", v)
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
	return errs
}

// resolvePaths makes every file name absolute against the configuration
// file's directory, as the issue and PostgreSQL's include rules expect.
func (c *Config) resolvePaths() {
	dir := filepath.Dir(c.Path)
	for _, p := range []*string{&c.HBAFile, &c.IdentFile, &c.SSLCertFile, &c.SSLKeyFile, &c.SSLCAFile, &c.SSLCRLFile, &c.SSLCRLDir} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
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
