package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcertgate/pgcertgate/config"
)

// cancelTarget maps the key a client holds to the backend's own key.
type cancelTarget struct {
	pid        uint32
	clientKey  []byte // the proxy's key, handed to the client
	backendKey []byte // never leaves the proxy, never logged
	network    string // where the backend lives, for the cancel connection
	address    string
	// inflight counts cancels being forwarded; remove waits for them, so
	// a cancel meant for one client can never reach a reused backend
	// after it has passed to the next.
	inflight sync.WaitGroup
}

// cancelRegistry routes CancelRequests. Entries are keyed by the backend
// pid the client was given; the key is compared in constant time.
type cancelRegistry struct {
	mu sync.Mutex
	m  map[uint32]*cancelTarget
}

func (r *cancelRegistry) add(t *cancelTarget) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[uint32]*cancelTarget)
	}
	r.m[t.pid] = t
}

// remove unregisters t and waits for cancels already on their way to its
// backend.
func (r *cancelRegistry) remove(t *cancelTarget) {
	r.mu.Lock()
	if r.m[t.pid] == t {
		delete(r.m, t.pid)
	}
	r.mu.Unlock()
	t.inflight.Wait()
}

// lookup finds the session a cancel names; the caller must call
// t.inflight.Done when it has forwarded it.
func (r *cancelRegistry) lookup(req cancelRequest) *cancelTarget {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.m[req.pid]
	if t == nil || subtle.ConstantTimeCompare(t.clientKey, req.key) != 1 {
		return nil
	}
	t.inflight.Add(1)
	return t
}

// cancelDialTimeout bounds the backend connection a cancel opens.
const cancelDialTimeout = 5 * time.Second

// cancelOutcome is what became of a cancel at this replica.
type cancelOutcome int

const (
	cancelNotHere   cancelOutcome = iota // no session of this replica's has the key
	cancelDelivered                      // sent to the session's backend
	cancelFailed                         // the session's, but the backend could not be reached
)

// forward sends a matching cancel to the backend. Unknown or malformed
// cancels are dropped silently, as PostgreSQL does; nothing is ever sent
// back to the requester.
func (r *cancelRegistry) forward(req cancelRequest, log *slog.Logger) cancelOutcome {
	t := r.lookup(req)
	if t == nil {
		log.Debug("cancel request ignored: no matching session", slog.Uint64("pid", uint64(req.pid)))
		return cancelNotHere
	}
	defer t.inflight.Done()
	conn, err := net.DialTimeout(t.network, t.address, cancelDialTimeout)
	if err != nil {
		log.Warn("could not forward cancel request", slog.Uint64("backend_pid", uint64(t.pid)), slog.String("error", err.Error()))
		return cancelFailed
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(cancelDialTimeout))
	buf, err := (&pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.backendKey}).Encode(nil)
	if err != nil {
		return cancelFailed
	}
	if _, err := conn.Write(buf); err != nil {
		log.Warn("could not forward cancel request", slog.Uint64("backend_pid", uint64(t.pid)), slog.String("error", err.Error()))
		return cancelFailed
	}
	// Wait for the backend to close, so the cancel has been delivered
	// before the requester's connection ends (libpq waits the same way).
	var one [1]byte
	_, _ = conn.Read(one[:])
	log.Info("cancel request forwarded", slog.Uint64("backend_pid", uint64(t.pid)))
	return cancelDelivered
}

// Cancel routing across replicas. A CancelRequest is a connection of its
// own, and a balancer may send it to any replica. Each replica's cancel
// keys carry its replica_id; a cancel this replica holds no session for,
// and whose key names another replica, goes once to each peer (at most
// maxCancelFanout of them) with a PROXY v2 header whose TLV marks it as
// forwarded. The session's replica delivers it; the others drop it, and no
// forwarded cancel is ever forwarded again.
const (
	// replicaShift places the replica id in the top five bits of the
	// key's first byte: a protocol 3.0 secret has only four bytes, and
	// 27 random bits remain there (3.2 keys keep 251).
	replicaShift = 3
	// maxCancelFanout bounds the peers one cancel goes to.
	maxCancelFanout = 16
	// maxCancelForwards bounds the forwards in flight at once, across all
	// cancels: past it a forward is counted failed rather than queued,
	// so that a dead peer cannot pile up goroutines.
	maxCancelForwards = 64
	// peersDNSTTL is how long one resolution of peers_dns is used.
	peersDNSTTL = 10 * time.Second
	// pp2TypeForwardedCancel is the PROXY v2 TLV (application range
	// 0xE0–0xEF) marking a cancel forwarded by a peer replica.
	pp2TypeForwardedCancel = 0xE7
)

// forwardedCancelMark is the TLV's value.
var forwardedCancelMark = []byte("pgcertgate forwarded cancel")

// newCancelKey makes a client cancel key of n bytes from crypto/rand,
// with this replica's id in its top bits when [cluster] names one.
func (c *clientConn) newCancelKey(n int) ([]byte, error) {
	key := make([]byte, n)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if cfg := c.state.rt.Config; cfg.ClusterOn() {
		key[0] = key[0]&(1<<replicaShift-1) | byte(cfg.ReplicaIDValue())<<replicaShift
	}
	return key, nil
}

