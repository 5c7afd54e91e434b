package admin

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFitText(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int
		in     []string
		want   []string
		cut    bool
	}{
		{"fits", 10, []string{"abc", "def"}, []string{"abc", "def"}, false},
		{"longest cut first", 10, []string{"ab", strings.Repeat("x", 20)}, []string{"ab", strings.Repeat("x", 8)}, true},
		{"even cut", 9, []string{strings.Repeat("a", 10), strings.Repeat("b", 10), strings.Repeat("c", 10)}, []string{"aaa", "bbb", "ccc"}, true},
		{"short ones whole", 12, []string{"a", strings.Repeat("b", 30), strings.Repeat("c", 30)}, []string{"a", "bbbbb", "ccccc"}, true},
		// A cut never splits a rune: é is two bytes.
		{"rune boundary", 3, []string{"éé"}, []string{"é"}, true},
		{"zero budget", 0, []string{"abc", ""}, []string{"", ""}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := append([]string(nil), tc.in...)
			ptrs := make([]*string, len(got))
			for i := range got {
				ptrs[i] = &got[i]
			}
			cut := fitText(tc.budget, ptrs...)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || cut != tc.cut {
				t.Errorf("fitText(%d, %q) = %q, %v; want %q, %v", tc.budget, tc.in, got, cut, tc.want, tc.cut)
			}
			total := 0
			for _, s := range got {
				total += len(s)
				if !utf8.ValidString(s) {
					t.Errorf("%q is not valid UTF-8", s)
				}
			}
			if total > tc.budget {
				t.Errorf("total %d > budget %d", total, tc.budget)
			}
		})
	}
}

func ev(i int, verdict, user, reason string) LoginEvent {
	return LoginEvent{Time: time.Unix(int64(1000+i), 0), Client: "192.0.2.1", User: user, Database: "app", Verdict: verdict, Reason: reason}
}

