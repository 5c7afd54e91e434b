//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// memResult is one memory measurement.
type memResult struct {
	Name      string
	Target    string
	Clients   int   // clients opened
	Held      int   // clients confirmed still connected when RSS was read
	RSSBefore int64 // settled VmRSS before the clients connected
	RSSWith   int64 // settled VmRSS with them held
	PerClient float64
	// The Go runtime's view, from pgcertgate's admin endpoint (/metrics),
	// read with the RSS; zero for PgBouncer.
	Before, With goMem
	// ClientStalls counts sessions opened again because pgconn stalled
	// (see openIdle).
	ClientStalls int64 `json:",omitempty"`
	// HeapTop is `go tool pprof -top` of the live heap with the clients
	// held (pgcertgate with [admin] pprof); empty otherwise.
	HeapTop string `json:",omitempty"`
}

// goMem is the Go runtime's memory as the admin endpoint's Go collector
// reports it.
type goMem struct {
	HeapInuse, StackInuse, Goroutines float64
	OK                                bool
}

// scrapeGoMem reads /metrics from pgcertgate's admin endpoint; port 0 or
// any failure gives a zero goMem.
func scrapeGoMem(ctx context.Context, port int) goMem {
	var g goMem
	if port == 0 {
		return g
	}
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	if err != nil {
		return g
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return g
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return g
	}
	return parseGoMem(string(body))
}

// parseGoMem picks the Go collector's heap, stack and goroutine gauges out
// of a Prometheus text exposition.
func parseGoMem(text string) goMem {
	var g goMem
	found := 0
	for _, line := range strings.Split(text, "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			g.HeapInuse, found = v, found+1
		case "go_memstats_stack_inuse_bytes":
			g.StackInuse, found = v, found+1
		case "go_goroutines":
			g.Goroutines, found = v, found+1
		}
	}
	g.OK = found == 3
	return g
}

// heapProfileRate is runtime.MemProfileRate for the memory runs.
const heapProfileRate = 64 << 10

// memAdmin is what the memory runs' pgcertgate serves on its admin
// endpoint, as far as the binary accepts it: the Go metrics (admin) that
// split RSS into heap and stacks, and the live heap by allocation site
// (/debug/pprof/heap: adminExtra and env). pprof needs the endpoint, so
// it is only asked about when the endpoint is accepted.
func (e *env) memAdmin(ctx context.Context) (admin bool, adminExtra string, env []string) {
	if admin, _ = e.acceptsConfig(ctx, gateOpts{name: "admin-check", admin: true}); !admin {
		return false, "", nil
	}
	if ok, _ := e.acceptsConfig(ctx, gateOpts{name: "pprof-check", admin: true, adminExtra: "pprof = true"}); ok {
		adminExtra = "pprof = true"
		// One heap sample per 64 KiB rather than Go's 512 KiB: enough
		// samples to split tens of MiB by allocation site, too few to
		// change the RSS being measured.
		env = []string{fmt.Sprintf("PGCERTGATE_MEMPROFILERATE=%d", heapProfileRate)}
	}
	return admin, adminExtra, env
}

// runMemory measures pgcertgate's RSS with idle authenticated sessions and
// with TLS clients parked in startup, each in a fresh process so that heap
// left over from the timed runs does not hide the cost, and PgBouncer's
// with the same idle sessions for reference.
func runMemory(ctx context.Context, e *env, rep *report) error {
	// PgBouncer's pool and pgcertgate+reuse keep backends of the timed
	// runs; the measurements below wait to be back to this many.
	baseline, err := e.benchBackends(ctx)
	if err != nil {
		return err
	}
	admin, adminExtra, env := e.memAdmin(ctx)
	// Each relay engine measured gets the same two runs: the idle
	// sessions' cost is the relay's, and parked clients check that the
	// engine leaves the handshake path alone.
	type memGate struct {
		target, file, topExtra string
	}
	var gates []memGate
	if e.want(targetGate) {
		gates = append(gates, memGate{targetGate, "pgcertgate", ""})
	}
	for _, lt := range loopEngines {
		if e.hasTarget(lt.plain) {
			gates = append(gates, memGate{lt.plain, fileName(lt.plain), lt.line(&e.o)})
		}
	}
	for _, mg := range gates {
		// Idle authenticated sessions through a fresh pgcertgate.
		g, err := e.startGate(ctx, gateOpts{name: mg.file + "-mem-idle", topExtra: mg.topExtra, admin: admin, adminExtra: adminExtra, env: env})
		if err != nil {
			return err
		}
		p := g.proc
		m, err := e.measureIdle(ctx, "idle authenticated sessions", mg.target, p, g.port, e.o.idle, g.adminPort)
		if err != nil {
			return err
		}
		rep.memory = append(rep.memory, m)
		if err := p.stop(); err != nil {
			logf("%s stopped: %v", p.name, err)
		}
		if err := e.waitBackends(ctx, baseline); err != nil {
			return err
		}

		// TLS clients parked in startup through another fresh pgcertgate.
		g, err = e.startGate(ctx, gateOpts{name: mg.file + "-mem-parked", topExtra: mg.topExtra, admin: admin, adminExtra: adminExtra, env: env})
		if err != nil {
			return err
		}
		p = g.proc
		m, err = e.measureParked(ctx, mg.target, p, g.port, e.o.parked, g.adminPort)
		if err != nil {
			return err
		}
		rep.memory = append(rep.memory, m)
		if err := p.stop(); err != nil {
			logf("%s stopped: %v", p.name, err)
		}
	}

	// PgBouncer with the same idle sessions, for reference. Last: its
	// pool keeps the server connections open afterwards.
	for _, tg := range e.targets {
		if tg.Name == targetBouncer {
			m, err := e.measureIdle(ctx, "idle authenticated sessions", targetBouncer, tg.proc, tg.Port, e.o.idle, 0)
			if err != nil {
				return err
			}
			rep.memory = append(rep.memory, m)
		}
	}
	return nil
}

