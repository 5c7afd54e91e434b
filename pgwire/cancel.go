package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
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

	mu       sync.Mutex
	dnsName  string
	dnsAt    time.Time
	dnsAddrs []string
}

func newCancelPeers() *cancelPeers {
	return &cancelPeers{slots: make(chan struct{}, maxCancelForwards)}
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
			addrs, err := net.DefaultResolver.LookupHost(ctx, host)
			cancel()
			p.mu.Lock()
			if err == nil || p.dnsName != name {
				p.dnsAddrs = p.dnsAddrs[:0]
				for _, a := range addrs {
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

// routeCancel handles a CancelRequest that reached this replica: deliver
// it when the session is here, forward it once to the peers when its key
// names another replica, drop it otherwise. Nothing is ever answered.
func (s *Server) routeCancel(c *clientConn, req cancelRequest) {
	m := s.metrics
	m.cancel("received")
	switch s.cancels.forward(req, s.log) {
	case cancelDelivered:
		m.cancel("delivered")
		return
	case cancelFailed:
		m.cancel("failed")
		return
	}
	cfg := c.state.rt.Config
	if !cfg.ClusterOn() || c.forwardedCancel || keyReplica(req.key) == cfg.ReplicaIDValue() {
		m.cancel("unknown")
		return
	}
	timeout := cfg.CancelForwardTimeout()
	peers := s.peers.targets(cfg, timeout)
	if len(peers) == 0 {
		m.cancel("unknown")
		return
	}
	src := netip.AddrPortFrom(c.addr, c.port)
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
			if err := forwardCancel(peer, src, req, timeout); err != nil {
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

// forwardCancel sends req to one peer: a PROXY v2 header carrying the
// client's address and the forwarded mark, then the CancelRequest; it
// then waits for the peer to close, which it does once it has acted.
func forwardCancel(peer string, src netip.AddrPort, req cancelRequest, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	conn, err := net.DialTimeout("tcp", peer, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	dst, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	buf := forwardedCancelHeader(src, dst)
	buf, err = (&pgproto3.CancelRequest{ProcessID: req.pid, SecretKey: req.key}).Encode(buf)
	if err != nil {
		return err
	}
	if _, err := conn.Write(buf); err != nil {
		return err
	}
	var one [1]byte
	if _, err := conn.Read(one[:]); err != nil && !errors.Is(err, io.EOF) {
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
		Help: "CancelRequests by result: received (every one), delivered (to this replica's backend), forwarded (to a peer, once per peer), unknown (no session here and nowhere to forward), failed (backend or peer unreachable, or too many forwards in flight)."},
		[]string{"result"})
	for _, r := range []string{"received", "delivered", "forwarded", "unknown", "failed"} {
		v.WithLabelValues(r)
	}
	return v
}

func (m *Metrics) cancel(result string) { m.cancels.WithLabelValues(result).Inc() }
