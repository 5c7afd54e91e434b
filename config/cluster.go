package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"
)

// MaxReplicaID is the largest replica_id: the id travels in the top five
// bits of a protocol 3.0 client's 4-byte cancel secret.
const MaxReplicaID = 31

// Cluster is the [cluster] table: this replica's place among pgcertgate
// replicas behind one balancer, so that a CancelRequest the balancer sends
// to the wrong replica still reaches the session's.
type Cluster struct {
	// ReplicaID is this replica's id, 0..31, or "auto": the ordinal at
	// the end of the host name (pgcertgate-2 → 2), as a StatefulSet names
	// its pods. Unset (default) means no cluster: cancel keys carry no
	// replica id and unknown cancels are dropped.
	ReplicaID ReplicaID `toml:"replica_id"`
	// Peers are the other replicas' client ports (host:port). A cancel
	// for a session this replica does not hold goes to each once.
	Peers []string `toml:"peers"`
	// PeersDNS is a name:port resolving to every replica (a headless
	// Service), re-resolved at most every 10s; used instead of Peers.
	PeersDNS string `toml:"peers_dns"`
	// CancelForwardTimeout bounds one forwarded cancel: dial, send, and
	// the peer's close. Default 1s.
	CancelForwardTimeout Duration `toml:"cancel_forward_timeout"`
	// PeerSSL is "off" (default: forwarded cancels travel in plaintext,
	// recognised by their PROXY header's mark from a trusted source) or
	// "require": a replica forwards cancels only over TLS with
	// PeerSSLCertFile as its client certificate, verifying the peer's
	// against PeerSSLCAFile, and drops any forwarded cancel that did not
	// arrive that way. Set it on every replica at once.
	PeerSSL string `toml:"peer_ssl"`
	// PeerSSLCertFile and PeerSSLKeyFile are this replica's certificate
	// on the peer channel, as client and as server (both extended key
	// usages, or none); PeerSSLCAFile is the CA that signs every
	// replica's, and nothing else. Required with peer_ssl = "require".
	PeerSSLCertFile string `toml:"peer_ssl_cert_file"`
	PeerSSLKeyFile  string `toml:"peer_ssl_key_file"`
	PeerSSLCAFile   string `toml:"peer_ssl_ca_file"`
}

// PeerTLS is the peer channel's certificate and CA, loaded.
type PeerTLS struct {
	Cert tls.Certificate
	CAs  *x509.CertPool
}

// PeerSSLRequired reports peer_ssl = "require".
func (c *Config) PeerSSLRequired() bool { return c.Cluster.PeerSSL == "require" }

