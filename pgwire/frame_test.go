package pgwire

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func encode(t *testing.T, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			t.Fatal(err)
		}
	}
	return buf
}

// TestTrackerSplits feeds the same streams cut at every possible point:
// the tracker's verdict must not depend on how reads split messages.
func TestTrackerSplits(t *testing.T) {
	client := encode(t, &pgproto3.Query{String: "select 1"}, &pgproto3.Parse{Query: "select $1"}, &pgproto3.Sync{}, &pgproto3.Terminate{})
	backend := encode(t,
		&pgproto3.RowDescription{}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'},
		&pgproto3.ParameterStatus{Name: "application_name", Value: "x"},
		&pgproto3.ParseComplete{}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	terminateAt := len(client) - 5
	for cut := 0; cut <= len(client); cut++ {
		for bcut := 0; bcut <= len(backend); bcut += 3 {
			tr := newSessionTracker(map[string]string{"application_name": ""})
			fwd := 0
			for _, part := range [][]byte{client[:cut], client[cut:]} {
				n, stop := tr.fromClient(part)
				fwd += n
				if stop {
					break
				}
			}
			if fwd != terminateAt {
				t.Fatalf("cut %d: forwarded %d bytes, want %d (everything before Terminate)", cut, fwd, terminateAt)
			}
			for _, part := range [][]byte{backend[:bcut], backend[bcut:]} {
				if n, stop := tr.fromBackend(part); n != len(part) || stop {
					t.Fatalf("backend stream cut")
				}
			}
			if !tr.reusable() {
				t.Fatalf("cut %d/%d: not reusable: outstanding=%d unsynced=%v status=%c", cut, bcut, tr.outstanding.Load(), tr.unsynced.Load(), tr.status.Load())
			}
			if tr.params["application_name"] != "x" {
				t.Fatalf("ParameterStatus not tracked: %v", tr.params)
			}
		}
	}
}

func TestTrackerNotReusable(t *testing.T) {
	for name, tc := range map[string]struct {
		client, backend []byte
	}{
		"in transaction": {
			encode(t, &pgproto3.Query{String: "begin"}, &pgproto3.Terminate{}),
			encode(t, &pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}, &pgproto3.ReadyForQuery{TxStatus: 'T'}),
		},
		"answer outstanding": {
			encode(t, &pgproto3.Query{String: "select pg_sleep(1)"}, &pgproto3.Terminate{}),
			nil,
		},
		"extended query without Sync": {
			encode(t, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Terminate{}),
			nil,
		},
		"backend mid-message": {
			encode(t, &pgproto3.Terminate{}),
			encode(t, &pgproto3.NotificationResponse{Channel: "c", Payload: "p"})[:7],
		},
		"client dropped without Terminate": {
			encode(t, &pgproto3.Query{String: "select 1"}),
			encode(t, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
		},
		"impossible length": {
			encode(t, &pgproto3.Terminate{}),
			[]byte{'Z', 0, 0, 0, 1},
		},
	} {
		t.Run(name, func(t *testing.T) {
			tr := newSessionTracker(nil)
			tr.fromClient(tc.client)
			tr.fromBackend(tc.backend)
			if tr.reusable() {
				t.Fatal("reusable")
			}
		})
	}
}

// FuzzFrameScanner: any byte stream, cut anywhere, gives the same verdict
// as the same stream in one piece, and never panics.
func FuzzFrameScanner(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dselect 1\x00X\x00\x00\x00\x04"), []byte("Z\x00\x00\x00\x05I"), uint8(3))
	f.Add([]byte("P\x00\x00\x00\x04S\x00\x00\x00\x04"), []byte("S\x00\x00\x00\x0ba\x00b\x00Z\x00\x00\x00\x05T"), uint8(9))
	f.Add([]byte{'X', 0, 0, 0, 4}, []byte{'Z', 0xff, 0xff, 0xff, 0xff}, uint8(1))
	f.Fuzz(func(t *testing.T, client, backend []byte, cut uint8) {
		whole := newSessionTracker(nil)
		wn, wstop := whole.fromClient(client)
		whole.fromBackend(backend)

		split := newSessionTracker(nil)
		c := min(int(cut), len(client))
		n1, stop := split.fromClient(client[:c])
		n := n1
		if !stop {
			n2, stop2 := split.fromClient(client[c:])
			n, stop = n1+n2, stop2
		}
		b := min(int(cut), len(backend))
		split.fromBackend(backend[:b])
		split.fromBackend(backend[b:])

		if n != wn || stop != wstop {
			t.Fatalf("forwarded %d/%v split, %d/%v whole", n, stop, wn, wstop)
		}
		if n > len(client) {
			t.Fatalf("forwarded %d of %d bytes", n, len(client))
		}
		if split.reusable() != whole.reusable() {
			t.Fatal("verdict depends on how reads split the stream")
		}
	})
}
