// Package pgwire is pgcertgate's server: listener, PostgreSQL startup
// negotiation, TLS, the authentication pipeline, backend connect, relay and
// cancel routing.
package pgwire

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/revocation"
)

// state is one loaded configuration with what the server derives from it.
// A reload builds a new state and swaps the pointer; connections keep the
// state they started with.
type state struct {
	rt      *config.Runtime
	baseTLS *tls.Config
	roles   *catalogRoles
	// snap is what authz decides this configuration's connections with.
	snap *authz.Snapshot
	// revocation is the OCSP and fetched-CRL policy (revocation.go).
	revocation revocation.Policy
}

func newState(rt *config.Runtime) *state {
	st := &state{rt: rt, revocation: revocationPolicy(rt.Config)}
	minVersion := uint16(tls.VersionTLS12)
	if rt.Config.SSLMinProtocolVersion == "TLSv1.3" {
		minVersion = tls.VersionTLS13
	}
	st.baseTLS = &tls.Config{
		Certificates: []tls.Certificate{rt.ServerCert},
		MinVersion:   minVersion,
		// ALPN as PostgreSQL 17: a client offering only other protocols
		// gets the no_application_protocol alert from crypto/tls.
		NextProtos: []string{alpnPostgreSQL},
		// PostgreSQL sets SSL_OP_NO_TICKET. Without tickets no session is
		// ever resumed, so every connection's chain is verified against
		// the current CRLs: resumption cannot bypass revocation.
		SessionTicketsDisabled: true,
		ClientAuth:             tls.NoClientCert,
		// Peer replicas' forwarded cancels, under their own CA (peertls.go).
		GetConfigForClient: peerServerTLS(rt),
	}
	if rt.ClientCAs != nil {
		// Like PostgreSQL with ssl_ca_file: always ask, accept none, and
		// verify whatever is presented (in VerifyConnection, with
		// OpenSSL's semantics rather than crypto/tls's).
		st.baseTLS.ClientAuth = tls.RequestClientCert
		// Only used for the CertificateRequest's list of CA names: those
		// of ssl_ca_file and of every set a pg_hba.conf line requires.
		st.baseTLS.ClientCAs = rt.ClientCAs.Names()
	}
	if rt.Config.Backend.CatalogUser != "" {
		st.roles = newCatalogRoles(rt.Backend, rt.Config.Backend.CatalogUser)
	}
	env := hba.Env{LocalAddrs: localPrefixes, Resolver: net.DefaultResolver}
	if st.roles != nil {
		env.Roles = st.roles
	}
	st.snap = &authz.Snapshot{HBA: rt.HBA, Ident: rt.Ident, CAConfigured: rt.Verifier != nil, Trust: rt.ClientCAs, Env: env, Users: osUsers{}}
	return st
}

// tlsConfigFor returns the TLS configuration for one connection: the
// shared one plus a verifier that builds the connection's certauth.Peer.
// The Peer describes the presented leaf for the audit event at once, and
// is kept on c only once its chain has verified.
func (st *state) tlsConfigFor(c *clientConn) *tls.Config {
	if st.rt.ClientCAs == nil {
		return st.baseTLS
	}
	cfg := st.baseTLS.Clone()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		if err := checkCertListSize(cs); err != nil {
			return err
		}
		// The chain crypto/tls parsed: parsing it again would cost
		// every connection a second copy for its whole life.
		peer := certauth.NewPeer(cs.PeerCertificates)
		c.notePeer(peer)
		// The union of the CA sets: the startup packet that says which
		// pg_hba.conf line, and so which set, applies is still to come.
		chain, set, err := st.rt.ClientCAs.Verify(cs.PeerCertificates, time.Now())
		if err != nil {
			return err
		}
		if err := c.checkRevocation(c.srv.connContext(), chain, set); err != nil {
			return err
		}
		peer.VerifiedIn(chain, set.Name)
		c.peer = peer
		return nil
	}
	return cfg
}

