package pgwire

import "net"

// relayOn is startRelay that waits for the relay's end.
func relayOn(engine string, client net.Conn, pending []byte, backend net.Conn, t *sessionTracker, ctl *sessionControl, setBackend func(net.Conn)) (fromClient, toClient int64, keep bool, kept net.Conn) {
	ended := make(chan relayResult, 1)
	r, detached := startRelay(engine, client, pending, backend, t, ctl, setBackend, func(r relayResult) { ended <- r })
	if detached {
		r = <-ended
	}
	return r.in, r.out, r.keep, r.kept
}
