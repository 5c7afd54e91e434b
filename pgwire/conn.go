package pgwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/certauth"
)

// clientConn is one client connection from accept to close.
type clientConn struct {
	srv   *Server
	state *state // the configuration this connection started under
	raw   net.Conn
	conn  net.Conn // raw, or the *tls.Conn over it
	r     startupReader
	// ssl: the client negotiated TLS.
	ssl bool
	// peer is the client certificate once it has verified; nil without
	// one.
	peer  *certauth.Peer
	addr  netip.Addr
	port  uint16     // the client's TCP port, with addr
	local *localPeer // a Unix-domain socket client's credentials; nil on TCP
	start time.Time
	// attrs accumulate the one audit event this connection logs.
	attrs []slog.Attr
	// onAuthenticated frees the connection's startup slot once it is a
	// session.
	onAuthenticated func()
	// backend is set (under Server.mu) once a session runs.
	backend net.Conn
	// minor is the protocol 3 minor version negotiated with the client.
	minor uint16
	// id is the audit log's conn_id; user and database repeat the startup
	// packet's in the session-end event.
	id             uint64
	user, database string
	// forwardedCancel: a peer replica's PROXY header marked this
	// connection as a forwarded cancel, never to be forwarded again.
	forwardedCancel bool
	// peerChannel: the TLS handshake negotiated the peer channel and
	// verified a peer replica's certificate (peertls.go).
	peerChannel bool
	// authIdentity is the certificate name authentication accepted.
	authIdentity string
	// crlGen is the session watch's generation when the connection
	// began, read before its handshake checks revocation (revsess.go).
	crlGen uint64
	// exit is the work handle and serve defer to the connection's end,
	// which an event loop's session reaches after they return (relay.go).
	exit *connExit
}

func (c *clientConn) note(attrs ...slog.Attr) { c.attrs = append(c.attrs, attrs...) }

// serve runs the connection: negotiation, authentication, backend connect,
// then the relay. It logs exactly one auth event, plus a session-end event
// when a session ran.
func (c *clientConn) serve(ctx context.Context) {
	defer c.raw.Close()
	// Before the handshake: a reload or fetched CRL's update from now on
	// makes the session, once live, rechecked (sessionWatch.add).
	c.crlGen = c.srv.ext.watch.generation()
	cfg := c.state.rt.Config
	// authentication_timeout covers the startup packet, the TLS handshake
	// and authentication, as in PostgreSQL; the relay clears it.
	_ = c.raw.SetDeadline(c.start.Add(cfg.AuthenticationTimeout.Duration))

	// Everything before the relay (pg_hba.conf membership lookups, host
	// name resolution, backend connect) is bounded by the same deadline.
	authCtx, cancel := context.WithDeadline(ctx, c.start.Add(cfg.AuthenticationTimeout.Duration))
	// A balancer's PROXY header comes first, and says who the client is
	// before anything is decided about it (proxyproto.go).
	if err := c.acceptProxyHeader(); err != nil {
		cancel()
		c.refuse(err)
		return
	}
	sess, err := c.establish(authCtx)
	cancel()
	if err != nil {
		c.refuse(err)
		return
	}
	elapsed := time.Since(c.start)
	c.srv.metrics.authOK(elapsed)
	attrs := append(c.attrs,
		slog.String("event", "auth"),
		slog.String("verdict", verdictAccept),
		slog.String("reason", "authorized"),
		slog.Duration("duration", elapsed))
	c.srv.log.LogAttrs(ctx, slog.LevelInfo, "connection authorized", attrs...)
	c.observeLogin(attrs, elapsed)
	defer c.exit.atExit(c.srv.releaseSession)
	c.onAuthenticated()
	// What only authentication needed goes now, not at the end of a
	// session that may last for days: the audit attributes (logged
	// above) and the client certificate. (crypto/tls keeps its own
	// parsed copy of the chain for the connection's life.)
	c.attrs, c.peer = nil, nil
	c.runSession(ctx, sess)
}