func TestHistory(t *testing.T) {
	m := NewMonitor(MonitorOptions{HistorySize: 4})
	for i := range 6 {
		verdict, reason := "accept", "authorized"
		if i%2 == 1 {
			verdict, reason = "reject", "ident_no_match"
		}
		m.Record(ev(i, verdict, fmt.Sprintf("u%d", i%3), reason))
	}
	times := func(es []LoginEvent) string {
		var s []string
		for _, e := range es {
			s = append(s, fmt.Sprint(e.Time.Unix()-1000))
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		f    LoginFilter
		want string
	}{
		{LoginFilter{}, "5,4,3,2"}, // newest first, the two oldest gone
		{LoginFilter{Verdict: "reject"}, "5,3"},
		{LoginFilter{Reason: "authorized"}, "4,2"},
		{LoginFilter{User: "u2"}, "5,2"},
		{LoginFilter{Limit: 1}, "5"},
		{LoginFilter{User: "nobody"}, ""},
	} {
		if got := times(m.Logins(tc.f)); got != tc.want {
			t.Errorf("Logins(%+v) = %s, want %s", tc.f, got, tc.want)
		}
	}
	// Text from clients is capped per event.
	long := ev(9, "reject", strings.Repeat("u", 5000), "no_hba_match")
	long.Message = strings.Repeat("m", 5000)
	m.Record(long)
	e := m.Logins(LoginFilter{Limit: 1})[0]
	if n := len(e.Client) + len(e.User) + len(e.Database) + len(e.Verdict) + len(e.Reason) + len(e.Message); n > maxEventText {
		t.Errorf("event text %d bytes, cap %d", n, maxEventText)
	}
}

func cert(i int, notAfter time.Time) *CertificateSeen {
	return &CertificateSeen{
		Fingerprint: fmt.Sprintf("%064x", i),
		Subject:     fmt.Sprintf("CN=user%d", i),
		Issuer:      "CN=root",
		SANs:        []string{fmt.Sprintf("email:user%d@example.com", i)},
		NotBefore:   notAfter.Add(-365 * 24 * time.Hour),
		NotAfter:    notAfter,
	}
}

func TestInventory(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	m := NewMonitor(MonitorOptions{InventorySize: 3})
	m.now = func() time.Time { return now }
	at := func(i int) time.Time { return now.Add(time.Duration(i) * time.Second) }
	record := func(i int, c *CertificateSeen, user, verdict string) {
		e := ev(i, verdict, user, "x")
		e.Time, e.Cert = at(i), c
		m.Record(e)
	}
	c1, c2, c3, c4 := cert(1, now.Add(40*24*time.Hour)), cert(2, now.Add(10*24*time.Hour)), cert(3, now.Add(400*24*time.Hour)), cert(4, now.Add(2*24*time.Hour))
	record(1, c1, "alice", "accept")
	record(2, c1, "app", "accept")
	record(3, c1, "bob", "reject")
	record(4, c2, "bob", "accept")
	record(5, c3, "carol", "accept")
	record(6, c1, "alice", "accept") // c1 seen again: c2 is now the least recent
	record(7, c4, "dave", "accept")  // a fourth: c2 goes
	unverified := ev(8, "reject", "eve", "cert_invalid")
	unverified.CertUnverified = true
	m.Record(unverified)

	entries, st := m.Certificates()
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprintf("%s days=%d roles=%v acc=%d ref=%d", e.Subject, e.DaysLeft(now), e.Roles, e.Accepted, e.Refused))
	}
	want := []string{
		"CN=user4 days=2 roles=[dave] acc=1 ref=0",
		"CN=user1 days=40 roles=[alice app] acc=3 ref=1",
		"CN=user3 days=400 roles=[carol] acc=1 ref=0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("inventory:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st.Evicted != 1 || st.Unverified != 1 || st.Entries != 3 {
		t.Errorf("stats %+v, want 1 evicted, 1 unverified, 3 entries", st)
	}
	if e := entries[1]; !e.FirstSeen.Equal(at(1)) || !e.LastSeen.Equal(at(6)) {
		t.Errorf("c1 first/last seen %v %v", e.FirstSeen, e.LastSeen)
	}

	t.Run("text capped at 1 KiB", func(t *testing.T) {
		c := cert(9, now)
		c.Subject = "CN=" + strings.Repeat("s", 3000)
		c.Issuer = "CN=" + strings.Repeat("i", 3000)
		for i := range 100 {
			c.SANs = append(c.SANs, fmt.Sprintf("dns:%d.%s", i, strings.Repeat("d", 40)))
		}
		record(9, c, "alice", "accept")
		for i := range 100 {
			record(10+i, c, fmt.Sprintf("role%d_%s", i, strings.Repeat("r", 20)), "accept")
		}
		entries, _ := m.Certificates()
		for _, e := range entries {
			if e.Fingerprint != c.Fingerprint {
				continue
			}
			if n := e.textBytes(); n > maxEventText {
				t.Errorf("entry text %d bytes, cap %d", n, maxEventText)
			}
			if !e.Truncated || len(e.Roles) == 0 {
				t.Errorf("truncated=%v roles=%d", e.Truncated, len(e.Roles))
			}
		}
	})

	t.Run("byte cap", func(t *testing.T) {
		m := NewMonitor(MonitorOptions{InventorySize: 1000, InventoryBytes: 10 * (entryOverhead + 200)})
		for i := range 100 {
			e := ev(i, "accept", "alice", "authorized")
			e.Cert = cert(i, now)
			m.Record(e)
		}
		_, st := m.Certificates()
		if st.Bytes > st.MaxBytes || st.Entries+int(st.Evicted) != 100 || st.Evicted == 0 {
			t.Errorf("byte-capped inventory: %+v", st)
		}
	})
}

