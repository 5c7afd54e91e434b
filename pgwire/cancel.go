package pgwire

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
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

// forward sends a matching cancel to the backend. Unknown or malformed
// cancels are dropped silently, as PostgreSQL does; nothing is ever sent
// back to the requester.
func (r *cancelRegistry) forward(req cancelRequest, log *slog.Logger) {
	t := r.lookup(req)
	if t == nil {
		log.Debug("cancel request ignored: no matching session", slog.Uint64("pid", uint64(req.pid)))
		return
	}
	defer t.inflight.Done()
	conn, err := net.DialTimeout(t.network, t.address, cancelDialTimeout)
	if err != nil {
		log.Warn("could not forward cancel request", slog.Uint64("backend_pid", uint64(t.pid)), slog.String("error", err.Error()))
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(cancelDialTimeout))
	buf, err := (&pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.backendKey}).Encode(nil)
	if err != nil {
		return
	}
	if _, err := conn.Write(buf); err != nil {
		log.Warn("could not forward cancel request", slog.Uint64("backend_pid", uint64(t.pid)), slog.String("error", err.Error()))
		return
	}
	// Wait for the backend to close, so the cancel has been delivered
	// before the requester's connection ends (libpq waits the same way).
	var one [1]byte
	_, _ = conn.Read(one[:])
	log.Info("cancel request forwarded", slog.Uint64("backend_pid", uint64(t.pid)))
}