// keyReplica is the replica id a cancel key carries.
func keyReplica(key []byte) int { return int(key[0] >> replicaShift) }

// cancelPeers is a Server's view of its peer replicas.
type cancelPeers struct {
	// slots bounds the forwards in flight.
	slots chan struct{}

	// lookup resolves peers_dns: net.DefaultResolver's, or a test's.
	lookup func(ctx context.Context, host string) ([]string, error)

	mu       sync.Mutex
	dnsName  string
	dnsAt    time.Time
	dnsAddrs []string
}

func newCancelPeers() *cancelPeers {
	return &cancelPeers{slots: make(chan struct{}, maxCancelForwards), lookup: net.DefaultResolver.LookupHost}
}

// targets lists the peers a cancel goes to, at most maxCancelFanout.
// peers_dns is resolved again once its last answer is peersDNSTTL old;
// a failed resolution keeps the last good answer.
func (p *cancelPeers) targets(cfg *config.Config, timeout time.Duration) []string {
	list := cfg.Cluster.Peers
	if name := cfg.Cluster.PeersDNS; name != "" {
		p.mu.Lock()
		stale := p.dnsName != name || time.Since(p.dnsAt) > peersDNSTTL
		list = slices.Clone(p.dnsAddrs)
		p.mu.Unlock()
		if stale {
			// Resolved outside the lock: a slow resolver must not hold
			// every other cancel behind it.
			host, port, _ := net.SplitHostPort(name)
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			addrs, err := p.lookup(ctx, host)
			cancel()
			p.mu.Lock()
			if err == nil || p.dnsName != name {
				p.dnsAddrs = p.dnsAddrs[:0]
				for _, a := range oneFamily(addrs) {
					p.dnsAddrs = append(p.dnsAddrs, net.JoinHostPort(a, port))
				}
				p.dnsName = name
			}
			// A failed lookup is tried again after the same interval,
			// not by every cancel while DNS is down.
			p.dnsAt = time.Now()
			list = slices.Clone(p.dnsAddrs)
			p.mu.Unlock()
		}
	}
	if len(list) > maxCancelFanout {
		list = list[:maxCancelFanout]
	}
	return list
}

// oneFamily keeps the IPv4 addresses of a name's resolution when it has
// any, else all of them, each once. In a dual-stack cluster a headless
// Service names each pod by both its IPv4 and its IPv6 address: forwarded
// to both, one cancel would reach the session's replica twice, and the
// second could cancel the query the client sends after the first was
// cancelled.
func oneFamily(addrs []string) []string {
	ips := make([]netip.Addr, 0, len(addrs))
	has4 := false
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			ips = append(ips, ip.Unmap())
			has4 = has4 || ip.Unmap().Is4()
		}
	}
	var out []string
	for _, ip := range ips {
		if has4 && !ip.Is4() || slices.Contains(out, ip.String()) {
			continue
		}
		out = append(out, ip.String())
	}
	return out
}

// routeCancel handles a CancelRequest that reached this replica: deliver
// it when the session is here, forward it once to the peers when its key
// names another replica, drop it otherwise. Nothing is ever answered.
func (s *Server) routeCancel(c *clientConn, req cancelRequest) {
	m := s.metrics
	m.cancel("received")
	if !s.forwardedCancelAllowed(c) {
		return
	}
	switch s.cancels.forward(req, s.log) {
	case cancelDelivered:
		m.cancel("delivered")
		return
	case cancelFailed:
		m.cancel("failed")
		return
	}
	cfg := c.state.rt.Config
	if !cfg.ClusterOn() || c.forwardedCancel || c.peerChannel || keyReplica(req.key) == cfg.ReplicaIDValue() {
		m.cancel("unknown")
		return
	}
	timeout := cfg.CancelForwardTimeout()
	// peers_dns names every replica, this one included, and a static
	// list may be the same on every replica: a cancel sent back to
	// this replica would only be dropped, at the cost of a slot.
	peers := withoutSelf(s.peers.targets(cfg, timeout), s.ownAddrs())
	if len(peers) == 0 {
		m.cancel("unknown")
		return
	}
	src := netip.AddrPortFrom(c.addr, c.port)
	var peerTLS *tls.Config
	if pt := c.state.rt.PeerTLS; pt != nil {
		peerTLS = peerClientTLS(pt)
	}
	var wg sync.WaitGroup
	for _, peer := range peers {
		select {
		case s.peers.slots <- struct{}{}:
		default:
			m.cancel("failed")
			s.log.Warn("cancel request not forwarded: too many forwards in flight", slog.String("peer", peer))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.peers.slots }()
			if err := forwardCancel(peer, src, req, timeout, peerTLS, cfg.ProxyTrusted); err != nil {
				m.cancel("failed")
				s.log.Warn("could not forward cancel request to a peer", slog.String("peer", peer), slog.String("error", err.Error()))
				return
			}
			m.cancel("forwarded")
		}()
	}
	// The requester's connection stays open until every forward is done
	// (each within timeout), as the session's own replica keeps it open
	// until the backend has the cancel.
	wg.Wait()
}

