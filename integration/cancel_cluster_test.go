package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcertgate/pgcertgate/admin"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// clusterReplica is one in-process pgcertgate replica with its admin
// endpoint.
type clusterReplica struct {
	srv      *pgwire.Server
	addr     string
	adminURL string
	log      *syncBuffer
}

// startReplicas runs n replicas of w's configuration, each with
// [cluster] replica_id = its index and the others as peers.
func startReplicas(t *testing.T, w *world, n int) []*clusterReplica {
	t.Helper()
	return startReplicasWith(t, w, n, nil)
}

// startReplicasWith is startReplicas with more [cluster] settings for
// replica i from cluster(i), when cluster is not nil.
func startReplicasWith(t *testing.T, w *world, n int, cluster func(i int) string) []*clusterReplica {
	t.Helper()
	base, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	lns := make([]net.Listener, n)
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	reps := make([]*clusterReplica, n)
	for i := range reps {
		var peers []string
		for j, ln := range lns {
			if j != i {
				peers = append(peers, fmt.Sprintf("%q", ln.Addr().String()))
			}
		}
		path := filepath.Join(w.dir, fmt.Sprintf("replica%d.toml", i))
		// The forward timeout bounds how long a forwarder holds the
		// requester's connection, not how soon the cancel acts; it is
		// generous here because this machine's cores are shared.
		cfg := fmt.Sprintf("%s\n[cluster]\nreplica_id = %d\npeers = [%s]\ncancel_forward_timeout = \"5s\"\n", base, i, strings.Join(peers, ", "))
		if cluster != nil {
			cfg += cluster(i) + "\n"
		}
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		rt, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		r := &clusterReplica{addr: lns[i].Addr().String(), log: &syncBuffer{}}
		r.srv = pgwire.New(pgwire.Options{Runtime: rt, Logger: slog.New(slog.NewJSONHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		served := make(chan error, 1)
		go func(ln net.Listener) { served <- r.srv.Serve(ln) }(lns[i])
		reg := prometheus.NewRegistry()
		reg.MustRegister(r.srv.Metrics())
		adm := admin.New(admin.Options{Address: "127.0.0.1:0", Gatherer: reg, Target: r.srv})
		if err := adm.Start(); err != nil {
			t.Fatal(err)
		}
		r.adminURL = "http://" + adm.Addr().String()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			adm.Shutdown(ctx)
			r.srv.Close()
			<-served
			if t.Failed() {
				t.Logf("replica %d log:\n%s", i, r.log.String())
			}
		})
		reps[i] = r
	}
	return reps
}

// cancelCounts sums pgcertgate_cancel_requests_total over the replicas.
func cancelCounts(t *testing.T, reps []*clusterReplica) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, r := range reps {
		fams := opsScrape(t, r.adminURL)
		for _, res := range []string{"received", "delivered", "forwarded", "unknown", "failed", "refused"} {
			v, _ := opsValue(fams, "pgcertgate_cancel_requests_total", map[string]string{"result": res})
			out[res] += v
		}
	}
	return out
}

