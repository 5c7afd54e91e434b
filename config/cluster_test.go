package config

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

func TestClusterKeys(t *testing.T) {
	base := "hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\nproxy_protocol = \"on\"\nproxy_protocol_trusted = [\"10.0.0.0/8\"]\n[backend]\ndsn = \"host=/tmp\"\n[cluster]\n"
	defer func(h func() (string, error)) { hostname = h }(hostname)
	hostname = func() (string, error) { return "pgcertgate-2", nil }
	for _, tc := range []struct {
		name, toml string
		base       string // replaces base when set
		err        string
		id         int
	}{
		{name: "integer", toml: "replica_id = 7\npeers = [\"10.0.0.2:5432\"]", id: 7},
		{name: "auto", toml: "replica_id = \"auto\"\npeers_dns = \"pgcertgate-peers:5432\"", id: 2},
		{name: "out of range", toml: "replica_id = 32", err: "cluster.replica_id"},
		{name: "negative", toml: "replica_id = -1", err: "cluster.replica_id"},
		{name: "other string", toml: "replica_id = \"first\"", err: "cluster.replica_id"},
		{name: "peers without id", toml: "peers = [\"10.0.0.2:5432\"]", err: "cluster.replica_id: required with peers or peers_dns"},
		{name: "both peer kinds", toml: "replica_id = 1\npeers = [\"10.0.0.2:5432\"]\npeers_dns = \"p:5432\"", err: "cluster.peers_dns: set together with peers"},
		{name: "peer without port", toml: "replica_id = 1\npeers = [\"10.0.0.2\"]", err: `cluster.peers: "10.0.0.2": not host:port`},
		{name: "bad dns port", toml: "replica_id = 1\npeers_dns = \"p:0\"", err: `cluster.peers_dns: "p:0": port "0"`},
		{name: "peer_ssl require", toml: "replica_id = 1\npeers = [\"10.0.0.2:5432\"]\npeer_ssl = \"require\"\npeer_ssl_cert_file = \"p.crt\"\npeer_ssl_key_file = \"p.key\"\npeer_ssl_ca_file = \"ca.crt\"", id: 1},
		{name: "peer_ssl other value", toml: "replica_id = 1\npeer_ssl = \"on\"", err: `t.toml:10: cluster.peer_ssl: invalid value "on" (off or require)`},
		{name: "peer_ssl require without files", toml: "replica_id = 1\npeer_ssl = \"require\"\npeer_ssl_cert_file = \"p.crt\"", err: `cluster.peer_ssl: "require" needs peer_ssl_key_file`},
		{name: "peer_ssl require without peers", toml: "replica_id = 1\npeer_ssl = \"require\"\npeer_ssl_cert_file = \"p.crt\"\npeer_ssl_key_file = \"p.key\"\npeer_ssl_ca_file = \"ca.crt\"", err: `t.toml:10: cluster.peer_ssl: "require" needs replica_id and peers or peers_dns`},
		{name: "peer_ssl require without replica_id", base: "hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\n[backend]\ndsn = \"host=/tmp\"\n[cluster]\n", toml: "peer_ssl = \"require\"\npeer_ssl_cert_file = \"p.crt\"\npeer_ssl_key_file = \"p.key\"\npeer_ssl_ca_file = \"ca.crt\"", err: `t.toml:7: cluster.peer_ssl: "require" needs replica_id and peers or peers_dns`},
		{name: "peer files without require", toml: "replica_id = 1\npeer_ssl_ca_file = \"ca.crt\"", err: `t.toml:10: cluster.peer_ssl_ca_file: set, but peer_ssl is not "require"`},
		{name: "peers need proxy_protocol", base: "hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\n[backend]\ndsn = \"host=/tmp\"\n[cluster]\n",
			toml: "replica_id = 1\npeers = [\"10.0.0.2:5432\"]", err: "cluster.peers: forwarded cancels carry a PROXY header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := base
			if tc.base != "" {
				b = tc.base
			}
			c, err := Parse("t.toml", []byte(b+tc.toml+"\n"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.ClusterOn() || c.ReplicaIDValue() != tc.id {
				t.Fatalf("cluster on %v, id %d; want id %d", c.ClusterOn(), c.ReplicaIDValue(), tc.id)
			}
		})
	}
	t.Run("auto without an ordinal", func(t *testing.T) {
		hostname = func() (string, error) { return "db-gateway", nil }
		_, err := Parse("t.toml", []byte(base+"replica_id = \"auto\"\n"))
		if err == nil || !strings.Contains(err.Error(), `ends in no -<ordinal>`) {
			t.Fatalf("error %v", err)
		}
	})
}

// TestDrainDelay: drain_delay is a duration, never negative, reported
// with its file:line.
func TestDrainDelay(t *testing.T) {
	base := "hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\n"
	tail := "\n[backend]\ndsn = \"host=/tmp\"\n"
	c, err := Parse("t.toml", []byte(base+"drain_delay = \"7s\""+tail))
	if err != nil || c.DrainDelay.Duration != 7*time.Second {
		t.Fatalf("drain_delay %v, err %v", c.DrainDelay, err)
	}
	if c, err := Parse("t.toml", []byte(base+tail)); err != nil || c.DrainDelay.Duration != 0 {
		t.Fatalf("default drain_delay %v, err %v", c.DrainDelay, err)
	}
	for _, tc := range []struct{ val, want string }{
		{`"-1s"`, `t.toml:4: drain_delay: negative duration "-1s"`},
		{`"soon"`, "t.toml:4: drain_delay"},
	} {
		_, err := Parse("t.toml", []byte(base+"drain_delay = "+tc.val+tail))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("drain_delay = %s: error %v, want %q", tc.val, err, tc.want)
		}
	}
}