// connConfig is a pgconn configuration for the bench client through port:
// verify-ca with the client certificate, as pgbench uses.
func (e *env) connConfig(port int) (*pgconn.Config, error) {
	return pgconn.ParseConfig(fmt.Sprintf(
		"host=127.0.0.1 port=%d user=%s dbname=%s sslmode=verify-ca sslrootcert=%s sslcert=%s sslkey=%s connect_timeout=30",
		port, benchUser, benchDB, e.rootCrt, e.clientCrt, e.clientKey))
}

// openAll opens n connections with the given number of workers. On an
// error it stops opening and returns what it opened with the first
// error; the caller closes the non-nil ones either way.
func openAll[C any](ctx context.Context, n, workers int, what string, open func() (C, error)) ([]C, error) {
	conns := make([]C, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := open()
				if err != nil {
					errs <- fmt.Errorf("%s %d: %w", what, i, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return conns, err
	default:
		return conns, nil
	}
}

// openIdle connects and runs `select 1`, with a deadline. About once in
// ten runs of 1,000 sessions, a pgconn client here waited forever for the
// reply to its `select 1` although the proxy had sent it: in the captured
// state the proxy's socket for every session had sent the reply's bytes
// (ss: bytes_sent alike on all 1,000), every receive queue was empty, and
// the stalled goroutine sat in pgconn's background-reader path (pgconn
// starts a background reader when a write takes over 15 ms, as on this
// loaded machine). A stalled session is closed and opened again, and the
// report counts them.
func openIdle(ctx context.Context, cfg *pgconn.Config, stalls *atomic.Int64) (*pgconn.PgConn, error) {
	for attempt := 1; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := pgconn.ConnectConfig(octx, cfg)
		if err == nil {
			if _, err = c.Exec(octx, "select 1").ReadAll(); err != nil {
				c.Close(context.Background())
			}
		}
		stalled := octx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return c, nil
		}
		if !stalled || attempt == 3 {
			return nil, err
		}
		stalls.Add(1)
	}
}

// measureIdle opens n sessions through port, runs one query on each (so
// every buffer a used session keeps is in place), and holds them while the
// process's RSS settles.
func (e *env) measureIdle(ctx context.Context, name, targetName string, p *proc, port, n, adminPort int) (memResult, error) {
	m := memResult{Name: name, Target: targetName, Clients: n}
	cfg, err := e.connConfig(port)
	if err != nil {
		return m, err
	}
	// One session first, so that the baseline includes everything a
	// process allocates once (TLS state, pools, the first backend).
	warm, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return m, err
	}
	if _, err := warm.Exec(ctx, "select 1").ReadAll(); err != nil {
		return m, err
	}
	warm.Close(ctx)
	if m.RSSBefore, err = settledRSS(p.pid(), 20*time.Second); err != nil {
		return m, err
	}
	m.Before = scrapeGoMem(ctx, adminPort)
	logf("%s: %d sessions through %s (RSS before %.1f MiB)…", targetName, n, p.name, mib(m.RSSBefore))
	var stalls atomic.Int64
	conns, err := openAll(ctx, n, 8, "session", func() (*pgconn.PgConn, error) { return openIdle(ctx, cfg, &stalls) })
	m.ClientStalls = stalls.Load()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	if err != nil {
		return m, err
	}
	if m.RSSWith, err = settledRSS(p.pid(), 30*time.Second); err != nil {
		return m, err
	}
	m.With = scrapeGoMem(ctx, adminPort)
	m.HeapTop = e.heapTop(ctx, p.name, adminPort)
	// Every session must still answer.
	for i, c := range conns {
		if _, err := c.Exec(ctx, "select 1").ReadAll(); err != nil {
			return m, fmt.Errorf("session %d after the measurement: %w", i, err)
		}
		m.Held++
	}
	m.PerClient = float64(m.RSSWith-m.RSSBefore) / float64(n)
	logf("%s: %d idle sessions: RSS %.1f → %.1f MiB, %.1f KiB per session", targetName, m.Held, mib(m.RSSBefore), mib(m.RSSWith), m.PerClient/1024)
	return m, nil
}