// TestHAProxyCancelAcrossReplicas: HAProxy in round robin with
// send-proxy-v2 in front of three replicas and one PostgreSQL. Sixty
// sessions sleep; each is cancelled through the balancer, which sends
// about two thirds of the cancels to a replica that does not hold the
// session. All must be cancelled within 2 s, for protocol 3.0 keys (4
// bytes) and 3.2 keys (32 bytes).
func TestHAProxyCancelAcrossReplicas(t *testing.T) {
	haproxyBinary(t)
	const sessions = 60
	w := newWorld(t, newPKI(t), worldOptions{
		hba:       "local all all trust\nhostssl all alice 127.0.0.0/8 cert\n",
		extraTOML: "proxy_protocol = \"on\"\nproxy_protocol_trusted = [\"127.0.0.1/32\"]\nmax_connections = 100",
		conf:      map[string]string{"max_connections": "150"},
	})
	w.setup(t, "CREATE ROLE alice LOGIN")
	reps := startReplicas(t, w, 3)
	var backends []haproxyBackend
	for _, r := range reps {
		backends = append(backends, haproxyBackend{addr: r.addr, adminPort: adminPort(t, r.adminURL)})
	}
	bind := fmt.Sprintf("127.0.0.1:%d", opsFreePort(t))
	h := startHAProxy(t, renderHAProxyCfg(t, bind, backends))
	waitBalancerUp(t, h, w, bind, conn{user: "alice", cert: "alice"})

	for _, tc := range []struct {
		name   string
		extra  string
		keyLen int
	}{
		{name: "protocol 3.0", extra: "", keyLen: 4},
		{name: "protocol 3.2", extra: "max_protocol_version=3.2", keyLen: 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The same round straight against PostgreSQL, at the same
			// moment on the same machine: what 60 cancels cost without
			// pgcertgate or HAProxy.
			direct := cancelRound(ctx, t, w, func(ctx context.Context) (*pgconn.PgConn, error) {
				return pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable %s", w.cluster.SocketDir(), w.cluster.Port(), tc.extra))
			}, sessions, 0, nil)
			c := conn{user: "alice", cert: "alice", extra: tc.extra}
			var before map[string]float64
			slowest := cancelRound(ctx, t, w, func(ctx context.Context) (*pgconn.PgConn, error) {
				return viaBalancer(ctx, t, w, bind, "127.0.0.3", c)
			}, sessions, tc.keyLen, func() { before = cancelCounts(t, reps) })
			after := cancelCounts(t, reps)
			delta := map[string]float64{}
			for k, v := range after {
				delta[k] = v - before[k]
			}
			// A cancel landing on a replica that does not hold its
			// session is received there, then received again by the two
			// peers it is forwarded to.
			misrouted := delta["forwarded"] / 2
			t.Logf("%d sessions cancelled through HAProxy; slowest %v (straight to PostgreSQL: %v); %v of %d cancels landed on another replica; counters %v",
				sessions, slowest.Round(time.Millisecond), direct.Round(time.Millisecond), misrouted, sessions, delta)
			// 2 s is the goal. What PostgreSQL needs for 60 cancels
			// (a process forked for each) is out of pgcertgate's
			// hands: when the shared cores make that alone longer,
			// pgcertgate may add at most 1 s to it (measured: about
			// 0.1 s). Built with -race (make test), each hop, TLS
			// handshake and all, costs several times its CPU, and
			// the bound is three times PostgreSQL's.
			limit := max(2*time.Second, direct+time.Second)
			if fleetRace {
				limit = max(2*time.Second, 3*direct)
			}
			if slowest > limit {
				t.Errorf("slowest cancel took %v, want at most %v", slowest, limit)
			}
			if delta["delivered"] != sessions || delta["failed"] != 0 {
				t.Errorf("delivered %v, failed %v; want %d and 0", delta["delivered"], delta["failed"], sessions)
			}
			if misrouted < sessions/3 {
				t.Errorf("only %v of %d cancels were misrouted: is HAProxy balancing?", misrouted, sessions)
			}
		})
	}
}

// cancelRound opens n sessions with connect, runs pg_sleep(30) on each,
// waits until PostgreSQL shows them all running, calls ready, cancels all
// at once and returns how long the slowest took to end with 57014.
// keyLen, when not 0, is the cancel key length every session must have.
func cancelRound(ctx context.Context, t *testing.T, w *world, connect func(context.Context) (*pgconn.PgConn, error), n, keyLen int, ready func()) time.Duration {
	t.Helper()
	pcs := make([]*pgconn.PgConn, n)
	results := make([]*pgconn.MultiResultReader, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range pcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc, err := connect(ctx)
			if err != nil {
				errs <- err
				return
			}
			pcs[i] = pc
			results[i] = pc.Exec(ctx, "SELECT pg_sleep(30)")
		}()
	}
	wg.Wait()
	close(errs)
	defer func() {
		for _, pc := range pcs {
			if pc != nil {
				pc.Close(context.Background())
			}
		}
	}()
	for err := range errs {
		t.Fatal(err)
	}
	for _, pc := range pcs {
		if got := len(pc.SecretKey()); keyLen != 0 && got != keyLen {
			t.Fatalf("cancel key of %d bytes, want %d", got, keyLen)
		}
	}
	// Every query must be running before the cancels go out.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := w.superuserRows(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
		if err == nil && string(rows[0][0]) == fmt.Sprint(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleeping sessions never reached %d: %v %v", n, rows, err)
		}
		<-tick.C
	}
	if ready != nil {
		ready()
	}
	began := time.Now()
	took := make([]time.Duration, n)
	failures := make(chan error, n)
	for i, pc := range pcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pc.CancelRequest(ctx); err != nil {
				failures <- fmt.Errorf("session %d: CancelRequest: %w", i, err)
				return
			}
			_, err := results[i].ReadAll()
			took[i] = time.Since(began)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
				failures <- fmt.Errorf("session %d ended with %v, want 57014 query_canceled", i, err)
			}
		}()
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	sorted := slices.Sorted(slices.Values(took))
	t.Logf("cancel round of %d: median %v, 90th percentile %v, slowest %v", n,
		sorted[n/2].Round(time.Millisecond), sorted[n*9/10].Round(time.Millisecond), sorted[n-1].Round(time.Millisecond))
	return sorted[n-1]
}

