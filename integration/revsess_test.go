package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// The client's last message when revoked_sessions = "terminate" ends its
// session.
const (
	revsessRevoked = "FATAL 57P01 terminating connection because the client certificate was revoked"
	revsessExpired = "FATAL 57P01 terminating connection because the client certificate has expired"
)

// revsessWorld is a proxy with revoked_sessions set to mode ("" for the
// default) and ssl_crl_file, and clients "victim" and "alice" (both log
// in as alice).
func revsessWorld(t *testing.T, mode, extra string) *world {
	t.Helper()
	p := newPKI(t)
	victim, err := p.root.NewClient(pkix.Name{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	p.clients["victim"] = victim
	toml := extra
	if mode != "" {
		toml += "\nrevoked_sessions = \"" + mode + "\"\n"
	}
	w := newWorld(t, p, worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n", extraTOML: toml})
	identSetup(t, w, []string{"alice"}, nil)
	return w
}

// revokeByReload rewrites ssl_crl_file so that the root's CRL also
// revokes certs, and reloads as SIGHUP does. It returns when the reload
// was swapped in.
func (w *world) revokeByReload(t *testing.T, certs ...*x509.Certificate) time.Time {
	t.Helper()
	now := time.Now()
	rootCRL, err := w.pki.root.CRL(append(append([]*x509.Certificate{}, w.pki.revoked...), certs...), now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	interCRL, err := w.pki.inter.CRL(nil, now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "root.crl"), append(rootCRL, interCRL...), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	w.proxy.Reload(rt)
	return at
}

// revsessConnect opens a session as alice with cert; the test's end
// closes it.
func (w *world) revsessConnect(ctx context.Context, t *testing.T, cert string) *pgconn.PgConn {
	t.Helper()
	pc, err := w.connect(ctx, proxy, conn{user: "alice", cert: cert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(context.Background()) })
	return pc
}

// runningQuery is a statement a session is running, and what came of it.
type runningQuery struct {
	done chan struct{}
	err  error
	at   time.Time // when the result (or error) arrived
}

// query runs sql on pc in the background. The test's end cancels it and
// waits for it, before the connection is closed (revsessConnect).
func query(ctx context.Context, t *testing.T, pc *pgconn.PgConn, sql string) *runningQuery {
	q := &runningQuery{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() {
		cancel()
		<-q.done
	})
	go func() {
		defer close(q.done)
		_, q.err = pc.Exec(ctx, sql).ReadAll()
		q.at = time.Now()
	}()
	return q
}

// wait waits up to d for the query to end.
func (q *runningQuery) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-q.done:
	case <-time.After(d):
		t.Fatalf("query still running after %s", d)
	}
}

func pgError(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Severity + " " + pe.Code + " " + pe.Message
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// checkAlive runs a statement on each session: they must still work.
func checkAlive(ctx context.Context, t *testing.T, pcs ...*pgconn.PgConn) {
	t.Helper()
	for _, pc := range pcs {
		res, err := pc.Exec(ctx, "select current_user").ReadAll()
		if err != nil || len(res) != 1 || string(res[0].Rows[0][0]) != "alice" {
			t.Fatalf("a session that should have been left alone: %v", err)
		}
	}
}

// backendGone waits until PostgreSQL no longer lists pid: the stop
// cancelled the query and closed the backend connection.
func (w *world) backendGone(ctx context.Context, t *testing.T, pid uint32) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := w.superuserRows(ctx, "select count(*) from pg_stat_activity where pid = "+big.NewInt(int64(pid)).String())
		if err != nil {
			t.Fatal(err)
		}
		if string(rows[0][0]) == "0" {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("backend %d still running", pid)
		}
	}
}

// TestRevokedSessionsCRLReload: with revoked_sessions = "terminate", a
// reload whose ssl_crl_file revokes a certificate ends that certificate's
// sessions (idle or running a query) within 2 s: the client gets FATAL
// 57P01 (pg_terminate_backend's SQLSTATE) with pgcertgate's own message,
// worded in PostgreSQL's style, and the backend's query is cancelled.
// Other certificates' sessions run on.
func TestRevokedSessionsCRLReload(t *testing.T) {
	w := revsessWorld(t, "terminate", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	busy := w.revsessConnect(ctx, t, "victim")
	idle := w.revsessConnect(ctx, t, "victim")
	other := w.revsessConnect(ctx, t, "alice")
	otherBusy := query(ctx, t, other, "select pg_sleep(1.5)")
	q := query(ctx, t, busy, "select pg_sleep(60)")
	// The sleep has begun before the reload.
	w.waitBackendState(ctx, t, busy.PID(), "active")
	reloaded := w.revokeByReload(t, w.pki.clients["victim"].Cert)
	q.wait(t, 10*time.Second)
	took := q.at.Sub(reloaded)
	t.Logf("reload to FATAL on the client: %s", took)
	if got := pgError(q.err); got != revsessRevoked {
		t.Fatalf("running query: got %q, want %q", got, revsessRevoked)
	}
	if took > 2*time.Second {
		t.Fatalf("the session ended %s after the reload, more than 2s", took)
	}
	w.backendGone(ctx, t, busy.PID())
	// The idle session got its FATAL too: the next statement reads it.
	_, err := idle.Exec(ctx, "select 1").ReadAll()
	if got := pgError(err); got != revsessRevoked {
		t.Fatalf("idle session: got %q, want %q", got, revsessRevoked)
	}
	otherBusy.wait(t, 30*time.Second)
	if otherBusy.err != nil {
		t.Fatalf("another certificate's query: %v", otherBusy.err)
	}
	checkAlive(ctx, t, other)
	w.waitForLog(t, 0, "event=session_revoked", "reason=crl_reload", "cert_sha256=", "user=alice")
	// New logins with the certificate are refused at the handshake.
	if o := w.attempt(proxy, conn{user: "alice", cert: "victim"}); o.ok {
		t.Fatal("the revoked certificate still logs in")
	}
}

// waitBackendState waits until PostgreSQL shows pid in state.
func (w *world) waitBackendState(ctx context.Context, t *testing.T, pid uint32, state string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := w.superuserRows(ctx, "select state from pg_stat_activity where pid = "+big.NewInt(int64(pid)).String())
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 && string(rows[0][0]) == state {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("backend %d never %s", pid, state)
		}
	}
}

// TestRevokedSessionsExpiry: with revoked_sessions = "terminate", a
// session whose certificate expires 5 s in ends within 2 s of its
// notAfter, while another certificate's session runs on.
func TestRevokedSessionsExpiry(t *testing.T) {
	w := revsessWorld(t, "terminate", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	short, err := w.pki.root.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithValidity(now.Add(-time.Hour), now.Add(5*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	w.pki.clients["short"] = short
	pc := w.revsessConnect(ctx, t, "short")
	other := w.revsessConnect(ctx, t, "alice")
	if time.Now().After(short.Cert.NotAfter) {
		t.Fatalf("the certificate expired before its session began (notAfter %s)", short.Cert.NotAfter)
	}
	q := query(ctx, t, pc, "select pg_sleep(60)")
	q.wait(t, 30*time.Second)
	lag := q.at.Sub(short.Cert.NotAfter)
	t.Logf("notAfter to FATAL on the client: %s", lag)
	if got := pgError(q.err); got != revsessExpired {
		t.Fatalf("got %q, want %q", got, revsessExpired)
	}
	if lag < 0 || lag > 2*time.Second {
		t.Fatalf("the session ended %s after notAfter, want within [0, 2s]", lag)
	}
	w.backendGone(ctx, t, pc.PID())
	checkAlive(ctx, t, other)
	w.waitForLog(t, 0, "event=session_expired", "reason=cert_expired")
}

// TestRevokedSessionsKeep: by default (revoked_sessions = "keep",
// PostgreSQL's behaviour) a running session outlives its certificate's
// revocation and expiry. ("keep" spelled out is the same setting:
// config's TestRevokedSessionsKeys.)
func TestRevokedSessionsKeep(t *testing.T) {
	w := revsessWorld(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	short, err := w.pki.root.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithValidity(now.Add(-time.Hour), now.Add(3*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	w.pki.clients["short"] = short
	victim := w.revsessConnect(ctx, t, "victim")
	expiring := w.revsessConnect(ctx, t, "short")
	q := query(ctx, t, victim, "select pg_sleep(1)")
	w.revokeByReload(t, w.pki.clients["victim"].Cert)
	q.wait(t, 30*time.Second)
	if q.err != nil {
		t.Fatalf("revoked certificate's query: %v", q.err)
	}
	// Runs across notAfter.
	q = query(ctx, t, expiring, "select pg_sleep(greatest(0, extract(epoch from '"+short.Cert.NotAfter.UTC().Format(time.RFC3339)+"'::timestamptz - now())) + 1)")
	q.wait(t, 30*time.Second)
	if q.err != nil {
		t.Fatalf("expired certificate's query: %v", q.err)
	}
	checkAlive(ctx, t, victim, expiring)
	if log := w.logBuf.String(); strings.Contains(log, "session_revoked") || strings.Contains(log, "session_expired") {
		t.Fatalf("a session was ended under keep:\n%s", log)
	}
}

// revsessCounter reads one series of a counter from the proxy's metrics.
func (w *world) revsessCounter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.proxy.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestRevokedSessionsOCSPRecheck: with revoked_sessions = "terminate" and
// ssl_ocsp, running sessions are asked about every
// ssl_ocsp_recheck_interval. A responder that is down never ends a
// session, even under require; a "revoked" answer ends it, and only it.
func TestRevokedSessionsOCSPRecheck(t *testing.T) {
	p := newPKI(t)
	sa, sb := big.NewInt(0x7101), big.NewInt(0x7102)
	good := startOCSPResponder(t, "good", p.root, nil, []indexEntry{{"V", sa}, {"V", sb}})
	revoked := startOCSPResponder(t, "revoked", p.root, nil, []indexEntry{{"R", sa}, {"V", sb}})
	for name, serial := range map[string]*big.Int{"ocsp-a": sa, "ocsp-b": sb} {
		l, err := p.root.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithSerial(serial))
		if err != nil {
			t.Fatal(err)
		}
		p.clients[name] = l
	}
	settings := func(url string) string {
		return "ssl_ocsp = \"require\"\nssl_ocsp_responder = \"" + url + "\"\nssl_ocsp_recheck_interval = \"1s\""
	}
	w := newWorld(t, p, worldOptions{
		hba:       "hostssl all all 127.0.0.1/32 cert\n",
		noCRL:     true,
		extraTOML: "revoked_sessions = \"terminate\"\n" + revocationTOML(settings(good.url)),
	})
	identSetup(t, w, []string{"alice"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := w.revsessConnect(ctx, t, "ocsp-a")
	b := w.revsessConnect(ctx, t, "ocsp-b")

	t.Run("responder down", func(t *testing.T) {
		unavailable := map[string]string{"source": "ocsp", "result": "unavailable"}
		before := w.revsessCounter(t, "pgcertgate_revocation_checks_total", unavailable)
		w.setRevocation(t, settings(closedURL(t)))
		// Three recheck intervals pass while the statement runs.
		q := query(ctx, t, a, "select pg_sleep(3.5)")
		q.wait(t, 30*time.Second)
		if q.err != nil {
			t.Fatalf("a recheck with the responder down ended the session: %v", q.err)
		}
		if n := w.revsessCounter(t, "pgcertgate_revocation_checks_total", unavailable) - before; n < 1 {
			t.Fatalf("no recheck found the responder down (%v)", n)
		}
		checkAlive(ctx, t, a, b)
	})
	t.Run("revoked", func(t *testing.T) {
		q := query(ctx, t, a, "select pg_sleep(60)")
		w.waitBackendState(ctx, t, a.PID(), "active")
		before := revoked.requests()
		at := time.Now()
		w.setRevocation(t, settings(revoked.url))
		q.wait(t, 30*time.Second)
		took := q.at.Sub(at)
		t.Logf("reload to the revoked responder, to FATAL on the client: %s (interval 1s)", took)
		if got := pgError(q.err); got != revsessRevoked {
			t.Fatalf("got %q, want %q", got, revsessRevoked)
		}
		if took > 3*time.Second {
			t.Fatalf("ended %s after the responder began to answer revoked; want within the 1s interval plus 2s", took)
		}
		if revoked.requests() == before {
			t.Fatal("the revoked responder was never asked")
		}
		checkAlive(ctx, t, b)
		w.waitForLog(t, 0, "event=session_revoked", "reason=ocsp_revoked", "depth=0")
		if n := w.revsessCounter(t, "pgcertgate_sessions_ended_total", map[string]string{"reason": "ocsp_revoked"}); n != 1 {
			t.Fatalf("sessions_ended_total{reason=ocsp_revoked} = %v", n)
		}
	})
}

// TestRevokedSessionsFetchedCRL: with revoked_sessions = "terminate" and
// ssl_crl_fetch, a session ends when the background refresh of its
// certificate's distribution point brings a CRL that revokes it.
func TestRevokedSessionsFetchedCRL(t *testing.T) {
	p := newPKI(t)
	cdp := newCRLServer(t)
	for _, name := range []string{"cdp-victim", "cdp-other"} {
		l, err := p.root.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithCRLDistributionPoints(cdp.srv.URL+"/root.crl"))
		if err != nil {
			t.Fatal(err)
		}
		p.clients[name] = l
	}
	start := time.Now()
	// Due in four seconds: the proxy fetches its successor before that.
	first, err := p.root.CRL(nil, start.Add(-10*time.Second), start.Add(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	cdp.set(first)
	w := newWorld(t, p, worldOptions{
		hba:       "hostssl all all 127.0.0.1/32 cert\n",
		noCRL:     true,
		extraTOML: "revoked_sessions = \"terminate\"\n" + revocationTOML("ssl_crl_fetch = true"),
	})
	identSetup(t, w, []string{"alice"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	victim := w.revsessConnect(ctx, t, "cdp-victim")
	other := w.revsessConnect(ctx, t, "cdp-other")
	if v := <-cdp.served; v != 1 {
		t.Fatalf("served version %d first", v)
	}
	q := query(ctx, t, victim, "select pg_sleep(60)")
	revoking, err := p.root.CRL([]*x509.Certificate{p.clients["cdp-victim"].Cert}, time.Now().Add(-time.Second), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cdp.set(revoking)
	var served time.Time
	deadline := time.After(30 * time.Second)
	for served.IsZero() {
		select {
		case v := <-cdp.served:
			if v == 2 {
				served = time.Now()
			}
		case <-deadline:
			t.Fatal("the CRL was not refreshed")
		}
	}
	q.wait(t, 10*time.Second)
	took := q.at.Sub(served)
	t.Logf("revoking CRL served to FATAL on the client: %s", took)
	if got := pgError(q.err); got != revsessRevoked {
		t.Fatalf("got %q, want %q", got, revsessRevoked)
	}
	if took > 2*time.Second {
		t.Fatalf("ended %s after the revoking CRL was served", took)
	}
	checkAlive(ctx, t, other)
	w.waitForLog(t, 0, "event=session_revoked", "reason=crl_fetched", "depth=0")
}

// TestRevokedSessionsVerifiedBeforeReload: a connection whose
// certificate verified before a reload, and whose session goes live only
// after the reload's recheck has run, is ended as soon as it goes live
// when the reload's CRL revokes it. The recheck saw only the sessions
// already live; the connection keeps the configuration it was accepted
// with, so it authenticates against the old CRLs.
func TestRevokedSessionsVerifiedBeforeReload(t *testing.T) {
	w := revsessWorld(t, "terminate", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	live := w.revsessConnect(ctx, t, "victim")

	// Alice's connection: TLS done, her certificate verified, startup
	// packet not sent yet.
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	if _, err := raw.Write(ssl); err != nil {
		t.Fatal(err)
	}
	var s [1]byte
	if _, err := raw.Read(s[:]); err != nil || s[0] != 'S' {
		t.Fatalf("SSLRequest: %q %v", s, err)
	}
	alice := w.pki.clients["alice"]
	pair, err := tls.X509KeyPair(alice.ChainPEM(), alice.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(w.pki.root.Cert)
	tc := tls.Client(raw, &tls.Config{ServerName: "localhost", RootCAs: roots, Certificates: []tls.Certificate{pair}})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}

	// The reload revokes both; the live session ends (the recheck has
	// run).
	w.revokeByReload(t, w.pki.clients["victim"].Cert, alice.Cert)
	q := query(ctx, t, live, "select pg_sleep(60)")
	q.wait(t, 10*time.Second)
	if got := pgError(q.err); got != revsessRevoked {
		t.Fatalf("live session: got %q, want %q", got, revsessRevoked)
	}

	// Alice's session goes live, and must end at once.
	buf, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "alice", "database": "postgres"}}).Encode(nil)
	if _, err := tc.Write(buf); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(tc, tc)
	ready := false
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("alice's session (ready: %v) was not ended: %v", ready, err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			// Authenticated under the configuration it was accepted
			// with; the FATAL bounds the wait from here.
			ready = true
			_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
			continue
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			got := e.Severity + " " + e.Code + " " + e.Message
			if !ready || got != revsessRevoked {
				t.Fatalf("alice (ready: %v): got %q, want %q after ReadyForQuery", ready, got, revsessRevoked)
			}
			break
		}
	}
	w.waitForLog(t, 0, "event=session_revoked", "reason=crl_reload", "user=alice")
}