// TestPeerTLSFiles: peer_ssl = "require" loads its files at load time:
// the CA file must hold certificates and nothing that does not parse or
// would not apply, and the replica's own certificate must verify against
// it as client and as server. Every error names its key and line.
func TestPeerTLSFiles(t *testing.T) {
	dir := t.TempDir()
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "peers root"})
	if err != nil {
		t.Fatal(err)
	}
	// A cert-manager CA Issuer's secret holds the issuing CA, often an
	// intermediate: it must do as the anchor.
	issuer, err := root.NewIntermediate(pkix.Name{CommonName: "peers issuer"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.NewRootCA(pkix.Name{CommonName: "not the peers' CA"})
	if err != nil {
		t.Fatal(err)
	}
	both := testpki.WithEKU(x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth)
	leaf := func(ca *testpki.CA, opts ...testpki.Option) *testpki.Leaf {
		l, err := ca.NewClient(pkix.Name{CommonName: "pgcertgate-1"}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	crl, err := root.CRL(nil, time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	broken := []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
	garbage := []byte("-----BEGIN CERTIFICATE-----\nMIIBzjCCAXWgAwIBAgIBAjAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpwZWVycyBy\n-----END CERTIFICATE-----\n")
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		ca   []byte        // peer_ssl_ca_file
		leaf *testpki.Leaf // peer_ssl_cert_file and peer_ssl_key_file
		want string        // an error containing it, or none
	}{
		{name: "root, both usages", ca: root.CertPEM, leaf: leaf(root, both)},
		{name: "no extended key usage", ca: root.CertPEM, leaf: leaf(root, testpki.WithEKU())},
		{name: "intermediate as anchor", ca: issuer.CertPEM, leaf: leaf(issuer, both)},
		{name: "root anchors a chain file", ca: root.CertPEM, leaf: leaf(issuer, both)},
		{name: "text around the blocks", ca: cat([]byte("# peers\n"), other.CertPEM, []byte("subject=...\n"), root.CertPEM), leaf: leaf(root, both)},
		{name: "client usage only", ca: root.CertPEM, leaf: leaf(root),
			want: `t.toml:12: cluster.peer_ssl_cert_file: peer certificate file "` + dir + `/peer.crt" lacks the server auth extended key usage`},
		{name: "server usage only", ca: root.CertPEM, leaf: leaf(root, testpki.WithEKU(x509.ExtKeyUsageServerAuth)),
			want: `t.toml:12: cluster.peer_ssl_cert_file: peer certificate file "` + dir + `/peer.crt" lacks the client auth extended key usage`},
		{name: "another CA", ca: root.CertPEM, leaf: leaf(other, both),
			want: `t.toml:12: cluster.peer_ssl_cert_file: peer certificate file "` + dir + `/peer.crt" does not verify against peer_ssl_ca_file: x509: certificate signed by unknown authority`},
		{name: "expired", ca: root.CertPEM, leaf: leaf(root, both, testpki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))),
			want: `does not verify against peer_ssl_ca_file: x509: certificate has expired`},
		{name: "no PEM", ca: []byte("no PEM here\n"), leaf: leaf(root, both),
			want: `t.toml:14: cluster.peer_ssl_ca_file: could not load root certificate file "` + dir + `/ca.crt": no certificate found`},
		{name: "only a CRL", ca: crl, leaf: leaf(root, both),
			want: `t.toml:14: cluster.peer_ssl_ca_file: could not load root certificate file "` + dir + `/ca.crt": X509 CRL at line 1: the peer channel checks no CRL`},
		{name: "a CRL after the CA", ca: cat(root.CertPEM, crl), leaf: leaf(root, both),
			want: `ca.crt": X509 CRL at line 11`},
		{name: "undecodable block after a good one", ca: cat(root.CertPEM, broken), leaf: leaf(root, both),
			want: `t.toml:14: cluster.peer_ssl_ca_file: could not load root certificate file "` + dir + `/ca.crt": malformed PEM block at line 11`},
		{name: "undecodable block before a good one", ca: cat(broken, root.CertPEM), leaf: leaf(root, both),
			want: `ca.crt": malformed PEM block at line 1`},
		{name: "certificate that does not parse", ca: cat(root.CertPEM, garbage), leaf: leaf(root, both),
			want: `ca.crt": certificate at line 11: x509: malformed certificate`},
		{name: "OpenSSL trust settings", ca: cat(root.CertPEM, bytes.Replace(root.CertPEM, []byte("CERTIFICATE"), []byte("TRUSTED CERTIFICATE"), 2)), leaf: leaf(root, both),
			want: `ca.crt": TRUSTED CERTIFICATE blocks (OpenSSL trust settings) are not supported (line 11)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.leaf.WriteFiles(filepath.Join(dir, "peer.crt"), filepath.Join(dir, "peer.key")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "ca.crt"), tc.ca, 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Parse(filepath.Join(dir, "t.toml"), []byte("hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\nproxy_protocol = \"on\"\nproxy_protocol_trusted = [\"10.0.0.0/8\"]\n[backend]\ndsn = \"host=/tmp\"\n[cluster]\nreplica_id = 1\npeers = [\"10.0.0.2:5432\"]\npeer_ssl = \"require\"\npeer_ssl_cert_file = \"peer.crt\"\npeer_ssl_key_file = \"peer.key\"\npeer_ssl_ca_file = \"ca.crt\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			pt, errs := c.loadPeerTLS()
			got := errors.Join(errs...)
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("error %v", got)
			case tc.want == "" && (pt == nil || pt.CAs == nil):
				t.Fatalf("loaded %+v", pt)
			case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
				t.Fatalf("error %v\nwant one containing %q", got, tc.want)
			}
		})
	}
	t.Run("missing files", func(t *testing.T) {
		c, err := Parse(filepath.Join(dir, "t.toml"), []byte("hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\nproxy_protocol = \"on\"\nproxy_protocol_trusted = [\"10.0.0.0/8\"]\n[backend]\ndsn = \"host=/tmp\"\n[cluster]\nreplica_id = 1\npeers = [\"10.0.0.2:5432\"]\npeer_ssl = \"require\"\npeer_ssl_cert_file = \"nope.crt\"\npeer_ssl_key_file = \"nope.key\"\npeer_ssl_ca_file = \"nope-ca.crt\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		_, errs := c.loadPeerTLS()
		got := errors.Join(errs...)
		for _, want := range []string{"t.toml:13: cluster.peer_ssl_key_file: could not access private key file", "t.toml:14: cluster.peer_ssl_ca_file: could not load root certificate file \"" + dir + "/nope-ca.crt\": open "} {
			if got == nil || !strings.Contains(got.Error(), want) {
				t.Errorf("errors:\n%v\nwant one containing %q", got, want)
			}
		}
	})
}

// TestClusterWarnings: check warns of a drain that cannot work.
func TestClusterWarnings(t *testing.T) {
	base := "hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\nproxy_protocol = \"on\"\nproxy_protocol_trusted = [\"10.0.0.0/8\"]\n"
	for _, tc := range []struct{ name, toml, want string }{
		{"cluster without drain_delay", base + "[backend]\ndsn = \"host=/tmp\"\n[admin]\nlisten_address = \":9930\"\n[cluster]\nreplica_id = 1\n", "t.toml:11: cluster.replica_id: drain_delay is 0"},
		{"drain_delay without admin", base + "drain_delay = \"5s\"\n[backend]\ndsn = \"host=/tmp\"\n", "t.toml:6: drain_delay: set without [admin] listen_address"},
		{"both", base + "drain_delay = \"5s\"\n[backend]\ndsn = \"host=/tmp\"\n[admin]\nlisten_address = \":9930\"\n[cluster]\nreplica_id = 1\n", ""},
	} {
		c, err := Parse("t.toml", []byte(tc.toml))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, w := range c.clusterWarnings() {
			got = append(got, w.Error())
		}
		if tc.want == "" && len(got) != 0 || tc.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.want)) {
			t.Errorf("%s: warnings %q, want %q", tc.name, got, tc.want)
		}
	}
}
