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

// history is a ring of the last connection attempts.
type history struct {
	mu     sync.Mutex
	events []LoginEvent // ring; next is the slot to write
	next   int
	full   bool
}

func newHistory(size int) *history {
	if size <= 0 {
		size = DefaultHistorySize
	}
	return &history{events: make([]LoginEvent, size)}
}

// add keeps a copy of e with its text capped; the certificate goes to the
// inventory, not here.
func (h *history) add(e LoginEvent) {
	e.Cert = nil
	fitText(maxEventText, &e.Client, &e.User, &e.Database, &e.Identity, &e.Fingerprint,
		&e.HBALine, &e.Verdict, &e.Reason, &e.SQLSTATE, &e.Message)
	h.mu.Lock()
	h.events[h.next] = e
	h.next++
	if h.next == len(h.events) {
		h.next, h.full = 0, true
	}
	h.mu.Unlock()
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
	n := h.next
	if h.full {
		n = len(h.events)
	}
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

// len is how many events are kept, and cap how many can be.
func (h *history) size() (n, capacity int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.full {
		return len(h.events), len(h.events)
	}
	return h.next, len(h.events)
}