// loadPeerTLS loads the peer channel's files when peer_ssl requires them.
// A CA file that yields no certificate is an error: an empty pool must
// never mean "trust nothing" one day and the system roots the next. The
// replica's own certificate must verify against the CA for both roles it
// plays on the channel, so that a wrong file is found at load rather than
// by every peer refusing this replica's forwards.
func (c *Config) loadPeerTLS() (*PeerTLS, []error) {
	if !c.PeerSSLRequired() {
		return nil, nil
	}
	cl := &c.Cluster
	var errs []error
	out := &PeerTLS{}
	certOK := false
	if err := checkKeyFilePermissions(cl.PeerSSLKeyFile); err != nil {
		errs = append(errs, c.keyError("cluster.peer_ssl_key_file", "%w", err))
	} else if cert, err := tls.LoadX509KeyPair(cl.PeerSSLCertFile, cl.PeerSSLKeyFile); err != nil {
		errs = append(errs, c.keyError("cluster.peer_ssl_cert_file", "could not load peer certificate file \"%s\" with key file \"%s\": %w", cl.PeerSSLCertFile, cl.PeerSSLKeyFile, err))
	} else {
		out.Cert, certOK = cert, true
	}
	if cas, err := loadPeerCAs(cl.PeerSSLCAFile); err != nil {
		errs = append(errs, c.keyError("cluster.peer_ssl_ca_file", "%w", err))
	} else {
		out.CAs = cas
		if certOK {
			if err := checkPeerCert(out.Cert, cas); err != nil {
				errs = append(errs, c.keyError("cluster.peer_ssl_cert_file", "peer certificate file \"%s\" %v", cl.PeerSSLCertFile, err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// loadPeerCAs reads peer_ssl_ca_file. Unlike x509.CertPool's
// AppendCertsFromPEM, which skips what it cannot parse, every block must
// be usable: a certificate that does not parse, or a CRL or OpenSSL trust
// settings the peer channel would not apply, fails the load. Any
// certificate is an anchor, an intermediate CA included (a cert-manager CA
// Issuer's secret holds its own certificate, not the root's).
func loadPeerCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("could not load root certificate file \"%s\": %w", path, err)
	}
	certs, err := parseCAPEM(data)
	if err == nil && len(certs) == 0 {
		err = errors.New("no certificate found")
	}
	if err != nil {
		return nil, fmt.Errorf("could not load root certificate file \"%s\": %w", path, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// pemBegin starts every PEM block.
var pemBegin = []byte("-----BEGIN ")

// parseCAPEM returns the certificates of a PEM CA file. Text between
// blocks is ignored, as OpenSSL ignores it; a block that does not decode
// is an error, where pem.Decode alone would skip to the next one.
func parseCAPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	line := 1
	for {
		i := bytes.Index(data, pemBegin)
		if i < 0 {
			return certs, nil
		}
		line += bytes.Count(data[:i], []byte("\n"))
		data = data[i:]
		// Decode this block alone, so that a broken one is reported
		// rather than passed over.
		end := len(data)
		if j := bytes.Index(data[1:], pemBegin); j >= 0 {
			end = j + 1
		}
		b, _ := pem.Decode(data[:end])
		if b == nil {
			return nil, fmt.Errorf("malformed PEM block at line %d", line)
		}
		switch b.Type {
		case "CERTIFICATE", "X509 CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate at line %d: %w", line, err)
			}
			certs = append(certs, c)
		case "TRUSTED CERTIFICATE":
			// OpenSSL's auxiliary trust settings change what an anchor
			// is; refuse rather than guess.
			return nil, fmt.Errorf("TRUSTED CERTIFICATE blocks (OpenSSL trust settings) are not supported (line %d)", line)
		case "X509 CRL":
			// The peer channel checks no CRL: one here would look
			// like revocation and do nothing.
			return nil, fmt.Errorf("X509 CRL at line %d: the peer channel checks no CRL", line)
		}
		line += bytes.Count(data[:end], []byte("\n"))
		data = data[end:]
	}
}

// checkPeerCert verifies this replica's own peer certificate against the
// peers' CA, once for each role: as client (the forwarder) and as server
// (the receiver). x509's KeyUsages accepts a chain valid for any one of
// those listed, hence two verifications. A certificate without extended
// key usages passes both.
func checkPeerCert(cert tls.Certificate, roots *x509.CertPool) error {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("holds a certificate that does not parse: %w", err)
		}
		inter.AddCert(c)
	}
	for _, role := range []struct {
		eku  x509.ExtKeyUsage
		name string
	}{{x509.ExtKeyUsageClientAuth, "client"}, {x509.ExtKeyUsageServerAuth, "server"}} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{role.eku}})
		if ie, ok := errors.AsType[x509.CertificateInvalidError](err); ok && ie.Reason == x509.IncompatibleUsage {
			return fmt.Errorf("lacks the %s auth extended key usage: each replica is client and server on the peer channel (give it both, or none)", role.name)
		}
		if err != nil {
			return fmt.Errorf("does not verify against peer_ssl_ca_file: %w", err)
		}
	}
	return nil
}

// ReplicaID is replica_id: an integer, or the string "auto".
type ReplicaID struct {
	Set  bool
	Auto bool
	N    int
}

// UnmarshalTOML implements toml.Unmarshaler.
func (r *ReplicaID) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 || x > MaxReplicaID {
			return fmt.Errorf("%d is outside the valid range 0..%d", x, MaxReplicaID)
		}
		*r = ReplicaID{Set: true, N: int(x)}
	case string:
		if x != "auto" {
			return fmt.Errorf("%q (an integer 0..%d, or \"auto\")", x, MaxReplicaID)
		}
		*r = ReplicaID{Set: true, Auto: true}
	default:
		return fmt.Errorf("an integer 0..%d, or \"auto\"", MaxReplicaID)
	}
	return nil
}

// UnmarshalText accepts the same as UnmarshalTOML, as text; it also tells
// the type checker that the key takes more than one TOML type.
func (r *ReplicaID) UnmarshalText(b []byte) error {
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return r.UnmarshalTOML(n)
	}
	return r.UnmarshalTOML(string(b))
}

// hostOrdinal is the StatefulSet pod name's ordinal.
var hostOrdinal = regexp.MustCompile(`-([0-9]+)$`)

