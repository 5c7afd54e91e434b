package integration

import (
	"bufio"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// ocspResponder is a real OCSP responder, `openssl ocsp`, answering for
// one CA from an OpenSSL index file, started and stopped by the test.
type ocspResponder struct {
	url    string
	cmd    *exec.Cmd
	stderr *syncBuffer // one "Received request" line per request
	done   chan struct{}
}

// indexEntry is one line of the responder's index: status "V" (valid)
// or "R" (revoked). A serial the index does not list is "unknown".
type indexEntry struct {
	status string
	serial *big.Int
}

// startOCSPResponder writes the index and starts `openssl ocsp` on a port
// of its own choosing (-port 0: it binds, then prints the port in its
// ACCEPT line, so no port is picked and raced for). signer signs the
// responses: nil for the CA itself, else a delegated responder
// certificate. It is ready once the ACCEPT line is out.
func startOCSPResponder(t *testing.T, name string, ca *testpki.CA, signer *testpki.Leaf, index []indexEntry) *ocspResponder {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var idx strings.Builder
	exp := time.Now().Add(24 * time.Hour).UTC().Format("060102150405Z")
	revokedAt := time.Now().Add(-time.Hour).UTC().Format("060102150405Z")
	for _, e := range index {
		rev := ""
		if e.status == "R" {
			rev = revokedAt
		}
		hex := strings.ToUpper(e.serial.Text(16))
		if len(hex)%2 == 1 {
			hex = "0" + hex
		}
		// Subjects must differ: openssl refuses an index with a subject
		// twice (unique_subject).
		fmt.Fprintf(&idx, "%s\t%s\t%s\t%s\tunknown\t/CN=serial %s\n", e.status, exp, rev, hex, hex)
	}
	signerCert, signerKey := ca.CertPEM, ca.KeyPEM
	if signer != nil {
		signerCert, signerKey = signer.CertPEM, signer.KeyPEM
	}
	files := map[string][]byte{"index.txt": []byte(idx.String()), "ca.crt": ca.CertPEM, "signer.crt": signerCert, "signer.key": signerKey}
	for f, data := range files {
		if err := testpki.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := func(f string) string { return filepath.Join(dir, f) }
	cmd := exec.Command("openssl", "ocsp", "-index", path("index.txt"), "-port", "0",
		"-rsigner", path("signer.crt"), "-rkey", path("signer.key"), "-CA", path("ca.crt"),
		"-nmin", "60", "-ignore_err")
	r := &ocspResponder{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = r.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("openssl ocsp: %v", err)
	}
	ports := make(chan string, 1)
	go func() {
		defer close(r.done)
		accept := regexp.MustCompile(`^ACCEPT .*:(\d+) `)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := accept.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ports <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
		_ = cmd.Wait()
	})
	select {
	case port := <-ports:
		r.url = "http://127.0.0.1:" + port + "/"
	case <-r.done:
		t.Fatalf("openssl ocsp exited before listening: %s", r.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("openssl ocsp did not start: %s", r.stderr.String())
	}
	return r
}

// requests is how many requests the responder has logged.
func (r *ocspResponder) requests() int {
	return strings.Count(r.stderr.String(), "Received request")
}

// closedURL is an http URL on a loopback port nobody listens on: a
// responder that is down.
func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

// revocationBlock delimits the proxy's revocation settings in its
// configuration file, so that a test can change them with a reload.
const (
	revocationBegin = "# revocation settings begin"
	revocationEnd   = "# revocation settings end"
)

func revocationTOML(settings string) string {
	return revocationBegin + "\n" + settings + "\n" + revocationEnd + "\n"
}

// setRevocation rewrites the revocation settings and reloads the proxy.
func (w *world) setRevocation(t *testing.T, settings string) {
	t.Helper()
	b, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, revocationBegin), strings.Index(s, revocationEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no revocation block", w.cfgPath)
	}
	w.writeFile("pgcertgate.toml", s[:i]+revocationTOML(settings)+s[j+len(revocationEnd)+1:])
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w.proxy.Reload(rt)
}

// expectLogin makes one login with cert as alice and checks its outcome,
// and that the audit event of that login carries logged (key=value).
func (w *world) expectLogin(t *testing.T, cert, want, logged string) {
	t.Helper()
	before := len(w.logBuf.String())
	got := w.attempt(proxy, conn{user: "alice", cert: cert})
	if got.String() != want {
		t.Errorf("%s: got %q, want %q (raw: %s)", cert, got, want, got.raw)
	}
	if logged != "" {
		w.waitForLog(t, before, "cert_serial="+w.pki.clients[cert].Cert.SerialNumber.String()+" ", logged)
	}
}

// waitForLog waits until a line of the proxy's log past offset from holds
// every one of parts. A refused handshake is logged after the client has
// had its alert, so the line may come a moment after the attempt returns.
func (w *world) waitForLog(t *testing.T, from int, parts ...string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		for line := range strings.Lines(w.logBuf.String()[from:]) {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Errorf("no log line with %q after offset %d:\n%s", parts, from, w.logBuf.String()[from:])
			return
		}
	}
}

