package admin

import (
	"sync"
	"time"
)

// DefaultHistorySize is how many connection attempts /api/logins keeps.
const DefaultHistorySize = 1000

// maxEventText bounds the text of one kept event (and of one inventory
// entry): user names, database names, certificate names and messages come
// from clients and certificates, so each can be long.
const maxEventText = 1 << 10

// LoginEvent is one connection attempt, as the audit log records it.
type LoginEvent struct {
	Time     time.Time
	Client   string // the client's IP address
	User     string
	Database string
	// Identity is the certificate name pg_hba.conf authenticated or
	// tried; Fingerprint the leaf's SHA-256 in hex. Empty without a
	// certificate.
	Identity    string
	Fingerprint string
	// HBALine is the matched pg_hba.conf line, file:line.
	HBALine string
	// Verdict is "accept" or "reject"; Reason the audit log's reason code.
	Verdict string
	Reason  string
	// SQLSTATE and Message are what the client was sent; empty when it
	// was sent nothing (a failed TLS handshake, a client that left).
	SQLSTATE string
	Message  string
	// Duration is from accept to the verdict.
	Duration time.Duration
	// Cert is the client certificate when it verified, for the
	// inventory; nil without one. CertUnverified marks a certificate
	// that was presented and failed verification: it is counted, never
	// kept.
	Cert           *CertificateSeen
	CertUnverified bool
}

// Accepted reports whether the attempt was let in.
func (e *LoginEvent) Accepted() bool { return e.Verdict == "accept" }

// history is a ring of the last connection attempts. It grows as
// attempts arrive, up to limit, so that a large configured limit costs
// memory only once that many attempts have been made.
type history struct {
	mu     sync.Mutex
	limit  int
	events []LoginEvent // ring of up to limit; once full, next is the oldest
	next   int
}

func newHistory(size int) *history {
	if size <= 0 {
		size = DefaultHistorySize
	}
	return &history{limit: size}
}

// add keeps a copy of e with its text capped; the certificate goes to the
// inventory, not here.
func (h *history) add(e LoginEvent) {
	e.Cert = nil
	fitText(maxEventText, &e.Client, &e.User, &e.Database, &e.Identity, &e.Fingerprint,
		&e.HBALine, &e.Verdict, &e.Reason, &e.SQLSTATE, &e.Message)
	h.mu.Lock()
	if len(h.events) < h.limit {
		if len(h.events) == cap(h.events) {
			// Grow as append would, but never past the limit.
			grown := make([]LoginEvent, len(h.events), min(h.limit, max(16, 2*cap(h.events))))
			copy(grown, h.events)
			h.events = grown
		}
		h.events = append(h.events, e)
	} else {
		h.events[h.next] = e
		h.next = (h.next + 1) % len(h.events)
	}
	h.mu.Unlock()
}

// resize sets the limit, keeping the newest attempts that fit.
func (h *history) resize(size int) {
	if size <= 0 {
		size = DefaultHistorySize
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if size == h.limit {
		return
	}
	n := min(size, len(h.events))
	kept := make([]LoginEvent, n)
	// Oldest first: the newest is just before next.
	for i := range n {
		kept[n-1-i] = h.events[(h.next-1-i+len(h.events))%len(h.events)]
	}
	h.limit, h.events, h.next = size, kept, 0
}

// LoginFilter selects events; an empty field matches anything.
type LoginFilter struct {
	Verdict, User, Reason string
	// Limit caps the events returned; zero means all that match.
	Limit int
}

func (f *LoginFilter) match(e *LoginEvent) bool {
	return (f.Verdict == "" || e.Verdict == f.Verdict) &&
		(f.User == "" || e.User == f.User) &&
		(f.Reason == "" || e.Reason == f.Reason)
}

// list returns the matching events, newest first.
func (h *history) list(f LoginFilter) []LoginEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.events)
	var out []LoginEvent
	for i := 0; i < n; i++ {
		j := (h.next - 1 - i + len(h.events)) % len(h.events)
		if e := &h.events[j]; f.match(e) {
			out = append(out, *e)
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
		}
	}
	return out
}

// size returns how many events are kept, and how many can be.
func (h *history) size() (n, capacity int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events), h.limit
}
