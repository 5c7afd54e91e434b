package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestPeerChannelMTLS: with peer_ssl = "require", forwarded cancels go
// over TLS with the replicas' own CA. A forwarder whose certificate
// another CA signed, one with no certificate, and a forwarded cancel in
// plaintext (the PROXY mark alone) are all refused and cancel nothing; a
// StartupMessage on the peer channel, even with a peer certificate, is
// closed unanswered; a replica with a valid peer certificate gets the
// cancel delivered.
func TestPeerChannelMTLS(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{
		hba:       "local all all trust\nhostssl all alice 127.0.0.0/8 cert\n",
		extraTOML: "proxy_protocol = \"on\"\nproxy_protocol_trusted = [\"127.0.0.1/32\"]",
	})
	w.setup(t, "CREATE ROLE alice LOGIN")
	// Replicas 0 and 1 hold certificates of the peers' CA. Certificate 2
	// comes from another CA: a replica configured with it does not load
	// (config.loadPeerTLS), so the impostor is a client of the test's.
	caFile, files := fleetPeerFiles(t, w, 3, 2)
	reps := startReplicasWith(t, w, 2, func(i int) string {
		return fmt.Sprintf("peer_ssl = \"require\"\npeer_ssl_cert_file = %q\npeer_ssl_key_file = %q\npeer_ssl_ca_file = %q", files[i][0], files[i][1], caFile)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pc, err := viaBalancer(ctx, t, w, reps[0].addr, "127.0.0.3", conn{user: "alice", cert: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	res := pc.Exec(ctx, "SELECT pg_sleep(30)")
	fleetWait(t, 20*time.Second, "pg_sleep to run", func() bool {
		rows, err := w.superuserRows(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
		return err == nil && string(rows[0][0]) == "1"
	})
	cancelReq, err := (&pgproto3.CancelRequest{ProcessID: pc.PID(), SecretKey: pc.SecretKey()}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	mark := append([]byte{0xE7, 0, byte(len("pgcertgate forwarded cancel"))}, "pgcertgate forwarded cancel"...)
	notDelivered := func(t *testing.T) {
		t.Helper()
		if c := cancelCounts(t, reps[:1]); c["delivered"] != 0 {
			t.Fatalf("replica 0 delivered a cancel: %v", c)
		}
	}
	// peerChannel opens the peer channel to replica 0 as a forwarder
	// does (from 127.0.0.1, which is trusted: the PROXY header with the
	// mark, an SSLRequest, TLS offering only the peer protocol),
	// presenting the certificate in files[i], or none when i < 0.
	peerChannel := func(t *testing.T, i int) *tls.Conn {
		t.Helper()
		cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"pgcertgate-peer"}, MinVersion: tls.VersionTLS13}
		if i >= 0 {
			cert, err := tls.LoadX509KeyPair(files[i][0], files[i][1])
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		c, err := net.DialTimeout("tcp", reps[0].addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		hdr := proxyV2Header(0x21, "10.1.2.3:5555", mark)
		if _, err := c.Write(binary.BigEndian.AppendUint32(append(hdr, 0, 0, 0, 8), 80877103)); err != nil {
			t.Fatal(err)
		}
		var s [1]byte
		if _, err := io.ReadFull(c, s[:]); err != nil || s[0] != 'S' {
			t.Fatalf("SSLRequest answered %q, %v", s, err)
		}
		return tls.Client(c, cfg)
	}

	for _, tc := range []struct {
		name string
		cert int
	}{{"forwarder with another CA's certificate", 2}, {"peer channel without a certificate", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			tc := peerChannel(t, tc.cert)
			err := tc.Handshake()
			if err == nil {
				// TLS 1.3: the server's verdict on the client's
				// certificate comes after the client's Finished.
				_, _ = tc.Write(cancelReq)
				_, err = tc.Read(make([]byte, 1))
			}
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("the peer channel: %v, want a TLS alert", err)
			}
			notDelivered(t)
		})
	}
	t.Run("forwarded mark in plaintext", func(t *testing.T) {
		rawExchange(t, reps[0].addr, "", append(proxyV2Header(0x21, "10.1.2.3:5555", mark), cancelReq...))
		if c := cancelCounts(t, reps[:1]); c["refused"] != 1 {
			t.Errorf("replica 0 counters %v, want refused 1", c)
		}
		notDelivered(t)
	})
	t.Run("startup message on the peer channel", func(t *testing.T) {
		// A peer certificate proves a replica, not a client: the peer
		// channel carries cancels only, and a StartupMessage on it is
		// closed without an answer, never authenticated or relayed.
		tc := peerChannel(t, 1)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("peer channel handshake with a peer certificate: %v", err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "pgcertgate-peer" {
			t.Fatalf("ALPN %q, want the peer channel", p)
		}
		startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": "postgres"}}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tc.Write(startup); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(tc)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the replica left the peer channel open after a StartupMessage; read %q", got)
		}
		if len(got) != 0 {
			t.Fatalf("the replica answered a StartupMessage on the peer channel with %q, want nothing", got)
		}
		fleetWait(t, 10*time.Second, "the refusal's audit event", func() bool {
			return strings.Contains(reps[0].log.String(), `"reason":"peer_channel_startup"`)
		})
		rows, err := w.superuserRows(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice'")
		if err != nil || string(rows[0][0]) != "1" {
			t.Fatalf("alice's backends: %v %v, want only the sleeping session's", rows, err)
		}
		notDelivered(t)
	})
	t.Run("forwarder with a peer certificate", func(t *testing.T) {
		rawExchange(t, reps[1].addr, "127.0.0.2", cancelReq)
		_, err := res.ReadAll()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("query ended with %v, want 57014", err)
		}
		if c := cancelCounts(t, reps[:1]); c["delivered"] != 1 {
			t.Fatalf("replica 0 counters %v, want delivered 1", c)
		}
	})
}

// fleetPeerFiles writes a peers' CA and n peer certificates (server and
// client usage) into w.dir; certificate wrong, if in range, comes from
// another CA.
func fleetPeerFiles(t *testing.T, w *world, n, wrong int) (string, [][2]string) {
	t.Helper()
	peerCA, err := testpki.NewRootCA(pkix.Name{CommonName: "pgcertgate peers"})
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := testpki.NewRootCA(pkix.Name{CommonName: "not the peers' CA"})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(w.dir, "peer-ca.crt")
	if err := testpki.WriteFile(caFile, peerCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	files := make([][2]string, n)
	for i := range files {
		ca := peerCA
		if i == wrong {
			ca = otherCA
		}
		leaf, err := ca.NewClient(pkix.Name{CommonName: fmt.Sprintf("pgcertgate-%d", i)}, testpki.WithEKU(x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth))
		if err != nil {
			t.Fatal(err)
		}
		files[i] = [2]string{filepath.Join(w.dir, fmt.Sprintf("peer%d.crt", i)), filepath.Join(w.dir, fmt.Sprintf("peer%d.key", i))}
		if err := leaf.WriteFiles(files[i][0], files[i][1]); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, files
}

// TestPeerChannelWithoutProxyProtocol: replicas reached straight through
// a Kubernetes Service, with proxy_protocol off: the peer channel's
// certificate alone carries a forwarded cancel, without a PROXY header.
func TestPeerChannelWithoutProxyProtocol(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: "local all all trust\nhostssl all alice 127.0.0.0/8 cert\n"})
	w.setup(t, "CREATE ROLE alice LOGIN")
	caFile, files := fleetPeerFiles(t, w, 2, -1)
	reps := startReplicasWith(t, w, 2, func(i int) string {
		return fmt.Sprintf("peer_ssl = \"require\"\npeer_ssl_cert_file = %q\npeer_ssl_key_file = %q\npeer_ssl_ca_file = %q", files[i][0], files[i][1], caFile)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pc, err := viaBalancer(ctx, t, w, reps[0].addr, "127.0.0.3", conn{user: "alice", cert: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	res := pc.Exec(ctx, "SELECT pg_sleep(30)")
	fleetWait(t, 20*time.Second, "pg_sleep to run", func() bool {
		rows, err := w.superuserRows(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
		return err == nil && string(rows[0][0]) == "1"
	})
	cancelReq, err := (&pgproto3.CancelRequest{ProcessID: pc.PID(), SecretKey: pc.SecretKey()}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	rawExchange(t, reps[1].addr, "127.0.0.2", cancelReq)
	_, err = res.ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("query ended with %v, want 57014", err)
	}
	if c := cancelCounts(t, reps); c["delivered"] != 1 || c["forwarded"] != 1 || c["refused"] != 0 {
		t.Fatalf("counters %v, want delivered 1, forwarded 1", c)
	}
}