// Server accepts PostgreSQL clients.
type Server struct {
	log     *slog.Logger
	state   atomic.Pointer[state]
	cancels cancelRegistry
	peers   *cancelPeers // the other replicas, for cancels (cancel.go)
	drain   drainState   // SIGTERM's way out of a balancer's rotation (drain.go)
	metrics *Metrics
	connIDs atomic.Uint64
	pool    *backendPool
	revoker *revocation.Checker // OCSP answers and fetched CRLs, kept across reloads
	ext     serverExt           // identity ledger, login recorder, live sessions (ledger.go)

	// Limits are fixed at start: a reload that changes them is logged as
	// needing a restart.
	startupSlots chan struct{}
	sessionSlots chan struct{}

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	closing   bool
	forced    bool // Shutdown's deadline passed: close on sight
	// connCtx is every connection's context: closeAll cancels it, so
	// that OCSP and CRL requests still in flight end with the sockets.
	connCtx  context.Context
	endConns context.CancelFunc
	wg       sync.WaitGroup
	idle     chan struct{} // closed when closing and no session remains
}

// Options configures a Server.
type Options struct {
	// Runtime is the configuration served first; Reload replaces it.
	Runtime *config.Runtime
	// Logger receives the audit events and the server's own messages.
	// Nil discards them.
	Logger *slog.Logger
}

// New makes a Server serving o.Runtime.
func New(o Options) *Server {
	rt, log := o.Runtime, o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:          log,
		startupSlots: make(chan struct{}, rt.Config.MaxStartupConnections),
		sessionSlots: make(chan struct{}, rt.Config.MaxConnections),
		listeners:    make(map[net.Listener]struct{}),
		conns:        make(map[*clientConn]struct{}),
		pool:         newBackendPool(),
		peers:        newCancelPeers(),
		drain:        newDrainState(),
	}
	s.connCtx, s.endConns = context.WithCancel(context.Background())
	setEventLoops(rt.Config.EventLoops())
	s.state.Store(newState(rt))
	s.metrics = newMetrics(s.state.Load)
	s.revoker = newRevoker(s.metrics)
	s.startSessionWatch()
	s.ext.ledger = newLedger(rt, log)
	return s
}

// ReusedBackends counts sessions served by a kept backend connection.
func (s *Server) ReusedBackends() int64 { return s.pool.Reused.Load() }

// IdleBackends is the number of backend connections kept for reuse.
func (s *Server) IdleBackends() int { return s.pool.idleCount() }

// Metrics returns the server's Prometheus collector.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Reload swaps in a new configuration. Sessions already running keep the
// configuration they authenticated under; new connections use rt. Settings
// fixed at start (listeners, limits, log format) keep their old values;
// the caller says so to the operator.
func (s *Server) Reload(rt *config.Runtime) {
	next := newState(rt)
	prev := s.state.Swap(next)
	s.metrics.reloaded()
	// New CRLs (ssl_crl_file, ssl_crl_dir) may revoke running sessions.
	s.ext.watch.reloaded()
	if prev.roles != nil {
		prev.roles.close()
	}
}

// Config returns the configuration in force: the last one loaded
// successfully.
func (s *Server) Config() *config.Config { return s.state.Load().rt.Config }

// Listen opens the configured listen_addresses, then the
// unix_socket_directories sockets (ListenUnix).
func (s *Server) Listen(ctx context.Context) ([]net.Listener, error) {
	cfg := s.state.Load().rt.Config
	// Zero means the operating system's default, as in postgresql.conf;
	// crypto/net treats zero as its own 15 s / 15 s / 9 and -1 as "leave
	// the OS setting alone".
	osDefault := func(v int) int {
		if v == 0 {
			return -1
		}
		return v
	}
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{
		Enable:   true,
		Idle:     time.Duration(osDefault(cfg.TCPKeepalivesIdle)) * time.Second,
		Interval: time.Duration(osDefault(cfg.TCPKeepalivesInterval)) * time.Second,
		Count:    osDefault(cfg.TCPKeepalivesCount),
	}}
	var lns []net.Listener
	for _, addr := range cfg.ListenAddrs() {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("could not listen on %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	unix, err := s.ListenUnix()
	if err != nil {
		for _, l := range lns {
			l.Close()
		}
		return nil, err
	}
	return append(lns, unix...), nil
}

// Serve accepts connections on ln until ln is closed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off rather
			// than spin, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed", slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.metrics.accepted()
		select {
		case s.startupSlots <- struct{}{}:
		default:
			// Too many connections still in TLS or startup: drop this
			// one before it costs a handshake.
			s.metrics.startupRejected()
			raw.Close()
			continue
		}
		// Add under the lock that Shutdown takes, so that Wait can
		// never miss a connection accepted just before the listener
		// closed.
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			<-s.startupSlots
			raw.Close()
			continue
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(raw)
	}
}

