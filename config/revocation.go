package config

import (
	"net/url"
	"time"

	"github.com/pgcertgate/pgcertgate/revocation"
)

// Defaults of the revocation keys whose zero value stands for them.
const (
	defaultOCSPTimeout     = 3 * time.Second
	defaultOCSPCacheMaxAge = time.Hour
	defaultCRLFetchMaxSize = 10 << 20
	// defaultOCSPRecheckInterval: a revoked certificate's sessions end
	// within minutes without a request per session every few seconds.
	defaultOCSPRecheckInterval = 5 * time.Minute
)

// Bounds of ssl_ocsp_recheck_interval: below a second the rechecks would
// be a load on the responder, not a safeguard; past a day a session
// outlives the point of rechecking it.
const (
	minOCSPRecheckInterval = time.Second
	maxOCSPRecheckInterval = 24 * time.Hour
)

// OCSPRecheckInterval is ssl_ocsp_recheck_interval with its default
// applied.
func (c *Config) OCSPRecheckInterval() time.Duration {
	if c.SSLOCSPRecheckInterval.Duration == 0 {
		return defaultOCSPRecheckInterval
	}
	return c.SSLOCSPRecheckInterval.Duration
}

// TerminateRevokedSessions reports whether revoked_sessions is
// "terminate": running sessions end when their certificate is revoked or
// expires.
func (c *Config) TerminateRevokedSessions() bool { return c.RevokedSessions == "terminate" }

// OCSPTimeout is ssl_ocsp_timeout with its default applied.
func (c *Config) OCSPTimeout() time.Duration {
	if c.SSLOCSPTimeout.Duration == 0 {
		return defaultOCSPTimeout
	}
	return c.SSLOCSPTimeout.Duration
}

// OCSPCacheMaxAge is ssl_ocsp_cache_max_age with its default applied.
func (c *Config) OCSPCacheMaxAge() time.Duration {
	if c.SSLOCSPCacheMaxAge.Duration == 0 {
		return defaultOCSPCacheMaxAge
	}
	return c.SSLOCSPCacheMaxAge.Duration
}

// CRLFetchMaxSize is ssl_crl_fetch_max_size with its default applied.
func (c *Config) CRLFetchMaxSize() int64 {
	if c.SSLCRLFetchMaxSize == 0 {
		return defaultCRLFetchMaxSize
	}
	return c.SSLCRLFetchMaxSize
}

// OCSPMode is ssl_ocsp with "" read as "off".
func (c *Config) OCSPMode() string {
	if c.SSLOCSP == "" {
		return "off"
	}
	return c.SSLOCSP
}

// validateRevocation checks the OCSP and CRL-fetching keys.
func (c *Config) validateRevocation() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, c.keyError(key, format, args...))
	}
	if _, err := revocation.ParseMode(c.SSLOCSP); err != nil {
		bad("ssl_ocsp", "%q (off, prefer or require)", c.SSLOCSP)
	}
	if c.OCSPMode() != "off" && c.SSLCAFile == "" && c.SSLCA == "" {
		// Only a chain verified to a configured root may make us send a
		// request to a URL it names.
		bad("ssl_ocsp", "%q needs ssl_ca_file: no client certificate is requested without it", c.SSLOCSP)
	}
	if c.SSLCRLFetch && c.SSLCAFile == "" && c.SSLCA == "" {
		bad("ssl_crl_fetch", "needs ssl_ca_file: no client certificate is requested without it")
	}
	if r := c.SSLOCSPResponder; r != "" {
		u, err := url.Parse(r)
		switch {
		case err != nil:
			bad("ssl_ocsp_responder", "%q: %v", r, err)
		case u.Scheme != "http" || u.Host == "":
			bad("ssl_ocsp_responder", "%q: must be an http:// URL (https and other schemes are not fetched)", r)
		case u.User != nil:
			bad("ssl_ocsp_responder", "%q: must not carry credentials", r)
		}
	}
	enabled := c.OCSPMode() != "off" || c.SSLCRLFetch
	if t := c.OCSPTimeout(); enabled && t >= c.AuthenticationTimeout.Duration && c.AuthenticationTimeout.Duration > 0 {
		bad("ssl_ocsp_timeout", "%s must be shorter than authentication_timeout (%s), which bounds the whole handshake", t, c.AuthenticationTimeout.Duration)
	}
	switch c.RevokedSessions {
	case "", "keep", "terminate":
	default:
		bad("revoked_sessions", "%q (keep or terminate)", c.RevokedSessions)
	}
	if d := c.SSLOCSPRecheckInterval.Duration; d != 0 && (d < minOCSPRecheckInterval || d > maxOCSPRecheckInterval) {
		bad("ssl_ocsp_recheck_interval", "%s (must be between %s and %s)", d, minOCSPRecheckInterval, maxOCSPRecheckInterval)
	}
	if c.SSLCRLFetchMaxSize < 0 {
		bad("ssl_crl_fetch_max_size", "%d (must be 0 or more)", c.SSLCRLFetchMaxSize)
	}
	return errs
}