// refuse reports a failed connection attempt: to the client with
// PostgreSQL's message (when the client is owed one), and to the log with
// everything PostgreSQL would have written to its server log.
func (c *clientConn) refuse(err error) {
	reason := reasonOf(err)
	if errors.Is(err, errSilentClose) {
		reason = "startup_closed"
	}
	if errors.Is(err, errCancelRequest) {
		// A cancel is not a connection attempt; PostgreSQL logs nothing.
		return
	}
	attrs := append(c.attrs, slog.String("event", "auth"), slog.String("verdict", verdictReject), slog.String("reason", reason))
	if e, ok := errors.AsType[*Error](err); ok && e.LogDetail != "" {
		attrs = append(attrs, slog.String("detail", e.LogDetail))
	} else if !ok && !errors.Is(err, errSilentClose) {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	if owesReply(err) {
		buf, msg := encodeError(err)
		attrs = append(attrs, slog.String("sqlstate", msg.Code), slog.String("message", msg.Message))
		_, _ = c.conn.Write(buf)
	}
	elapsed := time.Since(c.start)
	attrs = append(attrs, slog.Duration("duration", elapsed))
	c.srv.metrics.authFailed(reason, elapsed)
	c.srv.log.LogAttrs(context.Background(), slog.LevelInfo, "connection refused", attrs...)
	c.observeLogin(attrs, elapsed)
}

// mitmDetail is PostgreSQL's errdetail for plaintext that arrived before
// an encryption handshake.
const mitmDetail = "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."

// errCancelRequest marks a connection that carried a CancelRequest.
var errCancelRequest = errors.New("cancel request")

// establish negotiates, authenticates and connects the backend.
func (c *clientConn) establish(ctx context.Context) (*session, error) {
	si, err := c.negotiate()
	if err != nil {
		return nil, err
	}
	c.minor = si.negotiatedMinor()
	// PostgreSQL answers NegotiateProtocolVersion before it checks the
	// user name.
	if npv := negotiateProtocolVersion(si); npv != nil {
		if err := c.send(npv); err != nil {
			return nil, err
		}
	}
	if err := si.normalize(); err != nil {
		return nil, err
	}
	c.user, c.database = si.user, si.database
	c.note(slog.String("user", si.user), slog.String("database", si.database))
	if si.replication != replicationNone {
		c.note(slog.String("replication", si.replication.String()))
	}
	if err := refuseForgedIdentity(si); err != nil {
		return nil, err
	}
	if err := c.refusePeerChannelStartup(); err != nil {
		return nil, err
	}
	// A draining replica refuses new sessions where PostgreSQL checks
	// canAcceptConnections, and max_connections counts sessions: after
	// TLS and the startup packet, as in PostgreSQL (drain.go).
	if err := c.srv.admitSession(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.srv.releaseSession()
		}
	}()
	entry, err := c.authenticate(ctx, si)
	if err != nil {
		return nil, err
	}
	sess, err := c.connectBackend(ctx, si, entry)
	if err != nil {
		return nil, err
	}
	if err := c.recordLedger(ctx, sess, si, entry); err != nil {
		return nil, err
	}
	ok = true
	return sess, nil
}

// negotiate runs PostgreSQL's startup negotiation (ProcessStartupPacket):
// direct TLS, SSLRequest, GSSENCRequest, CancelRequest, then the
// StartupMessage.
func (c *clientConn) negotiate() (*startupInfo, error) {
	sslDone, gssDone := false, false
	first, err := c.r.Peek(1)
	if err != nil {
		return nil, errSilentClose
	}
	if first[0] == tlsHandshakeRecord && c.local == nil {
		// PostgreSQL 17 direct TLS: the ClientHello comes first, and the
		// bytes already buffered are part of it.
		if err := c.startTLS(true); err != nil {
			return nil, err
		}
		sslDone, gssDone = true, true
	}
	for {
		body, err := c.r.readPacket()
		if err != nil {
			return nil, err
		}
		proto := binary.BigEndian.Uint32(body)
		switch {
		case proto == cancelRequestCode:
			if req, ok := parseCancel(body); ok {
				c.srv.routeCancel(c, req)
			}
			return nil, errCancelRequest
		case proto == sslRequestCode && !sslDone && c.local != nil:
			if err := c.declineSSL(); err != nil {
				return nil, err
			}
			sslDone = true
		case proto == sslRequestCode && !sslDone:
			if err := c.startTLS(false); err != nil {
				return nil, err
			}
			sslDone, gssDone = true, true
		case proto == gssEncRequestCode && !gssDone:
			// pgcertgate does no GSSAPI: decline, and the client goes on
			// with SSL or a plain startup packet.
			if _, err := c.conn.Write([]byte{'N'}); err != nil {
				return nil, errSilentClose
			}
			gssDone = true
			// As after an SSLRequest: bytes that came with the request
			// were sent before the client read our answer.
			if c.r.Buffered() > 0 {
				e := fatal(codeProtocolViolation, "plaintext_after_gss_request", "received unencrypted data after GSSAPI encryption request")
				e.Detail = mitmDetail
				e.LogDetail = mitmDetail
				return nil, e
			}
		case proto>>16 != 3:
			return nil, unsupportedProtocol(proto)
		default:
			return parseStartup(body)
		}
	}
}