// TestOCSP runs the proxy against `openssl ocsp` responders: good,
// revoked and unknown answers, a responder that is down, delegated
// responders with and without id-kp-OCSPSigning, and the cache.
func TestOCSP(t *testing.T) {
	p := newPKI(t)
	serial := func(n int64) *big.Int { return big.NewInt(0x7000 + n) }
	// The root answers for itself about good, revoked and cached
	// certificates; the unknown one is in no index.
	direct := startOCSPResponder(t, "direct", p.root, nil, []indexEntry{
		{"V", serial(1)}, {"R", serial(2)}, {"V", serial(4)}, {"V", serial(9)},
	})
	delegate, err := p.root.NewOCSPResponder("pgcertgate test OCSP responder")
	if err != nil {
		t.Fatal(err)
	}
	noEKU, err := p.root.NewOCSPResponder("responder without OCSPSigning", testpki.WithEKU(x509.ExtKeyUsageClientAuth))
	if err != nil {
		t.Fatal(err)
	}
	delegated := startOCSPResponder(t, "delegated", p.root, delegate, []indexEntry{{"V", serial(5)}})
	wrongEKU := startOCSPResponder(t, "noeku", p.root, noEKU, []indexEntry{{"V", serial(6)}})
	down := closedURL(t)
	for name, c := range map[string]struct {
		n   int64
		url string
	}{
		"ocsp-good":     {1, direct.url},
		"ocsp-revoked":  {2, direct.url},
		"ocsp-unknown":  {3, direct.url},
		"ocsp-cached":   {4, direct.url},
		"ocsp-deleg":    {5, delegated.url},
		"ocsp-noeku":    {6, wrongEKU.url},
		"ocsp-down":     {7, down},
		"ocsp-down-crl": {8, down},
		"ocsp-good-crl": {9, direct.url},
	} {
		if p.clients[name], err = p.root.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithSerial(serial(c.n)), testpki.WithOCSPServer(c.url)); err != nil {
			t.Fatal(err)
		}
	}
	// The root's CRL (root.crl, used once ssl_crl_file is set) revokes
	// ocsp-down-crl, and ocsp-good-crl, which the responder says is good.
	p.revoked = append(p.revoked, p.clients["ocsp-down-crl"].Cert, p.clients["ocsp-good-crl"].Cert)
	w := newWorld(t, p, worldOptions{
		hba:       "hostssl all all 127.0.0.1/32 cert\n",
		noCRL:     true,
		extraTOML: revocationTOML(`ssl_ocsp = "require"`),
	})
	identSetup(t, w, []string{"alice"}, nil)

	t.Run("require", func(t *testing.T) {
		w.expectLogin(t, "ocsp-good", "ok as alice", "revocation=good")
		w.expectLogin(t, "ocsp-revoked", "TLS failure", "reason=ocsp_revoked")
		w.expectLogin(t, "ocsp-unknown", "TLS failure", "reason=ocsp_unknown")
		w.expectLogin(t, "ocsp-down", "TLS failure", "reason=ocsp_unavailable")
		// No responder named at all (the shared PKI's alice has no AIA).
		w.expectLogin(t, "alice", "TLS failure", "reason=ocsp_unavailable")
		w.expectLogin(t, "ocsp-deleg", "ok as alice", "revocation=good")
		w.expectLogin(t, "ocsp-noeku", "TLS failure", "reason=ocsp_bad_response")
	})
	t.Run("prefer without a CRL", func(t *testing.T) {
		w.setRevocation(t, `ssl_ocsp = "prefer"`)
		w.expectLogin(t, "ocsp-good", "ok as alice", "revocation=good")
		w.expectLogin(t, "ocsp-revoked", "TLS failure", "reason=ocsp_revoked")
		w.expectLogin(t, "ocsp-unknown", "ok as alice", "revocation=unchecked")
		w.expectLogin(t, "ocsp-down", "ok as alice", "revocation=unchecked")
		w.expectLogin(t, "ocsp-noeku", "ok as alice", "revocation=unchecked")
	})
	t.Run("prefer with a CRL", func(t *testing.T) {
		w.setRevocation(t, "ssl_ocsp = \"prefer\"\nssl_crl_file = \"root.crl\"")
		// The responder is down: the CRL decides.
		w.expectLogin(t, "ocsp-down", "ok as alice", "revocation=good")
		w.expectLogin(t, "ocsp-down-crl", "TLS failure", "reason=cert_invalid")
		// An OCSP good never overrides the CRL.
		w.expectLogin(t, "ocsp-good-crl", "TLS failure", "reason=cert_invalid")
		// A revoked answer refuses what the CRL lets through.
		w.expectLogin(t, "ocsp-revoked", "TLS failure", "reason=ocsp_revoked")
	})
	t.Run("cache", func(t *testing.T) {
		w.setRevocation(t, `ssl_ocsp = "require"`)
		before := direct.requests()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range 10 {
			wg.Go(func() {
				for range 10 {
					if o := w.attempt(proxy, conn{user: "alice", cert: "ocsp-cached"}); !o.ok {
						failed.Add(1)
						t.Errorf("login: %s (%s)", o, o.raw)
					}
				}
			})
		}
		wg.Wait()
		if n := direct.requests() - before; n != 1 || failed.Load() != 0 {
			t.Fatalf("100 logins of one certificate: the responder logged %d requests, want 1 (%d logins failed)", n, failed.Load())
		}
		// The metrics count answers from the cache, and the round trips.
		reg := prometheus.NewRegistry()
		reg.MustRegister(w.proxy.Metrics())
		var cached, trips float64
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch mf.GetName() {
				case "pgcertgate_revocation_checks_total":
					labels := map[string]string{}
					for _, l := range m.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if labels["source"] == "cache" && labels["result"] == "good" {
						cached = m.GetCounter().GetValue()
					}
				case "pgcertgate_ocsp_request_duration_seconds":
					trips = float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		// Up to ten logins (one per goroutine) share the first request,
		// which counts them as source "ocsp"; the rest are cache hits.
		if cached < 90 || trips < 1 {
			t.Fatalf("metrics: %v cache hits, %v round trips", cached, trips)
		}
	})
}

