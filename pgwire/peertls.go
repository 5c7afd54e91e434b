package pgwire

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"

	"github.com/pgcertgate/pgcertgate/config"
)

// The peer channel. With [cluster] peer_ssl = "require", a replica
// forwards a cancel as a PostgreSQL client sending a cancel over TLS does
// (libpq 17 does): the PROXY v2 header with the forwarded mark, an
// SSLRequest, then a TLS handshake offering only the ALPN protocol
// alpnPeer and presenting peer_ssl_cert_file, and the CancelRequest
// inside. The receiving replica recognises the protocol in the
// ClientHello and answers with its own peer certificate, requiring and
// verifying the forwarder's against peer_ssl_ca_file alone; the client
// CAs of pg_hba.conf play no part. A connection that negotiated the
// protocol carries exactly one CancelRequest, and a forwarded cancel that
// did not come that way is dropped: the mark alone proves nothing.
const alpnPeer = "pgcertgate-peer"

// peerServerTLS returns the GetConfigForClient hook that serves the peer
// channel on the client port; nil without peer_ssl = "require". Every
// other ClientHello gets the client-facing configuration (nil, nil).
func peerServerTLS(rt *config.Runtime) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	pt := rt.PeerTLS
	if pt == nil {
		return nil
	}
	cfg := &tls.Config{
		Certificates:           []tls.Certificate{pt.Cert},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              pt.CAs,
		NextProtos:             []string{alpnPeer},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	}
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(hello.SupportedProtos, alpnPeer) {
			return cfg, nil
		}
		return nil, nil
	}
}

// peerClientTLS is the forwarder's side: this replica's peer certificate,
// and the peer's verified against peer_ssl_ca_file. The peer is dialled by
// address (peers_dns resolves to pod addresses), so its name is not
// checked: the dedicated CA is the identity, as with sslmode=verify-ca.
func peerClientTLS(pt *config.PeerTLS) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{pt.Cert},
		NextProtos:   []string{alpnPeer},
		MinVersion:   tls.VersionTLS13,
		// Verified in VerifyConnection, without the host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != alpnPeer {
				return errors.New("the peer did not accept the peer channel protocol (is its peer_ssl \"require\"?)")
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the peer sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pt.CAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("peer certificate: %w", err)
			}
			return nil
		},
	}
}

// startPeerTLS turns a connection to a peer, its PROXY header already
// sent, into the peer channel: SSLRequest, 'S', handshake.
func startPeerTLS(conn net.Conn, cfg *tls.Config) (net.Conn, error) {
	if _, err := conn.Write(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, sslRequestCode)); err != nil {
		return nil, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return nil, fmt.Errorf("no answer to SSLRequest: %w", err)
	}
	if answer[0] != 'S' {
		return nil, fmt.Errorf("the peer declined SSL (%q)", answer[0])
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	return tc, nil
}

// errPeerChannelStartup: a startup packet on the peer channel, which
// carries only cancels. Logged, never answered: a peer is no client.
var errPeerChannelStartup = &Error{Severity: severityFatal, Reason: "peer_channel_startup",
	LogDetail: "a startup packet on the peer channel, which carries only cancel requests"}

// refusePeerChannelStartup refuses a startup packet that came over the
// peer channel: it must never become a session.
func (c *clientConn) refusePeerChannelStartup() error {
	if c.peerChannel {
		return errPeerChannelStartup
	}
	return nil
}

// forwardedCancelAllowed reports whether a cancel marked forwarded may be
// acted on here; it logs and counts the refusal. With peer_ssl =
// "require" only the verified peer channel may carry one.
func (s *Server) forwardedCancelAllowed(c *clientConn) bool {
	if !c.forwardedCancel || c.peerChannel || !c.state.rt.Config.PeerSSLRequired() {
		return true
	}
	s.metrics.cancel("refused")
	s.log.Warn("forwarded cancel request refused: not over the verified peer channel (peer_ssl = \"require\")",
		slog.String("client", c.addr.String()), slog.String("proxy_peer", c.raw.RemoteAddr().String()))
	return false
}