// startTLS answers an SSLRequest with 'S' (unless direct) and runs the
// handshake.
func (c *clientConn) startTLS(direct bool) error {
	var pre *bufio.Reader
	plaintextBuffered := false
	if direct {
		// The ClientHello's first bytes are in the startup buffer.
		pre = c.r.Reader
	} else {
		// CVE-2021-23214: anything already buffered arrived in plaintext
		// before the handshake and must never be read as part of the
		// encrypted session. PostgreSQL reports it after the handshake.
		plaintextBuffered = c.r.Buffered() > 0
		if _, err := c.raw.Write([]byte{'S'}); err != nil {
			return errSilentClose
		}
	}
	// serverHandshake sends OpenSSL's alert for a client certificate
	// that fails verification, where crypto/tls would send
	// bad_certificate (tlsalert.go).
	tc, err := serverHandshake(newTransport(c.raw, pre), c.state.tlsConfigFor(c))
	if err != nil {
		c.srv.metrics.tlsFailed(err)
		c.note(slog.String("tls_error", err.Error()), slog.String("tls_cause", tlsFailureCause(err)))
		return &Error{Severity: severityFatal, Reason: tlsAuditReason(err), LogDetail: err.Error()}
	}
	cs := tc.ConnectionState()
	c.ssl = true
	c.conn = tc
	c.r = newStartupReader(tc)
	c.peerChannel = cs.NegotiatedProtocol == alpnPeer
	c.note(slog.String("tls_version", tlsVersionName(cs.Version)),
		slog.String("tls_cipher", tls.CipherSuiteName(cs.CipherSuite)),
		slog.String("alpn", cs.NegotiatedProtocol))
	if direct && cs.NegotiatedProtocol != alpnPostgreSQL {
		// PostgreSQL 17: "received direct SSL connection request without
		// ALPN protocol negotiation extension", logged and closed.
		return &Error{Severity: severityFatal, Reason: "direct_tls_without_alpn", LogDetail: "direct TLS connection without ALPN"}
	}
	if err := authz.CommonNameError(c.peer); err != nil {
		return err
	}
	if plaintextBuffered {
		e := fatal(codeProtocolViolation, "plaintext_after_ssl_request", "received unencrypted data after SSL request")
		// ProcessStartupPacket's errdetail, which the client gets too.
		e.Detail = mitmDetail
		e.LogDetail = mitmDetail
		return e
	}
	return nil
}

// send writes one backend message to the client.
func (c *clientConn) send(msg pgproto3.BackendMessage) error {
	buf, err := msg.Encode(nil)
	if err != nil {
		return err
	}
	_, err = c.conn.Write(buf)
	return err
}

// notePeer records the client certificate for the audit event, whether or
// not it verifies: the event of a refused certificate says whose it was.
// Subject and issuer are OpenSSL's RFC 2253 text, as PostgreSQL logs and
// matches them; the serial is decimal, as pg_stat_ssl.client_serial shows
// it.
func (c *clientConn) notePeer(p *certauth.Peer) {
	c.note(slog.String("cert_subject", certauth.LogText(p.Subject)),
		slog.String("cert_issuer", certauth.LogText(p.Issuer)),
		slog.String("cert_serial", p.Leaf().SerialNumber.String()),
		slog.String("cert_sha256", p.Fingerprint()),
		slog.Time("cert_not_after", p.Leaf().NotAfter))
}