// benchBackends counts the bench role's client backends.
func (e *env) benchBackends(ctx context.Context) (int, error) {
	res, err := e.superExec(ctx, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE usename = '%s' AND backend_type = 'client backend'", benchUser))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(res[0].Rows[0][0]))
}

// waitBackends waits until at most n backends of the bench role are left,
// so the next measurement starts from the same PostgreSQL.
func (e *env) waitBackends(ctx context.Context, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := e.benchBackends(ctx)
		if err != nil {
			return err
		}
		if got <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d backends of %s still connected after 60 s (want at most %d)", got, benchUser, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sslRequest is the SSLRequest packet: length 8, code 80877103.
var sslRequest = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)

// measureParked opens n TCP connections that send an SSLRequest, complete
// the TLS handshake with the client certificate, and then send nothing:
// clients parked in startup. It checks every one is still open when RSS is
// read, and that a real login still gets through meanwhile.
func (e *env) measureParked(ctx context.Context, targetName string, p *proc, port, n, adminPort int) (memResult, error) {
	m := memResult{Name: "TLS clients parked in startup", Target: targetName, Clients: n}
	tlsCfg, err := e.clientTLS()
	if err != nil {
		return m, err
	}
	warm := &target{Name: targetName, Port: port}
	if _, err := e.psql(ctx, warm, "-Atc", "select 1"); err != nil {
		return m, err
	}
	if m.RSSBefore, err = settledRSS(p.pid(), 20*time.Second); err != nil {
		return m, err
	}
	m.Before = scrapeGoMem(ctx, adminPort)
	logf("%s: parking %d TLS clients in startup (RSS before %.1f MiB)…", targetName, n, mib(m.RSSBefore))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	began := time.Now()
	conns, err := openAll(ctx, n, 16, "parked client", func() (net.Conn, error) { return parkTLS(addr, tlsCfg) })
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err != nil {
		return m, err
	}
	logf("%s: %d TLS handshakes in %s", targetName, n, time.Since(began).Round(time.Millisecond))
	if m.RSSWith, err = settledRSS(p.pid(), 30*time.Second); err != nil {
		return m, err
	}
	m.With = scrapeGoMem(ctx, adminPort)
	m.HeapTop = e.heapTop(ctx, p.name, adminPort)
	// A real login while they are parked.
	if _, err := e.psql(ctx, warm, "-Atc", "select 1"); err != nil {
		return m, fmt.Errorf("login while %d clients are parked: %w", n, err)
	}
	held, err := countOpen(conns)
	if err != nil {
		return m, err
	}
	m.Held = held
	m.PerClient = float64(m.RSSWith-m.RSSBefore) / float64(n)
	logf("%s: %d of %d parked TLS clients held: RSS %.1f → %.1f MiB, %.1f KiB per client", targetName, held, n, mib(m.RSSBefore), mib(m.RSSWith), m.PerClient/1024)
	return m, nil
}

// clientTLS is the bench client's TLS configuration (verify-ca: the chain,
// not the host name, as libpq's verify-ca).
func (e *env) clientTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(e.clientCrt, e.clientKey)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(e.rootCrt)
	if err != nil {
		return nil, err
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA certificate in " + e.rootCrt)
	}
	return &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}, nil
}

// parkTLS connects, negotiates TLS the PostgreSQL way and returns the
// open connection without sending a startup packet.
func parkTLS(addr string, cfg *tls.Config) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := raw.Write(sslRequest); err != nil {
		raw.Close()
		return nil, err
	}
	var b [1]byte
	if _, err := io.ReadFull(raw, b[:]); err != nil || b[0] != 'S' {
		raw.Close()
		return nil, fmt.Errorf("SSLRequest answered %q, %v", b[0], err)
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return tc, nil
}

// countOpen counts connections the server has not closed: a read that
// times out means open; EOF or an error (an alert) means closed.
func countOpen(conns []net.Conn) (int, error) {
	var open atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr string
	ch := make(chan net.Conn)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b [1]byte
			for c := range ch {
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				_, err := c.Read(b[:])
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					open.Add(1)
					continue
				}
				mu.Lock()
				if firstErr == "" {
					firstErr = fmt.Sprint(err)
				}
				mu.Unlock()
			}
		}()
	}
	for _, c := range conns {
		ch <- c
	}
	close(ch)
	wg.Wait()
	if firstErr != "" && !strings.Contains(firstErr, "EOF") {
		logf("a parked client was closed: %s", firstErr)
	}
	return int(open.Load()), nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
