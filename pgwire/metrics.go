package pgwire

import (
	"sync"
	"sync/atomic"
	"time"
)

// Metrics counts what the server does. Counters are cumulative; Active is
// a gauge. They are plain atomics so the hot path pays one add each.
type Metrics struct {
	Accepted       atomic.Int64
	Active         atomic.Int64
	Closed         atomic.Int64
	AuthOK         atomic.Int64
	TLSFailures    atomic.Int64
	BytesIn        atomic.Int64
	BytesOut       atomic.Int64
	BackendConnect atomic.Int64 // nanoseconds spent, summed

	mu          sync.Mutex
	authFailure map[string]int64
}

func (m *Metrics) accepted()       { m.Accepted.Add(1) }
func (m *Metrics) authOK()         { m.AuthOK.Add(1) }
func (m *Metrics) tlsFailed(error) { m.TLSFailures.Add(1) }
func (m *Metrics) sessionStarted() { m.Active.Add(1) }
func (m *Metrics) sessionEnded()   { m.Active.Add(-1); m.Closed.Add(1) }
func (m *Metrics) relayed(in, out int64) {
	m.BytesIn.Add(in)
	m.BytesOut.Add(out)
}
func (m *Metrics) backendConnect(d time.Duration) { m.BackendConnect.Add(int64(d)) }

func (m *Metrics) authFailed(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.authFailure == nil {
		m.authFailure = make(map[string]int64)
	}
	m.authFailure[reason]++
}

// AuthFailures returns the failed attempts by reason code.
func (m *Metrics) AuthFailures() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.authFailure))
	for k, v := range m.authFailure {
		out[k] = v
	}
	return out
}