func (s *Server) handle(raw net.Conn) {
	// A session an event loop relays outlives this goroutine: what is
	// deferred through exit waits for the session's end.
	exit := &connExit{log: s.log}
	defer exit.goroutineDone()
	defer exit.atExit(s.wg.Done)
	// A bug in one connection's handling must not take every session
	// down with it: log it and drop that connection only.
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic while handling a connection", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			raw.Close()
		}
	}()
	released := false
	releaseStartup := func() {
		if !released {
			released = true
			<-s.startupSlots
		}
	}
	defer releaseStartup()
	s.metrics.connOpened()
	defer exit.atExit(s.metrics.connClosed)
	c := &clientConn{srv: s, state: s.state.Load(), raw: raw, conn: raw, r: newStartupReader(raw), start: time.Now(), id: s.connIDs.Add(1)}
	if uc, ok := raw.(*net.UnixConn); ok {
		c.initLocal(uc)
	} else {
		var port uint16
		if ap, err := netip.ParseAddrPort(raw.RemoteAddr().String()); err == nil {
			// PostgreSQL listens on IPv6-only sockets, so an IPv4 client is
			// always IPv4 there; a dual-stack Go listener may report it
			// v4-mapped, which must not escape IPv4 pg_hba.conf lines.
			c.addr = ap.Addr().Unmap()
			port = ap.Port()
			c.port = port
		}
		// conn_id ties the auth event to the session-end event; the client
		// port ties both to the client's own logs and to netstat.
		c.note(slog.Uint64("conn_id", c.id), slog.String("client", c.addr.String()), slog.Uint64("client_port", uint64(port)))
	}
	c.onAuthenticated = releaseStartup
	c.exit = exit
	if !s.track(c) {
		raw.Close()
		return
	}
	defer exit.atExit(func() { s.untrack(c) })
	c.serve(s.connContext())
}

// connContext is connCtx, or (for a Server not made by New) a context
// nothing cancels.
func (s *Server) connContext() context.Context {
	if s.connCtx == nil {
		return context.Background()
	}
	return s.connCtx
}

