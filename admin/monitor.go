package admin

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MonitorOptions bounds what a Monitor keeps. Zero values mean the
// defaults.
type MonitorOptions struct {
	// HistorySize is how many connection attempts are kept
	// (DefaultHistorySize).
	HistorySize int
	// InventorySize and InventoryBytes bound the certificate inventory
	// (DefaultInventorySize; a zero InventoryBytes scales
	// DefaultInventoryBytes with InventorySize, 8 MiB per 10,000).
	InventorySize  int
	InventoryBytes int
}

// Monitor keeps what the admin API shows about logins: the last
// connection attempts and the verified client certificates seen since
// start. The server records every attempt in it (Record); its memory is
// bounded whatever clients send.
type Monitor struct {
	hist *history
	inv  *inventory
	now  func() time.Time
}

// NewMonitor makes a Monitor.
func NewMonitor(o MonitorOptions) *Monitor {
	return &Monitor{hist: newHistory(o.HistorySize), inv: newInventory(o.InventorySize, o.InventoryBytes), now: time.Now}
}

// Resize changes the bounds of a running Monitor, as a reload does:
// shrinking keeps the newest attempts and the most recently seen
// certificates (the evicted ones count in the evictions metric), growing
// keeps everything. Zero values mean the defaults, as in NewMonitor.
func (m *Monitor) Resize(o MonitorOptions) {
	m.hist.resize(o.HistorySize)
	m.inv.resize(o.InventorySize, o.InventoryBytes)
}

// Bounds returns the bounds in force, defaults filled in.
func (m *Monitor) Bounds() MonitorOptions {
	_, hist := m.hist.size()
	m.inv.mu.Lock()
	defer m.inv.mu.Unlock()
	return MonitorOptions{HistorySize: hist, InventorySize: m.inv.maxEntries, InventoryBytes: m.inv.maxBytes}
}

// Record keeps one connection attempt. A verified certificate goes to the
// inventory, with the attempt's outcome; an unverified one is only
// counted.
func (m *Monitor) Record(e LoginEvent) {
	if e.Time.IsZero() {
		e.Time = m.now()
	}
	switch {
	case e.Cert != nil:
		role := ""
		if e.Accepted() {
			role = e.User
		}
		m.inv.seen(e.Cert, e.Time, role, e.Accepted())
	case e.CertUnverified:
		m.inv.countUnverified()
	}
	m.hist.add(e)
}

// Logins returns the kept attempts that match f, newest first.
func (m *Monitor) Logins(f LoginFilter) []LoginEvent { return m.hist.list(f) }

// Certificates returns the inventory, soonest expiry first.
func (m *Monitor) Certificates() ([]CertificateEntry, InventoryStats) { return m.inv.list() }

// Collector exposes the certificate expiry metrics: the soonest notAfter
// among certificates seen in the last 24 hours, and a histogram of their
// days to expiry. Register it with the server's registry.
func (m *Monitor) Collector() prometheus.Collector { return collector{inv: m.inv, now: m.now} }

// SessionInfo is one live session, for /api/sessions.
type SessionInfo struct {
	ID       uint64
	User     string
	Database string
	Identity string
	Client   string
	Start    time.Time
	// BytesIn and BytesOut are relayed from and to the client so far.
	BytesIn, BytesOut int64
	BackendPID        uint32
	// Reused is set when the session runs on a kept backend.
	Reused bool
}

// Sessions is what the admin API needs from the server about live
// sessions; *pgwire.Server implements it.
type Sessions interface {
	// Sessions lists the sessions being relayed.
	Sessions() []SessionInfo
	// Terminate ends one: the client gets FATAL 57P01, as from
	// pg_terminate_backend. ErrNoSession when no session has the id.
	Terminate(id uint64) error
}

// ErrNoSession is Terminate's answer for an id that no live session has.
var ErrNoSession = errors.New("no such session")

// ConfigInfo is the configuration in force, for the page.
type ConfigInfo struct {
	// Files are the files it was loaded from.
	Files []string
	// LoadedAt is when it was loaded.
	LoadedAt time.Time
}

// configHolder keeps the latest ConfigInfo.
type configHolder struct {
	mu   sync.Mutex
	info ConfigInfo
}

func (c *configHolder) set(info ConfigInfo) {
	c.mu.Lock()
	c.info = info
	c.mu.Unlock()
}

func (c *configHolder) get() ConfigInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}
