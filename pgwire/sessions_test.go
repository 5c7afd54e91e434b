package pgwire

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestSessionStop drives the relay's stop path: the client must get the
// backend's messages up to a boundary, then one ErrorResponse, then EOF;
// never a message cut in the middle followed by anything else.
func TestSessionStop(t *testing.T) {
	forEachEngine(t, testSessionStop)
}

func testSessionStop(t *testing.T, engine string) {
	row, _ := (&pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte("r"), 100)}}).Encode(nil)
	next, _ := (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(nil)
	stopErr := adminTerminated()
	errBytes, _ := encodeError(stopErr)
	for _, tc := range []struct {
		name string
		// before is what the backend sends before the stop; after, what
		// it sends once the stop is requested.
		before, after []byte
		reuse         bool
		// want is what the client must receive, in full, before EOF.
		want []byte
	}{
		{"idle backend", row, nil, false, append(append([]byte{}, row...), errBytes...)},
		{"idle backend, reuse tracker", row, nil, true, append(append([]byte{}, row...), errBytes...)},
		{"mid-message, completed", row[:40], append(append([]byte{}, row[40:]...), next...), false, append(append([]byte{}, row...), errBytes...)},
		{"mid-message, completed, reuse tracker", row[:3], append(append([]byte{}, row[3:]...), next...), true, append(append([]byte{}, row...), errBytes...)},
		// The backend never finishes its message: after stopGrace the
		// session closes with no ErrorResponse behind the partial one.
		{"mid-message, stalled", row[:40], nil, false, row[:40]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clientPeer, client := tcpPair(t)
			backend, backendPeer := tcpPair(t)
			var tracker *sessionTracker
			if tc.reuse {
				tracker = newSessionTracker(nil)
			}
			ctl := newSessionControl(backend)
			done := make(chan struct{})
			go func() {
				relayOn(engine, client, nil, backend, tracker, ctl, nil)
				close(done)
			}()
			if _, err := backendPeer.Write(tc.before); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(tc.before))
			_ = clientPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(clientPeer, got); err != nil {
				t.Fatal(err)
			}
			if !ctl.stop(stopErr) {
				t.Fatal("stop refused")
			}
			if ctl.stop(stopErr) {
				t.Error("a second stop was accepted")
			}
			if len(tc.after) > 0 {
				if _, err := backendPeer.Write(tc.after); err != nil {
					t.Fatal(err)
				}
			}
			rest, err := io.ReadAll(clientPeer)
			if err != nil {
				t.Fatalf("client read: %v", err)
			}
			if got = append(got, rest...); !bytes.Equal(got, tc.want) {
				t.Errorf("client got\n%q\nwant\n%q", got, tc.want)
			}
			waitDone(t, done, "relay after a stop")
			// Both ends are closed.
			_ = backendPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadAll(backendPeer); err != nil {
				t.Errorf("backend side: %v", err)
			}
			if ctl.finish() != stopErr {
				t.Error("finish does not report the stop")
			}
			if ctl.stop(stopErr) {
				t.Error("a stop after the relay ended was accepted")
			}
		})
	}
}

// TestSessionStopAfterRelay: a stop that comes after the relay has handed
// the backend back must not touch it (it may serve another session).
func TestSessionStopAfterRelay(t *testing.T) {
	peer, backend := tcpPair(t)
	ctl := newSessionControl(backend)
	ctl.finish()
	if ctl.stop(adminTerminated()) {
		t.Fatal("stop accepted after finish")
	}
	// A read deadline in the past would fail this read even with data
	// waiting.
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	if _, err := backend.Read(one[:]); err != nil {
		t.Fatalf("read after a refused stop: %v", err)
	}
}

// BenchmarkBackendScan is the cost of following message boundaries on the
// backend side, per 32 KiB read of 100-byte DataRows: what a relay pays so
// that a session can be stopped between two messages.
func BenchmarkBackendScan(b *testing.B) {
	row, _ := (&pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte("r"), 93)}}).Encode(nil)
	// Whole messages only, so every read starts on a boundary.
	var chunk []byte
	for len(chunk)+len(row) <= relayBufSize {
		chunk = append(chunk, row...)
	}
	sc := newBackendScanner(nil, newSessionControl(nil))
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, stop := sc.scan(chunk); stop || !sc.f.atBoundary() {
			b.Fatal("scanner lost the boundaries")
		}
	}
}

// TestSkipFramesMatchesFeed: the fast path keeps the scanner's state
// exactly as feed does, for any split of the stream, so that feed can
// take over at any read once a stop is requested.
func TestSkipFramesMatchesFeed(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	for range 300 {
		body := make([]byte, rng.IntN(300))
		msg := append([]byte{'D', 0, 0, 0, 0}, body...)
		binary.BigEndian.PutUint32(msg[1:], uint32(4+len(body)))
		stream = append(stream, msg...)
	}
	for trial := range 200 {
		var fast, slow frameScanner
		for i := 0; i < len(stream); {
			n := min(1+rng.IntN(700), len(stream)-i)
			chunk := stream[i : i+n]
			i += n
			skipFrames(&fast, chunk)
			slow.feed(chunk, alwaysForward, noBody, nil)
			if fast.hdrN != slow.hdrN || fast.remaining != slow.remaining || fast.broken != slow.broken || fast.atBoundary() != slow.atBoundary() {
				t.Fatalf("trial %d at %d: skipFrames %+v, feed %+v", trial, i, fast, slow)
			}
		}
		if !fast.atBoundary() {
			t.Fatalf("trial %d: not at a boundary at the end", trial)
		}
	}
	var broken frameScanner
	skipFrames(&broken, []byte{'D', 0, 0, 0, 1})
	if !broken.broken {
		t.Error("a length below 4 must break the scanner")
	}
}