// TestCancelForwardingBounds: a cancel for a session no replica holds
// goes once to each peer and no further; a peer that never answers costs
// one cancel_forward_timeout, a dead one an immediate failure; a forwarded
// cancel is never forwarded again; a key naming this replica is not
// forwarded at all.
func TestCancelForwardingBounds(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{
		hba:       "local all all trust\n",
		extraTOML: "proxy_protocol = \"on\"\nproxy_protocol_trusted = [\"127.0.0.1/32\"]",
	})
	// A peer that accepts and never answers, and one that is gone.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan []byte, 16)
	var peerConns sync.WaitGroup
	defer func() {
		silent.Close()
		for range accepted {
		}
		peerConns.Wait()
	}()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				close(accepted)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 512)
			n, _ := c.Read(buf)
			accepted <- buf[:n]
			// Never answered, never closed until the forwarder gives up.
			peerConns.Add(1)
			go func() {
				defer peerConns.Done()
				var one [1]byte
				_, _ = c.Read(one[:])
				c.Close()
			}()
		}
	}()
	gone := opsFreePort(t)
	base, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, "bounds.toml")
	cfgText := fmt.Sprintf("%s\n[cluster]\nreplica_id = 0\npeers = [%q, \"127.0.0.1:%d\"]\ncancel_forward_timeout = \"500ms\"\n", base, silent.Addr().String(), gone)
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rlog := &syncBuffer{}
	srv := pgwire.New(pgwire.Options{Runtime: rt, Logger: slog.New(slog.NewJSONHandler(rlog, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Metrics())
	counts := func() map[string]float64 {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			if f.GetName() != "pgcertgate_cancel_requests_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
		return out
	}
	cancelPacket := func(replica byte) []byte {
		// pid 4242, a 4-byte key whose top five bits name replica.
		return []byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0x10, 0x92, replica << 3, 1, 2, 3}
	}
	send := func(src string, data []byte) time.Duration {
		began := time.Now()
		if got := rawExchange(t, ln.Addr().String(), src, data); len(got) != 0 {
			t.Fatalf("answered %q", got)
		}
		return time.Since(began)
	}

	// From an untrusted source without a header: served as a plain
	// cancel. Replica 5 does not exist; the peers get it once each.
	took := send("127.0.0.2", cancelPacket(5))
	select {
	case got := <-accepted:
		if !strings.HasPrefix(string(got), "\r\n\r\n\x00\r\nQUIT\n") || !strings.Contains(string(got), "pgcertgate forwarded cancel") {
			t.Fatalf("the silent peer got %q, want a PROXY v2 header marked forwarded", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the silent peer never got the cancel")
	}
	if took > 3*time.Second {
		t.Fatalf("a silent and a dead peer held the requester %v; the timeout is 500ms", took)
	}
	c := counts()
	if c["received"] != 1 || c["failed"] != 2 || c["forwarded"] != 0 {
		t.Fatalf("counters %v: want received 1, failed 2 (one timeout, one refused), forwarded 0", c)
	}

	// A key naming this replica: no session here, so nowhere else either.
	send("127.0.0.2", cancelPacket(0))
	// A forwarded cancel (the mark, from a trusted peer): never forwarded again.
	hdr := proxyV2Header(0x21, "10.1.2.3:5555", append([]byte{0xE7, 0, byte(len("pgcertgate forwarded cancel"))}, "pgcertgate forwarded cancel"...))
	send("", append(hdr, cancelPacket(5)...))
	c = counts()
	if c["received"] != 3 || c["unknown"] != 2 || c["failed"] != 2 {
		t.Fatalf("counters %v: want received 3, unknown 2, failed still 2", c)
	}
	select {
	case got := <-accepted:
		t.Fatalf("the silent peer got a second cancel: %q", got)
	default:
	}
}
