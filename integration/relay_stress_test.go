package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestRelayStress runs concurrent sessions through the relay with message
// sizes and pipelining chosen to land on every path of both copiers: one
// message per read, several TLS records per read (pipelined batches), a
// record cut across reads, and results larger than the 32 KiB copy buffer.
// Each operation has its own deadline, so a lost wake-up (a copier waiting
// on an empty socket while a complete message sits unread in the proxy)
// fails as a stall naming the session and operation instead of hanging
// the suite.
func TestRelayStress(t *testing.T) {
	w := sessionWorld(t)
	forEachRelayEngine(t, w, func(t *testing.T) { stress(t, w, 12, 60) })
}

// stress runs sessions × ops random operations as alice through the proxy.
func stress(t *testing.T, w *world, sessions, ops int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stressSession(w, s, ops); err != nil {
				errs <- fmt.Errorf("session %d: %w", s, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func stressSession(w *world, id, ops int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	pc, err := w.connect(ctx, proxy, conn{user: "alice", cert: "alice"})
	cancel()
	if err != nil {
		return err
	}
	defer pc.Close(context.Background())
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	for op := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		kind, err := stressOp(ctx, pc, rng)
		stalled := ctx.Err() != nil
		cancel()
		if stalled {
			return fmt.Errorf("operation %d (%s) stalled for 20 s: %v", op, kind, err)
		}
		if err != nil {
			return fmt.Errorf("operation %d (%s): %w", op, kind, err)
		}
	}
	return nil
}

// stressOp runs one random operation and checks its result.
func stressOp(ctx context.Context, pc *pgconn.PgConn, rng *rand.Rand) (string, error) {
	switch rng.IntN(4) {
	case 0:
		// One query, a result from a few bytes to several copy buffers.
		n := []int{0, 1, 100, 8000, 16500, 40000, 200000}[rng.IntN(7)]
		kind := fmt.Sprintf("select of %d bytes", n)
		res, err := pc.Exec(ctx, fmt.Sprintf("select repeat('x', %d)", n)).ReadAll()
		if err != nil {
			return kind, err
		}
		if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0][0]) != n {
			return kind, fmt.Errorf("wrong result")
		}
		return kind, nil
	case 1:
		// A pipelined batch: several messages in one write, so several
		// TLS records can arrive in one read.
		k := 2 + rng.IntN(8)
		kind := fmt.Sprintf("batch of %d", k)
		b := &pgconn.Batch{}
		for i := range k {
			b.ExecParams("select $1::int", [][]byte{[]byte(fmt.Sprint(i))}, nil, nil, nil)
		}
		res, err := pc.ExecBatch(ctx, b).ReadAll()
		if err != nil {
			return kind, err
		}
		for i, r := range res {
			if len(r.Rows) != 1 || string(r.Rows[0][0]) != fmt.Sprint(i) {
				return kind, fmt.Errorf("result %d wrong", i)
			}
		}
		return kind, nil
	case 2:
		// COPY in: the client writes large records back to back.
		rows := 1 + rng.IntN(3000)
		kind := fmt.Sprintf("COPY in of %d rows", rows)
		if _, err := pc.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS s (v text); TRUNCATE s").ReadAll(); err != nil {
			return kind, err
		}
		var sb strings.Builder
		for i := range rows {
			fmt.Fprintf(&sb, "%d-%s\n", i, strings.Repeat("y", rng.IntN(100)))
		}
		tag, err := pc.CopyFrom(ctx, strings.NewReader(sb.String()), "COPY s FROM STDIN")
		if err != nil {
			return kind, err
		}
		if tag.RowsAffected() != int64(rows) {
			return kind, fmt.Errorf("copied %d rows, want %d", tag.RowsAffected(), rows)
		}
		return kind, nil
	default:
		// Several statements in one simple query: several results in
		// one backend write.
		k := 1 + rng.IntN(5)
		kind := fmt.Sprintf("%d statements", k)
		var q []string
		for i := range k {
			q = append(q, fmt.Sprintf("select %d", i))
		}
		res, err := pc.Exec(ctx, strings.Join(q, ";")).ReadAll()
		if err != nil {
			return kind, err
		}
		if len(res) != k {
			return kind, fmt.Errorf("%d results, want %d", len(res), k)
		}
		return kind, nil
	}
}

// TestClientFilesConcurrent: sessions started together ask for the same
// client files, and each must find the key written once it finds the
// certificate (a race here once failed TestRelayStress with "unable to
// read sslkey").
func TestClientFilesConcurrent(t *testing.T) {
	p := newPKI(t)
	for round := range 20 {
		w := &world{t: t, dir: t.TempDir(), pki: p}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, key := w.clientFiles("alice")
				if b, err := os.ReadFile(key); err != nil || len(b) == 0 {
					errs <- fmt.Errorf("round %d: key read right after clientFiles: %d bytes, %v", round, len(b), err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}
