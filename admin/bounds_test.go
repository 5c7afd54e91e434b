package admin

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// loginTimes lists the kept attempts, newest first, by ev's index.
func loginTimes(m *Monitor) string {
	var s []string
	for _, e := range m.Logins(LoginFilter{}) {
		s = append(s, fmt.Sprint(e.Time.Unix()-1000))
	}
	return strings.Join(s, ",")
}

// TestHistoryBounds checks that a configured history keeps exactly its
// newest N attempts, and that a reload's Resize keeps the newest that fit.
func TestHistoryBounds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		record int
		want   string
	}{
		{"one", 1, 5, "4"},
		{"under the cap", 4, 3, "2,1,0"},
		{"at the cap", 4, 4, "3,2,1,0"},
		{"past the cap", 4, 11, "10,9,8,7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMonitor(MonitorOptions{HistorySize: tc.size})
			for i := range tc.record {
				m.Record(ev(i, "accept", "alice", "authorized"))
			}
			if got := loginTimes(m); got != tc.want {
				t.Errorf("kept %s, want %s", got, tc.want)
			}
			if kept, capacity := m.hist.size(); capacity != tc.size || kept != min(tc.size, tc.record) {
				t.Errorf("size() = %d, %d; want %d, %d", kept, capacity, min(tc.size, tc.record), tc.size)
			}
		})
	}

	// Each step records up to an index, resizes, and says what is kept.
	m := NewMonitor(MonitorOptions{HistorySize: 5})
	next := 0
	recordTo := func(n int) {
		for ; next < n; next++ {
			m.Record(ev(next, "reject", "bob", "ident_no_match"))
		}
	}
	for _, step := range []struct {
		recordTo, resize int
		want             string
		capacity         int
	}{
		{8, 3, "7,6,5", 3},          // shrink a full, wrapped ring
		{9, 0, "8,7,6", 3},          // still 3 after one more
		{9, 6, "8,7,6", 6},          // grow: everything kept
		{12, 0, "11,10,9,8,7,6", 6}, // fills the new room
		{13, 0, "12,11,10,9,8,7", 6},
		{13, 6, "12,11,10,9,8,7", 6}, // unchanged size: a no-op
		{13, 1, "12", 1},
		{14, 0, "13", 1},
	} {
		recordTo(step.recordTo)
		if step.resize > 0 {
			m.Resize(MonitorOptions{HistorySize: step.resize})
		}
		if got := loginTimes(m); got != step.want {
			t.Errorf("after recording to %d and resizing to %d: kept %s, want %s", step.recordTo, step.resize, got, step.want)
		}
		if _, capacity := m.hist.size(); capacity != step.capacity {
			t.Errorf("capacity %d, want %d", capacity, step.capacity)
		}
	}

	// Shrinking a ring that has not filled keeps its newest.
	m = NewMonitor(MonitorOptions{HistorySize: 10})
	for i := range 3 {
		m.Record(ev(i, "accept", "alice", "authorized"))
	}
	m.Resize(MonitorOptions{HistorySize: 2})
	if got := loginTimes(m); got != "2,1" {
		t.Errorf("shrunk before filling: kept %s, want 2,1", got)
	}
}

// TestInventoryBounds checks that a configured inventory evicts the least
// recently seen certificate past its cap, that Resize evicts down to a
// smaller one, and that the byte budget follows the count.
func TestInventoryBounds(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	m := NewMonitor(MonitorOptions{InventorySize: 5})
	tick := 0
	see := func(ids ...int) {
		for _, id := range ids {
			e := ev(tick, "accept", "alice", "authorized")
			e.Cert = cert(id, now.Add(time.Duration(id)*24*time.Hour))
			m.Record(e)
			tick++
		}
	}
	// kept lists the inventory's certificates, most recently seen first.
	kept := func() string {
		m.inv.mu.Lock()
		defer m.inv.mu.Unlock()
		var s []string
		for el := m.inv.lru.Front(); el != nil; el = el.Next() {
			s = append(s, strings.TrimPrefix(el.Value.(*CertificateEntry).Subject, "CN=user"))
		}
		return strings.Join(s, ",")
	}
	for _, step := range []struct {
		see     []int
		resize  int
		want    string
		evicted uint64
	}{
		{[]int{0, 1, 2, 3, 4}, 0, "4,3,2,1,0", 0},
		{[]int{0, 5}, 0, "5,0,4,3,2", 1}, // 0 seen again: 1 is the least recent and goes
		{nil, 2, "5,0", 4},               // shrink: the two most recently seen stay
		{nil, 4, "5,0", 4},               // grow: nothing comes back
		{[]int{6, 7}, 0, "7,6,5,0", 4},
		{[]int{8}, 0, "8,7,6,5", 5}, // past the new cap, 0 goes
	} {
		see(step.see...)
		if step.resize > 0 {
			m.Resize(MonitorOptions{InventorySize: step.resize})
		}
		_, st := m.Certificates()
		if got := kept(); got != step.want || st.Evicted != step.evicted {
			t.Errorf("after seeing %v and resizing to %d: kept %s, %d evicted; want %s, %d", step.see, step.resize, got, st.Evicted, step.want, step.evicted)
		}
	}

	for _, tc := range []struct {
		opts            MonitorOptions
		entries, budget int
		historyCapacity int
	}{
		{MonitorOptions{}, DefaultInventorySize, DefaultInventoryBytes, DefaultHistorySize},
		{MonitorOptions{InventorySize: 20000}, 20000, 2 * DefaultInventoryBytes, DefaultHistorySize},
		{MonitorOptions{InventorySize: 100000, HistorySize: 7}, 100000, 10 * DefaultInventoryBytes, 7},
		{MonitorOptions{InventorySize: 1}, 1, DefaultInventoryBytes / DefaultInventorySize, DefaultHistorySize},
		{MonitorOptions{InventorySize: 5, InventoryBytes: 1234}, 5, 1234, DefaultHistorySize},
	} {
		b := NewMonitor(tc.opts).Bounds()
		if b.InventorySize != tc.entries || b.InventoryBytes != tc.budget || b.HistorySize != tc.historyCapacity {
			t.Errorf("NewMonitor(%+v).Bounds() = %+v, want %d entries, %d bytes, history %d", tc.opts, b, tc.entries, tc.budget, tc.historyCapacity)
		}
		r := NewMonitor(MonitorOptions{HistorySize: 3, InventorySize: 3})
		r.Resize(tc.opts)
		if rb := r.Bounds(); rb != b {
			t.Errorf("Resize(%+v): bounds %+v, want %+v as NewMonitor", tc.opts, rb, b)
		}
	}
}

// TestResizeWhileRecording resizes while attempts arrive, for the race
// detector, and checks the bounds hold throughout.
func TestResizeWhileRecording(t *testing.T) {
	now := time.Now()
	m := NewMonitor(MonitorOptions{HistorySize: 50, InventorySize: 50})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e := ev(i, "accept", "alice", "authorized")
			e.Cert = cert(i%200, now)
			m.Record(e)
		}
	})
	for i := range 200 {
		size := 1 + i%60
		m.Resize(MonitorOptions{HistorySize: size, InventorySize: size})
		_ = m.Logins(LoginFilter{})
		if kept, capacity := m.hist.size(); kept > capacity {
			t.Errorf("history %d over its capacity %d", kept, capacity)
		}
		if _, st := m.Certificates(); st.Entries > st.MaxEntries {
			t.Errorf("inventory %d over its cap %d", st.Entries, st.MaxEntries)
		}
	}
	close(stop)
	wg.Wait()
}