// acquireSession takes a max_connections slot without waiting.
func (s *Server) acquireSession() bool {
	select {
	case s.sessionSlots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) releaseSession() {
	<-s.sessionSlots
	s.drain.sessionEnded()
}

// track registers a connection so that Shutdown and Close can reach it.
func (s *Server) track(c *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *clientConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.closing && len(s.conns) == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// setBackend records a session's backend connection so that a fast
// shutdown closes it too.
func (s *Server) setBackend(c *clientConn, backend net.Conn) {
	s.mu.Lock()
	c.backend = backend
	closing := s.closing && s.forced
	s.mu.Unlock()
	if closing && backend != nil {
		backend.Close()
	}
}

// Shutdown stops accepting, lets running connections finish until ctx is
// done, then closes what is left. It returns once every connection
// goroutine has ended.
//
// Each step is logged: listeners closed, connections waited for, and how
// many were closed when ctx ended. Closing a connection closes its sockets
// and nothing else: no ErrorResponse is ever written into a relayed
// stream, which could land in the middle of a backend message.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	var errs []error
	listeners := len(s.listeners)
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	open := len(s.conns)
	idle := s.idle
	if idle == nil {
		idle = make(chan struct{})
		if open == 0 {
			close(idle)
		} else {
			s.idle = idle
		}
	}
	s.mu.Unlock()
	s.log.Info("stopped accepting connections", slog.Int("listeners", listeners), slog.Int("open_connections", open))
	if open > 0 && ctx.Err() == nil {
		deadline, _ := ctx.Deadline()
		s.log.Info("waiting for open connections to end", slog.Int("connections", open), slog.Time("deadline", deadline))
	}
	select {
	case <-idle:
		if open > 0 {
			s.log.Info("all connections have ended")
		}
	case <-ctx.Done():
		left := s.closeAll()
		if errors.Is(ctx.Err(), context.Canceled) {
			s.log.Info("closing open connections", slog.Int("connections", left))
		} else {
			errs = append(errs, fmt.Errorf("shutdown: %w; closing remaining sessions", ctx.Err()))
			s.log.Warn("shutdown timeout reached: closing remaining connections", slog.Int("connections", left))
		}
	}
	s.wg.Wait()
	s.ext.watch.close()
	s.revoker.Close()
	s.pool.close()
	if s.ext.ledger != nil {
		// After the sessions: their deletes are sent first.
		s.ext.ledger.Close()
	}
	if st := s.state.Load(); st.roles != nil {
		st.roles.close()
	}
	return errors.Join(errs...)
}

// Close stops accepting and closes every connection at once, like
// PostgreSQL's fast shutdown.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}

func (s *Server) closeAll() int {
	s.mu.Lock()
	s.forced = true
	if s.endConns != nil {
		s.endConns()
	}
	var conns []net.Conn
	for c := range s.conns {
		conns = append(conns, c.raw)
		if c.backend != nil {
			conns = append(conns, c.backend)
		}
	}
	n := len(s.conns)
	s.mu.Unlock()
	// Close outside the lock: closing a TLS connection may wait to send
	// close_notify, and untrack/setBackend need the lock meanwhile.
	for _, c := range conns {
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		c.Close()
	}
	return n
}

// Serving reports whether the server accepts connections: at least one
// listener is open and no shutdown has begun. It is /readyz's first test.
func (s *Server) Serving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closing && !s.drain.draining.Load() && len(s.listeners) > 0
}

// ProbeBackend checks that the backend PostgreSQL answers the protocol
// without opening a session: it sends a GSSENCRequest, reads the one-byte
// answer ('N', or 'G' from a GSSAPI build over TCP) and closes. PostgreSQL
// logs nothing for such a probe beyond log_connections' "connection
// received" (verified with PostgreSQL 15: an SSLRequest answered 'S' then
// dropped logs "could not accept SSL connection: EOF detected", and a
// CancelRequest logs "PID 0 in cancel request did not match any process").
// Each host of the DSN is tried in turn, as libpq would; callers bound the
// time with ctx and rate-limit the calls.
func (s *Server) ProbeBackend(ctx context.Context) error {
	cfg := s.state.Load().rt.Backend
	targets := append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port}}, cfg.Fallbacks...)
	dial := cfg.DialFunc
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	var errs []error
	for _, t := range targets {
		network, address := pgconn.NetworkAddress(t.Host, t.Port)
		err := probePostgres(ctx, dial, network, address)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s %s: %w", network, address, err))
	}
	return errors.Join(errs...)
}

func probePostgres(ctx context.Context, dial pgconn.DialFunc, network, address string) error {
	conn, err := dial(ctx, network, address)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	req := binary.BigEndian.AppendUint32(nil, 8)
	req = binary.BigEndian.AppendUint32(req, gssEncRequestCode)
	if _, err := conn.Write(req); err != nil {
		return err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return fmt.Errorf("no answer to a GSSENCRequest: %w", err)
	}
	return nil
}

// localPrefixes lists the host's interface networks for samehost/samenet.
func localPrefixes() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			addr, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			out = append(out, netip.PrefixFrom(addr.Unmap(), ones))
		}
	}
	return out, nil
}
