package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// identCRLPKI adds to the shared PKI an intermediate that is given no CRL
// (inter2) and one that is revoked (inter3, added to p.revoked, which the
// root's CRLs revoke), each with a client "alice" (inter2-alice,
// inter3-alice).
func identCRLPKI(t *testing.T) (p *pki, inter2, inter3 *testpki.CA) {
	t.Helper()
	p = newPKI(t)
	var err error
	if inter2, err = p.root.NewIntermediate(pkix.Name{CommonName: "intermediate without CRL"}); err != nil {
		t.Fatal(err)
	}
	if inter3, err = p.root.NewIntermediate(pkix.Name{CommonName: "revoked intermediate"}); err != nil {
		t.Fatal(err)
	}
	for name, ca := range map[string]*testpki.CA{"inter2-alice": inter2, "inter3-alice": inter3} {
		if p.clients[name], err = ca.NewClient(pkix.Name{CommonName: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	p.revoked = append(p.revoked, inter3.Cert)
	return p, inter2, inter3
}

// identCAFile is root.crt with every CA of the PKI: pgx only sends a
// certificate whose issuer is in the server's CA list.
func identCAFile(p *pki, more ...*testpki.CA) string {
	out := append(append([]byte{}, p.root.CertPEM...), p.inter.CertPEM...)
	for _, ca := range more {
		out = append(out, ca.CertPEM...)
	}
	return string(out)
}

// TestIdentCRLFile: ssl_crl_file with CRL_CHECK_ALL, so the intermediates
// are checked too.
func TestIdentCRLFile(t *testing.T) {
	p, inter2, inter3 := identCRLPKI(t)
	// The root's CRL revokes the client "revoked" and inter3; inter has an
	// (empty) CRL and so does inter3; inter2 has none.
	crls := identCRLs(t, []*testpki.CA{p.root, p.inter, inter3}, p.revoked)
	w := newWorld(t, p, worldOptions{
		hba:   "hostssl all all 127.0.0.1/32 cert\n",
		files: map[string]string{"root.crt": identCAFile(p, inter2, inter3), "root.crl": crls},
	})
	identSetup(t, w, []string{"alice"}, nil)
	c := func(cert string) conn { return conn{user: "alice", database: "postgres", cert: cert} }
	cases := []identCase{
		{"not revoked", c("alice"), "ok as alice", nil},
		{"revoked leaf", c("revoked"), "TLS failure", nil},
		{"intermediate with a CRL", c("inter-alice"), "ok as alice", nil},
		{"intermediate without a CRL", c("inter2-alice"), "TLS failure", nil},
		{"revoked intermediate", c("inter3-alice"), "TLS failure", nil},
	}
	t.Logf("differential: %d cases agree with PostgreSQL", identRun(t, w, cases))
}

// identCRLName is the file name OpenSSL's hashed-directory lookup tries
// for ca's n-th CRL: <X509_NAME_hash of the issuer>.r<n>.
func identCRLName(t *testing.T, ca *testpki.CA, n int) string {
	t.Helper()
	h, err := certauth.NameHash(ca.Cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	return "crl/" + certauth.HashedCRLName(h, n)
}

// identDropCRL writes a CRL into both servers' ssl_crl_dir while they
// run. newWorld writes its files with os.WriteFile into the proxy's
// directory without creating parents, so nested paths are written here.
func identDropCRL(t *testing.T, w *world, name string, pem []byte) {
	t.Helper()
	if err := w.cluster.WriteFile(name, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIdentCRLDir: ssl_crl_dir, read on demand. Files dropped into the
// directory after both servers started apply to the next connection,
// with no reload, and an issuer with no CRL fails verification.
func TestIdentCRLDir(t *testing.T) {
	p, _, _ := identCRLPKI(t)
	out, err := exec.Command("openssl", "x509", "-noout", "-hash", "-in", identWriteTemp(t, p.root.CertPEM)).Output()
	if err != nil {
		t.Fatalf("openssl x509 -hash: %v", err)
	}
	if got, want := identCRLName(t, p.root, 0), "crl/"+strings.TrimSpace(string(out))+".r0"; got != want {
		t.Fatalf("certauth.NameHash gives %s, openssl %s", got, want)
	}
	w := newWorld(t, p, worldOptions{
		hba:     "hostssl all all 127.0.0.1/32 cert\n",
		noCRL:   true,
		conf:    map[string]string{"ssl_crl_dir": "crl"},
		crlTOML: `ssl_crl_dir = "crl"`,
	})
	identSetup(t, w, []string{"alice", "bob"}, nil)
	c := func(user, cert string) conn { return conn{user: user, database: "postgres", cert: cert} }
	n := identRun(t, w, []identCase{
		// The directory does not even exist yet: no CRL for the root.
		{"no CRL directory", c("alice", "alice"), "TLS failure", nil},
	})

	crl := func(ca *testpki.CA, revoked []*x509.Certificate, thisUpdate time.Time) []byte {
		pem, err := ca.CRL(revoked, thisUpdate, time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return pem
	}
	identDropCRL(t, w, identCRLName(t, p.root, 0), crl(p.root, p.revoked, time.Now().Add(-time.Hour)))
	n += identRun(t, w, []identCase{
		{"root CRL dropped in: not revoked", c("alice", "alice"), "ok as alice", nil},
		{"root CRL dropped in: revoked", c("alice", "revoked"), "TLS failure", nil},
		{"no CRL for the intermediate", c("alice", "inter-alice"), "TLS failure", nil},
	})

	identDropCRL(t, w, identCRLName(t, p.inter, 0), crl(p.inter, nil, time.Now().Add(-time.Hour)))
	n += identRun(t, w, []identCase{
		{"intermediate CRL dropped in", c("alice", "inter-alice"), "ok as alice", nil},
	})

	// A newer CRL from the root, as .r1 next to .r0: OpenSSL reads both
	// and uses the one with the later thisUpdate.
	identDropCRL(t, w, identCRLName(t, p.root, 1), crl(p.root, append(p.revoked, p.clients["bob"].Cert), time.Now().Add(-30*time.Minute)))
	n += identRun(t, w, []identCase{
		{"newer root CRL revokes bob", c("bob", "bob"), "TLS failure", nil},
		{"newer root CRL, alice still valid", c("alice", "alice"), "ok as alice", nil},
	})
	t.Logf("differential: %d cases agree with PostgreSQL", n)
}

func identWriteTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// identLeafOnly registers a copy of client name that presents its leaf
// without the intermediate.
func identLeafOnly(p *pki, name string) string {
	l := *p.clients[name]
	l.Chain = nil
	p.clients[name+"-leafonly"] = &l
	return name + "-leafonly"
}

// TestIdentChains: where the intermediate comes from, and what counts as
// a trust anchor. Only self-signed certificates in ssl_ca_file are
// anchors for OpenSSL; a chain ending at an intermediate fails.
func TestIdentChains(t *testing.T) {
	p := newPKI(t)
	leafOnly := identLeafOnly(p, "inter-alice")
	c := func(cert string) conn { return conn{user: "alice", database: "postgres", cert: cert} }
	total := 0

	t.Run("root and intermediate in ssl_ca_file", func(t *testing.T) {
		w := newWorld(t, p, worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n"})
		identSetup(t, w, []string{"alice"}, nil)
		total += identRun(t, w, []identCase{
			{"intermediate sent by the client", c("inter-alice"), "ok as alice", nil},
			{"intermediate only in ssl_ca_file", c(leafOnly), "ok as alice", nil},
			{"root-issued", c("alice"), "ok as alice", nil},
		})
	})

	t.Run("only the root in ssl_ca_file", func(t *testing.T) {
		w := newWorld(t, p, worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n",
			files: map[string]string{"root.crt": string(p.root.CertPEM)}})
		identSetup(t, w, []string{"alice"}, nil)
		total += identRun(t, w, []identCase{
			{"intermediate sent by the client", c("inter-alice"), "ok as alice", nil},
			// pgx offers no certificate whose issuer the server did not
			// list, so libpq below shows the verification failure.
			{"leaf only, pgx", c(leafOnly), "FATAL 28000 connection requires a valid client certificate", nil},
		})
		pg, gate := identPsql(t, w, direct, c(leafOnly)), identPsql(t, w, proxy, c(leafOnly))
		t.Logf("leaf only, psql: PostgreSQL %s (alert %q), pgcertgate %s (alert %q)", pg.outcome, pg.alert, gate.outcome, gate.alert)
		if pg.outcome != "TLS failure" || pg.alert != "unknown ca" || gate.outcome != pg.outcome {
			t.Errorf("leaf only, psql:\n  postgres:   %s\n  pgcertgate: %s", pg.out, gate.out)
		}
		total++
	})

	t.Run("only the intermediate in ssl_ca_file", func(t *testing.T) {
		files := map[string]string{"root.crt": string(p.inter.CertPEM), "server-root.crt": string(p.root.CertPEM)}
		w := newWorld(t, p, worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n", files: files})
		identSetup(t, w, []string{"alice"}, nil)
		// The server's certificate comes from the root, which is no
		// longer in root.crt.
		extra := "sslrootcert=" + filepath.Join(w.dir, "server-root.crt")
		cc := func(cert string) conn { x := c(cert); x.extra = extra; return x }
		total += identRun(t, w, []identCase{
			{"chain ends at a non-self-signed CA file certificate", cc("inter-alice"), "TLS failure", nil},
			{"leaf only, chain ends at the intermediate", cc(leafOnly), "TLS failure", nil},
			{"root-issued, not offered by pgx", cc("alice"), "FATAL 28000 connection requires a valid client certificate", nil},
		})
		for _, cert := range []string{"inter-alice", leafOnly, "alice"} {
			pg, gate := identPsql(t, w, direct, cc(cert)), identPsql(t, w, proxy, cc(cert))
			t.Logf("%-22s psql: PostgreSQL %s (alert %q), pgcertgate %s (alert %q)", cert, pg.outcome, pg.alert, gate.outcome, gate.alert)
			if pg.outcome != "TLS failure" || pg.alert != "unknown ca" || gate.outcome != pg.outcome {
				t.Errorf("%s, psql:\n  postgres:   %s\n  pgcertgate: %s", cert, pg.out, gate.out)
			}
			total++
		}
	})
	t.Logf("differential: %d cases agree with PostgreSQL", total)
}

// identSessionCache records whether a server ever handed the client a
// session to resume.
type identSessionCache struct {
	tls.ClientSessionCache
	puts atomic.Int32
}

func (c *identSessionCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts.Add(1)
	}
	c.ClientSessionCache.Put(key, cs)
}

// identProbe connects to a PostgreSQL-protocol server (SSLRequest, TLS,
// StartupMessage) and reads until ReadyForQuery or an error, so that a
// TLS 1.3 NewSessionTicket, sent after the handshake, would reach the
// session cache. It reports whether the handshake resumed a session and
// the error, if the server refused the connection.
func identProbe(t *testing.T, addr string, cfg *tls.Config) (resumed bool, err error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
	req := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)
	if _, err := raw.Write(req); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(raw, b); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest answered %q, %v", b, err)
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return false, err
	}
	resumed = tc.ConnectionState().DidResume
	fe := pgproto3.NewFrontend(tc, tc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": "postgres"}})
	if err := fe.Flush(); err != nil {
		// The server may have sent its alert and closed before the
		// startup message arrived, and the write then meets a reset.
		// The alert is still there to read, as libpq reads the server's
		// message after a failed send.
		if _, rerr := tc.Read(make([]byte, 1)); rerr != nil && strings.Contains(rerr.Error(), "remote error: tls: ") {
			return resumed, rerr
		}
		return resumed, err
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			return resumed, err
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			fe.Send(&pgproto3.Terminate{})
			_ = fe.Flush()
			return resumed, nil
		case *pgproto3.ErrorResponse:
			return resumed, fmt.Errorf("%s %s %s", m.Severity, m.Code, m.Message)
		}
	}
}

// TestIdentNoSessionResumption: crypto/tls does not run certificate
// callbacks on a resumed session, so a session resumed after its
// certificate was revoked would bypass the CRL. pgcertgate, like
// PostgreSQL (SSL_OP_NO_TICKET), issues no tickets, and TLS 1.3 PSK
// resumption needs one, so no handshake resumes: a client that offers its
// session cache gets a full handshake, and a certificate revoked between
// two connections is refused on the second.
func TestIdentNoSessionResumption(t *testing.T) {
	p := newPKI(t)
	victim, err := p.root.NewClient(pkix.Name{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, p, worldOptions{
		hba:     "hostssl all all 127.0.0.1/32 cert\n",
		noCRL:   true,
		conf:    map[string]string{"ssl_crl_dir": "crl"},
		crlTOML: `ssl_crl_dir = "crl"`,
	})
	identSetup(t, w, []string{"alice"}, nil)
	rootCRL := func(revoked []*x509.Certificate, thisUpdate time.Time) []byte {
		pem, err := p.root.CRL(revoked, thisUpdate, time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return pem
	}
	identDropCRL(t, w, identCRLName(t, p.root, 0), rootCRL(nil, time.Now().Add(-time.Hour)))

	clientConfig := func(version uint16, cache tls.ClientSessionCache) *tls.Config {
		return &tls.Config{
			RootCAs:            p.root.Pool(),
			ServerName:         "localhost",
			Certificates:       []tls.Certificate{victim.TLSCertificate()},
			ClientSessionCache: cache,
			MinVersion:         version,
			MaxVersion:         version,
		}
	}

	// The probe itself must be able to see a resumption: against a Go
	// TLS server that issues tickets, the second handshake resumes.
	t.Run("control: a server with tickets resumes", func(t *testing.T) {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			addr := identTicketServer(t, p)
			cache := &identSessionCache{ClientSessionCache: tls.NewLRUClientSessionCache(8)}
			if r, err := identProbe(t, addr, clientConfig(version, cache)); err != nil || r {
				t.Fatalf("%s first: resumed=%v, %v", tls.VersionName(version), r, err)
			}
			if r, err := identProbe(t, addr, clientConfig(version, cache)); err != nil || !r {
				t.Fatalf("%s second: resumed=%v, %v; the probe cannot detect resumption", tls.VersionName(version), r, err)
			}
		}
	})

	targets := []target{direct, proxy}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version)+": no session is offered or resumed", func(t *testing.T) {
			for _, tg := range targets {
				host, port := w.hostPort(tg)
				cache := &identSessionCache{ClientSessionCache: tls.NewLRUClientSessionCache(8)}
				for i := range 2 {
					r, err := identProbe(t, net.JoinHostPort(host, port), clientConfig(version, cache))
					if err != nil || r {
						t.Errorf("%s, connection %d: resumed=%v, %v", tg, i+1, r, err)
					}
				}
				if n := cache.puts.Load(); n != 0 {
					t.Errorf("%s handed out %d sessions to resume", tg, n)
				}
			}
		})
	}

	t.Run("revoked between two connections", func(t *testing.T) {
		caches := map[target]*identSessionCache{}
		for _, tg := range targets {
			host, port := w.hostPort(tg)
			caches[tg] = &identSessionCache{ClientSessionCache: tls.NewLRUClientSessionCache(8)}
			if r, err := identProbe(t, net.JoinHostPort(host, port), clientConfig(tls.VersionTLS13, caches[tg])); err != nil || r {
				t.Fatalf("%s, before revocation: resumed=%v, %v", tg, r, err)
			}
		}
		// A newer root CRL revoking the client, next to the old one.
		identDropCRL(t, w, identCRLName(t, p.root, 1), rootCRL([]*x509.Certificate{victim.Cert}, time.Now().Add(-30*time.Minute)))
		for _, tg := range targets {
			host, port := w.hostPort(tg)
			r, err := identProbe(t, net.JoinHostPort(host, port), clientConfig(tls.VersionTLS13, caches[tg]))
			t.Logf("%s after revocation: resumed=%v, %v", tg, r, err)
			if r {
				t.Errorf("%s resumed a session", tg)
			}
			// The refusal is the server's TLS alert (certificate_revoked
			// from both).
			if err == nil || !strings.Contains(err.Error(), "remote error: tls: ") {
				t.Errorf("%s did not refuse the revoked certificate with an alert (err %v)", tg, err)
			}
		}
	})
}

// identTicketServer is a minimal PostgreSQL-protocol TLS server with
// session tickets enabled: it answers an SSLRequest, completes the
// handshake and greets with ReadyForQuery.
func identTicketServer(t *testing.T, p *pki) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	cfg := &tls.Config{Certificates: []tls.Certificate{p.server.TLSCertificate()}, ClientAuth: tls.RequestClientCert}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			buf := make([]byte, 8)
			if _, err := io.ReadFull(c, buf); err == nil {
				_, _ = c.Write([]byte{'S'})
				tc := tls.Server(c, cfg)
				be := pgproto3.NewBackend(tc, tc)
				if _, err := be.ReceiveStartupMessage(); err == nil {
					be.Send(&pgproto3.AuthenticationOk{})
					be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
					_ = be.Flush()
					_, _ = be.Receive()
				}
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}