// hostname is os.Hostname, replaced in tests.
var hostname = os.Hostname

// ClusterOn reports whether [cluster] names this replica.
func (c *Config) ClusterOn() bool { return c.Cluster.ReplicaID.Set }

// ReplicaIDValue is this replica's id, "auto" resolved (validate has
// checked that it resolves).
func (c *Config) ReplicaIDValue() int { return c.replicaID }

// CancelForwardTimeout is cancel_forward_timeout with its default.
func (c *Config) CancelForwardTimeout() time.Duration {
	if c.Cluster.CancelForwardTimeout.Duration <= 0 {
		return time.Second
	}
	return c.Cluster.CancelForwardTimeout.Duration
}

func (c *Config) validateCluster() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, c.keyError("cluster."+key, format, args...))
	}
	cl := &c.Cluster
	if cl.ReplicaID.Auto {
		h, err := hostname()
		m := hostOrdinal.FindStringSubmatch(h)
		n := -1
		if err == nil && m != nil {
			n, err = strconv.Atoi(m[1])
		}
		switch {
		case err != nil || m == nil:
			bad("replica_id", "auto, but the host name %q ends in no -<ordinal>", h)
		case n > MaxReplicaID:
			bad("replica_id", "auto: the host name's ordinal %d is outside 0..%d", n, MaxReplicaID)
		default:
			c.replicaID = n
		}
	} else {
		c.replicaID = cl.ReplicaID.N
	}
	if len(cl.Peers) > 0 && cl.PeersDNS != "" {
		bad("peers_dns", "set together with peers: use one")
	}
	for _, p := range cl.Peers {
		if err := checkHostPort(p); err != nil {
			bad("peers", "%q: %v", p, err)
		}
	}
	if cl.PeersDNS != "" {
		if err := checkHostPort(cl.PeersDNS); err != nil {
			bad("peers_dns", "%q: %v", cl.PeersDNS, err)
		}
	}
	if (len(cl.Peers) > 0 || cl.PeersDNS != "") && !cl.ReplicaID.Set {
		bad("replica_id", "required with peers or peers_dns")
	}
	// A forwarded cancel in plaintext arrives with a PROXY header, which
	// a peer accepts only with proxy_protocol on and this replica
	// trusted; on the peer channel the certificate says it instead.
	if (len(cl.Peers) > 0 || cl.PeersDNS != "") && !c.ProxyProtocolOn() && cl.PeerSSL != "require" {
		bad("peers", "forwarded cancels carry a PROXY header: set proxy_protocol = \"on\", with the peers in proxy_protocol_trusted, or peer_ssl = \"require\"")
	}
	peerFiles := []struct {
		key string
		val *string
	}{{"peer_ssl_cert_file", &cl.PeerSSLCertFile}, {"peer_ssl_key_file", &cl.PeerSSLKeyFile}, {"peer_ssl_ca_file", &cl.PeerSSLCAFile}}
	switch cl.PeerSSL {
	case "", "off":
		for _, f := range peerFiles {
			if *f.val != "" {
				bad(f.key, "set, but peer_ssl is not \"require\"")
			}
		}
	case "require":
		for _, f := range peerFiles {
			if *f.val == "" {
				bad("peer_ssl", "\"require\" needs %s", f.key)
			}
		}
		if !cl.ReplicaID.Set || len(cl.Peers) == 0 && cl.PeersDNS == "" {
			bad("peer_ssl", "\"require\" needs replica_id and peers or peers_dns")
		}
	default:
		bad("peer_ssl", "invalid value %q (off or require)", cl.PeerSSL)
	}
	if cl.CancelForwardTimeout.Duration < 0 {
		bad("cancel_forward_timeout", "must not be negative")
	}
	return errs
}

// clusterWarnings are drain settings that load but defeat the drain.
func (c *Config) clusterWarnings() []error {
	var out []error
	if c.ClusterOn() && c.DrainDelay.Duration == 0 {
		out = append(out, c.keyError("cluster.replica_id", "drain_delay is 0: on SIGTERM this replica refuses new sessions with 57P03 at once, while a balancer may still send it some; set drain_delay to at least the balancer's check interval × fall count"))
	}
	if c.DrainDelay.Duration > 0 && c.Admin.ListenAddress == "" {
		out = append(out, c.keyError("drain_delay", "set without [admin] listen_address: there is no /readyz for a balancer to see the drain by"))
	}
	return out
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not host:port")
	}
	if host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is outside the valid range 1..65535", port)
	}
	return nil
}