// ownAddrs lists the addresses this replica's TCP listeners answer on: a
// listener on an unspecified address (0.0.0.0, ::) answers on every
// interface address with its port.
func (s *Server) ownAddrs() map[netip.AddrPort]bool {
	s.mu.Lock()
	var addrs []netip.AddrPort
	for ln := range s.listeners {
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
			addrs = append(addrs, ap)
		}
	}
	s.mu.Unlock()
	own := make(map[netip.AddrPort]bool)
	var ifaces []netip.Prefix
	for _, ap := range addrs {
		if !ap.Addr().IsUnspecified() {
			own[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
			continue
		}
		if ifaces == nil {
			ifaces, _ = localPrefixes()
		}
		for _, p := range ifaces {
			own[netip.AddrPortFrom(p.Addr(), ap.Port())] = true
		}
	}
	return own
}

// withoutSelf drops from peers the addresses in own. Peers named by host
// name are kept: only an address can be told to be this replica's.
func withoutSelf(peers []string, own map[netip.AddrPort]bool) []string {
	out := peers[:0:0]
	for _, p := range peers {
		if ap, err := netip.ParseAddrPort(p); err == nil && own[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] {
			continue
		}
		out = append(out, p)
	}
	return out
}

// forwardCancel sends req to one peer: a PROXY v2 header carrying the
// client's address and the forwarded mark, then the CancelRequest, over
// the peer channel's TLS when peerTLS is set; it then waits for the peer
// to close, which it does once it has acted.
//
// On the peer channel the certificate says the cancel is forwarded, and
// the header is sent only where the peer requires one. A replica requires
// it exactly from a source address in proxy_protocol_trusted
// (acceptProxyHeader), and the source it sees is this connection's local
// address: trusted answers for that address, with the configuration the
// replicas share. Without TLS the header's mark is the only sign, and it
// is always sent.
func forwardCancel(peer string, src netip.AddrPort, req cancelRequest, timeout time.Duration, peerTLS *tls.Config, trusted func(netip.Addr) bool) error {
	deadline := time.Now().Add(timeout)
	conn, err := net.DialTimeout("tcp", peer, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	dst, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	local, _ := netip.ParseAddrPort(conn.LocalAddr().String())
	var buf []byte
	if peerTLS == nil || trusted(local.Addr()) {
		buf = forwardedCancelHeader(src, dst)
	}
	var rw net.Conn = conn
	if peerTLS != nil {
		if len(buf) > 0 {
			if _, err := conn.Write(buf); err != nil {
				return err
			}
		}
		if rw, err = startPeerTLS(conn, peerTLS); err != nil {
			return err
		}
		buf = nil
	}
	buf, err = (&pgproto3.CancelRequest{ProcessID: req.pid, SecretKey: req.key}).Encode(buf)
	if err != nil {
		return err
	}
	if _, err := rw.Write(buf); err != nil {
		return err
	}
	var one [1]byte
	if _, err := rw.Read(one[:]); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// forwardedCancelHeader is the PROXY v2 header of a forwarded cancel.
// The addresses are informational (the peer logs them); a client without
// an IP address (a Unix-domain socket) is sent as 0.0.0.0:0.
func forwardedCancelHeader(src, dst netip.AddrPort) []byte {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.IsValid() {
		s = netip.IPv4Unspecified()
	}
	if !d.IsValid() {
		d = netip.IPv4Unspecified()
	}
	fam := byte(0x11) // TCP over IPv4
	if s.Is6() || d.Is6() {
		fam = 0x21 // TCP over IPv6
		s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	}
	payload := append(s.AsSlice(), d.AsSlice()...)
	payload = binary.BigEndian.AppendUint16(payload, src.Port())
	payload = binary.BigEndian.AppendUint16(payload, dst.Port())
	payload = append(payload, pp2TypeForwardedCancel)
	payload = binary.BigEndian.AppendUint16(payload, uint16(len(forwardedCancelMark)))
	payload = append(payload, forwardedCancelMark...)
	b := append([]byte(nil), proxySigV2...)
	b = append(b, 0x21, fam) // version 2, PROXY
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

func newCancelCounter(ns string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cancel_requests_total",
		Help: "CancelRequests by result: received (every one), delivered (to this replica's backend), forwarded (to a peer, once per peer), unknown (no session here and nowhere to forward), failed (backend or peer unreachable, or too many forwards in flight), refused (marked forwarded but not over the verified peer channel, with peer_ssl = require)."},
		[]string{"result"})
	for _, r := range []string{"received", "delivered", "forwarded", "unknown", "failed", "refused"} {
		v.WithLabelValues(r)
	}
	return v
}

func (m *Metrics) cancel(result string) { m.cancels.WithLabelValues(result).Inc() }
