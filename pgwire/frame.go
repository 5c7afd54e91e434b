package pgwire

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"
)

// maxTrackedBody bounds the message bodies the tracker keeps: only
// ParameterStatus and ReadyForQuery are read, and both are tiny. A longer
// message of those types is a protocol violation the backend never sends;
// it makes the session unreusable rather than costing memory.
const maxTrackedBody = 8 << 10

// frameScanner follows protocol-3 message boundaries in a byte stream as
// it is relayed, without copying or holding the stream: every message after
// startup is a type byte and a 4-byte length. It is what lets the relay see
// the client's Terminate and the backend's idle ReadyForQuery, which
// backend reuse needs. Its state survives reads that split a header.
type frameScanner struct {
	hdr       [5]byte
	hdrN      int // header bytes gathered so far
	remaining int // body bytes still to pass of the current message
	typ       byte
	keep      bool   // gathering the current body
	body      []byte // reused buffer for kept bodies
	broken    bool   // a length was impossible: stop trusting the stream
}

// atBoundary reports whether the scanner sits between two messages.
func (f *frameScanner) atBoundary() bool { return !f.broken && f.hdrN == 0 && f.remaining == 0 }

// feed scans p. onHeader is called with each message type as its header
// completes, before any of p is forwarded; if it returns false the stream
// is cut before that message and feed returns the number of bytes that may
// still be forwarded and stop=true. onBody gets the bodies of the types
// keepBody selects.
func (f *frameScanner) feed(p []byte, onHeader func(typ byte) bool, keepBody func(typ byte) bool, onBody func(typ byte, body []byte)) (forward int, stop bool) {
	i := 0
	for i < len(p) && !f.broken {
		if f.remaining == 0 {
			if f.hdrN == 0 && !onHeader(p[i]) {
				return i, true
			}
			n := copy(f.hdr[f.hdrN:], p[i:])
			f.hdrN += n
			i += n
			if f.hdrN < len(f.hdr) {
				break
			}
			f.hdrN = 0
			f.typ = f.hdr[0]
			length := int(int32(binary.BigEndian.Uint32(f.hdr[1:]))) - 4
			if length < 0 {
				f.broken = true
				break
			}
			f.remaining = length
			f.keep = keepBody(f.typ)
			if f.keep && length > maxTrackedBody {
				f.broken = true
				break
			}
			f.body = f.body[:0]
			if length == 0 {
				if f.keep {
					onBody(f.typ, nil)
				}
			}
			continue
		}
		n := min(f.remaining, len(p)-i)
		if f.keep {
			f.body = append(f.body, p[i:i+n]...)
		}
		f.remaining -= n
		i += n
		if f.remaining == 0 && f.keep {
			onBody(f.typ, f.body)
		}
	}
	return len(p), false
}

// sessionTracker follows one session's protocol state from both relay
// directions, to decide whether its backend may be reused when the client
// leaves. The counters are exact without locks: a client message that will
// produce a ReadyForQuery is counted before it is forwarded, so the
// backend's answer can never be seen first.
type sessionTracker struct {
	// outstanding counts client messages (Query, Sync, FunctionCall)
	// whose ReadyForQuery has not come back yet.
	outstanding atomic.Int32
	// unsynced is set by extended-protocol messages and cleared by Sync:
	// a backend left mid-extended-query would swallow the reset query.
	unsynced atomic.Bool
	// status is the transaction status of the last ReadyForQuery.
	status atomic.Uint32
	// terminated is set when the client sent Terminate.
	terminated atomic.Bool

	// params holds the backend's ParameterStatus values; only the
	// backend→client copier writes it, and it is read after that copier
	// has stopped.
	params map[string]string

	client, backend frameScanner
}

func newSessionTracker(params map[string]string) *sessionTracker {
	t := &sessionTracker{params: make(map[string]string, len(params))}
	for k, v := range params {
		t.params[k] = v
	}
	t.status.Store('I')
	return t
}

// fromClient scans client bytes; it cuts the stream at Terminate, which
// the backend must not see if it is to be reused.
func (t *sessionTracker) fromClient(p []byte) (int, bool) {
	return t.client.feed(p, t.clientHeader, noBody, nil)
}

func (t *sessionTracker) clientHeader(typ byte) bool {
	switch typ {
	case 'X':
		t.terminated.Store(true)
		return false
	case 'Q', 'F':
		t.outstanding.Add(1)
	case 'S':
		t.outstanding.Add(1)
		t.unsynced.Store(false)
	case 'P', 'B', 'E', 'D', 'C', 'H':
		t.unsynced.Store(true)
	}
	return true
}

// fromBackend scans backend bytes; it never cuts the stream.
func (t *sessionTracker) fromBackend(p []byte) (int, bool) {
	return t.backend.feed(p, alwaysForward, backendKeeps, t.backendBody)
}

func (t *sessionTracker) backendBody(typ byte, body []byte) {
	switch typ {
	case 'Z':
		if len(body) == 1 {
			t.status.Store(uint32(body[0]))
		}
		t.outstanding.Add(-1)
	case 'S':
		name, rest, ok := bytes.Cut(body, []byte{0})
		value, _, ok2 := bytes.Cut(rest, []byte{0})
		if ok && ok2 {
			t.params[string(name)] = string(value)
		}
	}
}

// reusable reports whether the backend is idle, between messages, outside
// any transaction, and owes nothing to the departed client.
func (t *sessionTracker) reusable() bool {
	return t.terminated.Load() && t.outstanding.Load() == 0 && !t.unsynced.Load() &&
		t.status.Load() == 'I' && t.client.atBoundary() && t.backend.atBoundary()
}

func noBody(byte) bool        { return false }
func alwaysForward(byte) bool { return true }
func backendKeeps(typ byte) bool {
	return typ == 'Z' || typ == 'S'
}
