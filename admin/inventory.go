package admin

import (
	"container/list"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the certificate inventory's bounds.
const (
	// DefaultInventorySize is how many certificates are kept; past it
	// the least recently seen go.
	DefaultInventorySize = 10000
	// DefaultInventoryBytes caps the inventory's estimated memory at
	// DefaultInventorySize; another size scales it (inventoryBytes).
	DefaultInventoryBytes = 8 << 20
)

// inventoryBytes is the byte budget for that many certificates, 8 MiB per
// 10,000, so that certificates of typical size (a few hundred bytes of
// text) meet the count first, and only those whose text is near its cap
// meet the budget, as at the defaults.
func inventoryBytes(entries int) int {
	return int(int64(entries) * DefaultInventoryBytes / DefaultInventorySize)
}

// entryOverhead is what an inventory entry costs beyond its text: the
// struct, its list element, its map slot and the string headers.
const entryOverhead = 400

// maxKeptNames bounds the SANs and roles kept per certificate, whatever
// their total length: each costs a string header.
const maxKeptNames = 32

// expiryWindow is how recently a certificate must have been seen to count
// in the expiry metrics.
const expiryWindow = 24 * time.Hour

// CertificateSeen describes a verified client certificate.
type CertificateSeen struct {
	Fingerprint string // lowercase hex SHA-256 of the DER
	Subject     string // OpenSSL RFC 2253
	Issuer      string
	SANs        []string // "type:value", in certificate order
	NotBefore   time.Time
	NotAfter    time.Time
}

// CertificateEntry is one certificate in the inventory.
type CertificateEntry struct {
	CertificateSeen
	FirstSeen, LastSeen time.Time
	// Roles are the roles the certificate logged in as, in first-use
	// order.
	Roles []string
	// Accepted and Refused count the attempts made with it after it
	// verified.
	Accepted, Refused uint64
	// Truncated is set when some of its text was cut to fit the cap.
	Truncated bool
}

// DaysLeft is the whole days until NotAfter from now, negative once
// expired.
func (e *CertificateEntry) DaysLeft(now time.Time) int {
	return int(math.Floor(e.NotAfter.Sub(now).Hours() / 24))
}

func (e *CertificateEntry) textBytes() int {
	n := len(e.Fingerprint) + len(e.Subject) + len(e.Issuer)
	for _, s := range e.SANs {
		n += len(s)
	}
	for _, s := range e.Roles {
		n += len(s)
	}
	return n
}

// fit cuts the entry's text to maxEventText: names first, whole, then as
// many SANs and roles as fit.
func (e *CertificateEntry) fit() {
	if fitText(maxEventText/2, &e.Subject, &e.Issuer) {
		e.Truncated = true
	}
	room := maxEventText - e.textBytes() + sumLen(e.SANs) + sumLen(e.Roles)
	keep := func(names []string) []string {
		out := names[:0:0]
		for _, s := range names {
			if len(out) == maxKeptNames || len(s) > room {
				e.Truncated = true
				break
			}
			room -= len(s)
			out = append(out, s)
		}
		return out
	}
	e.SANs = keep(e.SANs)
	e.Roles = keep(e.Roles)
}

func sumLen(ss []string) int {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	return n
}

// inventory keeps verified client certificates, least recently seen
// first out, within a count and a byte budget.
type inventory struct {
	maxEntries int
	maxBytes   int

	mu         sync.Mutex
	byFP       map[string]*list.Element // of *CertificateEntry
	lru        *list.List               // front: most recently seen
	bytes      int
	evicted    uint64
	unverified uint64
}

func newInventory(maxEntries, maxBytes int) *inventory {
	inv := &inventory{byFP: make(map[string]*list.Element), lru: list.New()}
	inv.maxEntries, inv.maxBytes = inventoryBounds(maxEntries, maxBytes)
	return inv
}

// inventoryBounds fills in the defaults for zero bounds.
func inventoryBounds(maxEntries, maxBytes int) (int, int) {
	if maxEntries <= 0 {
		maxEntries = DefaultInventorySize
	}
	if maxBytes <= 0 {
		maxBytes = inventoryBytes(maxEntries)
	}
	return maxEntries, maxBytes
}

// resize sets the bounds, evicting the least recently seen certificates
// past them.
func (inv *inventory) resize(maxEntries, maxBytes int) {
	maxEntries, maxBytes = inventoryBounds(maxEntries, maxBytes)
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.maxEntries, inv.maxBytes = maxEntries, maxBytes
	inv.evictPastBounds()
}

func entryCost(e *CertificateEntry) int { return entryOverhead + e.textBytes() }

// seen records one attempt with a verified certificate.
func (inv *inventory) seen(c *CertificateSeen, at time.Time, role string, accepted bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	el := inv.byFP[c.Fingerprint]
	var e *CertificateEntry
	if el != nil {
		e = el.Value.(*CertificateEntry)
		inv.lru.MoveToFront(el)
		inv.bytes -= entryCost(e)
	} else {
		e = &CertificateEntry{CertificateSeen: *c, FirstSeen: at}
		e.SANs = slices.Clone(c.SANs)
		// Copies: the caller's strings may share memory with a whole
		// certificate.
		e.Fingerprint = cutUTF8(c.Fingerprint, 64)
		e.Subject, e.Issuer = string([]byte(c.Subject)), string([]byte(c.Issuer))
		e.fit()
		el = inv.lru.PushFront(e)
		inv.byFP[e.Fingerprint] = el
	}
	e.LastSeen = at
	if accepted {
		e.Accepted++
		if role != "" && !slices.Contains(e.Roles, role) {
			e.Roles = append(e.Roles, string([]byte(role)))
			e.fit()
		}
	} else {
		e.Refused++
	}
	inv.bytes += entryCost(e)
	inv.evictPastBounds()
}

// evictPastBounds drops the least recently seen certificates until the
// inventory is within its bounds; the byte budget never empties it.
func (inv *inventory) evictPastBounds() {
	for inv.lru.Len() > inv.maxEntries || (inv.bytes > inv.maxBytes && inv.lru.Len() > 1) {
		inv.evictOldest()
	}
}

func (inv *inventory) evictOldest() {
	el := inv.lru.Back()
	e := el.Value.(*CertificateEntry)
	inv.lru.Remove(el)
	delete(inv.byFP, e.Fingerprint)
	inv.bytes -= entryCost(e)
	inv.evicted++
}

func (inv *inventory) countUnverified() {
	inv.mu.Lock()
	inv.unverified++
	inv.mu.Unlock()
}

// InventoryStats describes the inventory as a whole.
type InventoryStats struct {
	Entries, MaxEntries int
	Bytes, MaxBytes     int
	Evicted             uint64
	// Unverified counts certificates that failed verification; they are
	// never kept.
	Unverified uint64
}

// list returns copies of the entries, sorted by expiry (soonest first).
func (inv *inventory) list() ([]CertificateEntry, InventoryStats) {
	inv.mu.Lock()
	out := make([]CertificateEntry, 0, inv.lru.Len())
	for el := inv.lru.Front(); el != nil; el = el.Next() {
		e := *el.Value.(*CertificateEntry)
		e.SANs = slices.Clone(e.SANs)
		e.Roles = slices.Clone(e.Roles)
		out = append(out, e)
	}
	st := InventoryStats{Entries: inv.lru.Len(), MaxEntries: inv.maxEntries, Bytes: inv.bytes, MaxBytes: inv.maxBytes, Evicted: inv.evicted, Unverified: inv.unverified}
	inv.mu.Unlock()
	slices.SortStableFunc(out, func(a, b CertificateEntry) int { return a.NotAfter.Compare(b.NotAfter) })
	return out, st
}

// daysBuckets are the upper bounds of the days-to-expiry histogram.
var daysBuckets = []float64{0, 1, 7, 14, 30, 60, 90, 180, 365, 730}

var (
	soonestDesc = prometheus.NewDesc("pgcertgate_client_cert_soonest_not_after_timestamp_seconds",
		"Earliest notAfter among the verified client certificates seen in the last 24 hours (absent when none was).", nil, nil)
	daysDesc = prometheus.NewDesc("pgcertgate_client_cert_days_to_expiry",
		"Days to expiry of each distinct verified client certificate seen in the last 24 hours.", nil, nil)
	invEntriesDesc = prometheus.NewDesc("pgcertgate_client_cert_inventory_entries",
		"Client certificates in the admin inventory.", nil, nil)
	invEvictedDesc = prometheus.NewDesc("pgcertgate_client_cert_inventory_evictions_total",
		"Certificates dropped from the inventory to keep it within its bounds.", nil, nil)
)

// collector exposes the inventory's expiry metrics. It labels nothing by
// certificate, so the series count stays fixed however many certificates
// are seen.
type collector struct {
	inv *inventory
	now func() time.Time
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- soonestDesc
	ch <- daysDesc
	ch <- invEntriesDesc
	ch <- invEvictedDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	inv := c.inv
	counts := make([]uint64, len(daysBuckets))
	var (
		n       uint64
		sum     float64
		soonest time.Time
	)
	inv.mu.Lock()
	for el := inv.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*CertificateEntry)
		if now.Sub(e.LastSeen) > expiryWindow {
			// The list is in last-seen order: the rest are older.
			break
		}
		if soonest.IsZero() || e.NotAfter.Before(soonest) {
			soonest = e.NotAfter
		}
		days := e.NotAfter.Sub(now).Hours() / 24
		n++
		sum += days
		for i, ub := range daysBuckets {
			if days <= ub {
				counts[i]++
			}
		}
	}
	entries, evicted := inv.lru.Len(), inv.evicted
	inv.mu.Unlock()
	buckets := make(map[float64]uint64, len(daysBuckets))
	for i, ub := range daysBuckets {
		buckets[ub] = counts[i]
	}
	ch <- prometheus.MustNewConstHistogram(daysDesc, n, sum, buckets)
	if !soonest.IsZero() {
		ch <- prometheus.MustNewConstMetric(soonestDesc, prometheus.GaugeValue, float64(soonest.UnixNano())/1e9)
	}
	ch <- prometheus.MustNewConstMetric(invEntriesDesc, prometheus.GaugeValue, float64(entries))
	ch <- prometheus.MustNewConstMetric(invEvictedDesc, prometheus.CounterValue, float64(evicted))
}