func TestExpiryMetrics(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	m := NewMonitor(MonitorOptions{})
	m.now = func() time.Time { return now }
	seen := func(i int, days float64, ago time.Duration) {
		e := ev(i, "accept", "u", "authorized")
		e.Time = now.Add(-ago)
		e.Cert = cert(i, now.Add(time.Duration(days*24*float64(time.Hour))))
		m.Record(e)
	}
	seen(1, 400, 48*time.Hour) // outside the 24 h window
	seen(2, 0.5, 48*time.Hour) // outside too, though it expires first
	seen(3, 20, time.Hour)
	seen(4, 5, time.Minute)
	seen(5, 100, 0)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	want := fmt.Sprintf(`
# HELP pgcertgate_client_cert_soonest_not_after_timestamp_seconds Earliest notAfter among the verified client certificates seen in the last 24 hours (absent when none was).
# TYPE pgcertgate_client_cert_soonest_not_after_timestamp_seconds gauge
pgcertgate_client_cert_soonest_not_after_timestamp_seconds %d
# HELP pgcertgate_client_cert_days_to_expiry Days to expiry of each distinct verified client certificate seen in the last 24 hours.
# TYPE pgcertgate_client_cert_days_to_expiry histogram
pgcertgate_client_cert_days_to_expiry_bucket{le="0"} 0
pgcertgate_client_cert_days_to_expiry_bucket{le="1"} 0
pgcertgate_client_cert_days_to_expiry_bucket{le="7"} 1
pgcertgate_client_cert_days_to_expiry_bucket{le="14"} 1
pgcertgate_client_cert_days_to_expiry_bucket{le="30"} 2
pgcertgate_client_cert_days_to_expiry_bucket{le="60"} 2
pgcertgate_client_cert_days_to_expiry_bucket{le="90"} 2
pgcertgate_client_cert_days_to_expiry_bucket{le="180"} 3
pgcertgate_client_cert_days_to_expiry_bucket{le="365"} 3
pgcertgate_client_cert_days_to_expiry_bucket{le="730"} 3
pgcertgate_client_cert_days_to_expiry_bucket{le="+Inf"} 3
pgcertgate_client_cert_days_to_expiry_sum 125
pgcertgate_client_cert_days_to_expiry_count 3
`, now.Add(5*24*time.Hour).Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"pgcertgate_client_cert_soonest_not_after_timestamp_seconds", "pgcertgate_client_cert_days_to_expiry"); err != nil {
		t.Error(err)
	}
	// Cardinality stays fixed: a thousand more certificates add no
	// series.
	before, _ := testutil.GatherAndCount(reg)
	for i := range 1000 {
		seen(100+i, float64(i), 0)
	}
	after, _ := testutil.GatherAndCount(reg)
	if before != after {
		t.Errorf("series grew from %d to %d with more certificates", before, after)
	}
}

// TestMemoryAtCaps fills the history and the inventory to their default
// caps with entries at their text cap, and measures the heap they hold.
func TestMemoryAtCaps(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates tens of MB")
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	big := func(prefix string, i, n int) string {
		s := fmt.Sprintf("%s%d-", prefix, i)
		return s + strings.Repeat("x", n-len(s))
	}
	now := time.Now()

	t.Run("history", func(t *testing.T) {
		base := heap()
		m := NewMonitor(MonitorOptions{})
		for i := range 3 * DefaultHistorySize {
			// Fresh strings each time, far over the cap.
			e := LoginEvent{Time: now, Client: "192.0.2.1", User: big("u", i, 2000), Database: big("d", i, 2000),
				Identity: big("i", i, 2000), Fingerprint: fmt.Sprintf("%064x", i), HBALine: big("/etc/pg_hba.conf:", i, 300),
				Verdict: "reject", Reason: "ident_no_match", SQLSTATE: "28000", Message: big("certificate authentication failed for user ", i, 2000)}
			m.Record(e)
		}
		used := heap() - base
		kept, capacity := m.hist.size()
		t.Logf("history at its cap: %d events, heap %d bytes (%.0f bytes/event)", kept, used, float64(used)/float64(kept))
		if kept != capacity || used > 2<<20 {
			t.Errorf("history of %d events holds %d bytes", kept, used)
		}
		runtime.KeepAlive(m)
	})

	t.Run("inventory", func(t *testing.T) {
		for _, tc := range []struct {
			name      string
			textBytes int
		}{{"typical entries", 200}, {"entries at the 1 KiB cap", 4000}} {
			base := heap()
			m := NewMonitor(MonitorOptions{})
			for i := range 2 * DefaultInventorySize {
				c := &CertificateSeen{Fingerprint: fmt.Sprintf("%064x", i), Subject: big("CN=", i, tc.textBytes/2), Issuer: big("CN=issuer", i, tc.textBytes/2),
					SANs: []string{big("email:", i, 40)}, NotBefore: now, NotAfter: now.Add(time.Hour)}
				m.Record(LoginEvent{Time: now, User: "alice", Verdict: "accept", Reason: "authorized", Cert: c})
			}
			used := heap() - base
			_, st := m.Certificates()
			t.Logf("inventory, %s: %d entries (cap %d), estimate %d bytes (cap %d), heap %d bytes (%.0f bytes/entry), %d evicted",
				tc.name, st.Entries, st.MaxEntries, st.Bytes, st.MaxBytes, used, float64(used)/float64(st.Entries), st.Evicted)
			if st.Bytes > st.MaxBytes || st.Entries > st.MaxEntries {
				t.Errorf("over the caps: %+v", st)
			}
			if used > uint64(st.MaxBytes)*3/2 {
				t.Errorf("heap %d bytes, well over the %d-byte cap: the estimate is off", used, st.MaxBytes)
			}
			runtime.KeepAlive(m)
		}
	})
}
