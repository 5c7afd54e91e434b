//go:build !linux

package pgwire

import (
	"errors"
	"net"
	"sync/atomic"
)

// evJoined and evRingJoined count the sessions that joined an event
// loop: none here.
var evJoined, evRingJoined atomic.Int64

// ringLoopsUnavailable: there is no io_uring here.
func ringLoopsUnavailable() error { return errors.ErrUnsupported }

// setEventLoops has no loops to size here.
func setEventLoops(int) {}

// relayEvents exists on Linux only (epoll); configuration refuses
// relay_engine = "eventloop" elsewhere, and this answers that the session
// must be relayed by goroutines should one get here anyway.
func relayEvents(onRing bool, client net.Conn, pending []byte, backend net.Conn, t *sessionTracker, ctl *sessionControl, setBackend func(net.Conn), done func(relayResult)) (ok bool) {
	return false
}