// crlServer is a CRL distribution point over HTTP: it serves whatever CRL
// the test last set (for a path given to setPath, that path's), and
// reports each download.
type crlServer struct {
	mu      sync.Mutex
	crl     []byte
	paths   map[string][]byte
	version int
	served  chan int // the version served, per download
	srv     *httptest.Server
}

func newCRLServer(t *testing.T) *crlServer {
	s := &crlServer{served: make(chan int, 100), paths: map[string][]byte{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		crl, v := s.crl, s.version
		if c, ok := s.paths[r.URL.Path]; ok {
			crl = c
		}
		s.mu.Unlock()
		_, _ = w.Write(crl)
		select {
		case s.served <- v:
		default:
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *crlServer) set(crl []byte) {
	s.mu.Lock()
	s.crl = crl
	s.version++
	s.mu.Unlock()
}

// setPath serves crl at path (as "/b.crl"), for several distribution
// points on one server.
func (s *crlServer) setPath(path string, crl []byte) {
	s.mu.Lock()
	s.paths[path] = crl
	s.version++
	s.mu.Unlock()
}

// TestCRLDistributionPoint: with ssl_crl_fetch, the CRL named by the
// client certificate is fetched at its first login, refreshed in the
// background before its nextUpdate, and a CRL issued meanwhile that
// revokes the certificate refuses the next login.
func TestCRLDistributionPoint(t *testing.T) {
	p := newPKI(t)
	cdp := newCRLServer(t)
	var err error
	if p.clients["cdp-alice"], err = p.root.NewClient(pkix.Name{CommonName: "alice"}, testpki.WithCRLDistributionPoints(cdp.srv.URL+"/root.crl")); err != nil {
		t.Fatal(err)
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
		extraTOML: revocationTOML("ssl_crl_fetch = true"),
	})
	identSetup(t, w, []string{"alice"}, nil)

	w.expectLogin(t, "cdp-alice", "ok as alice", "revocation=good")
	if v := <-cdp.served; v != 1 {
		t.Fatalf("served version %d first", v)
	}
	// A certificate naming no distribution point needs no fetched CRL.
	w.expectLogin(t, "alice", "ok as alice", "")

	revoking, err := p.root.CRL([]*x509.Certificate{p.clients["cdp-alice"].Cert}, time.Now().Add(-time.Second), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cdp.set(revoking)
	// Wait for the background refresh to download the new CRL: no login
	// triggers it.
	deadline := time.After(30 * time.Second)
	for got := false; !got; {
		select {
		case v := <-cdp.served:
			got = v == 2
		case <-deadline:
			t.Fatal("the CRL was not refreshed")
		}
	}
	// The download is done; the proxy installs the CRL right after. The
	// first login after that is refused, as for a configured CRL.
	var o outcome
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		if o = w.attempt(proxy, conn{user: "alice", cert: "cdp-alice"}); o.tlsError {
			break
		}
	}
	if !o.tlsError {
		t.Fatalf("after the refresh: %s", o)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.proxy.Metrics())
	if n, err := testutil.GatherAndCount(reg, "pgcertgate_fetched_crl_age_seconds"); err != nil || n != 1 {
		t.Errorf("fetched CRL age: %d series, %v", n, err)
	}
	w.waitForLog(t, 0, "cert_serial="+p.clients["cdp-alice"].Cert.SerialNumber.String()+" ", "tls_cause=cert_certificate_revoked", "revocation=crl_revoked")
}
