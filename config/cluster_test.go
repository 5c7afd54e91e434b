package config

import (
	"strings"
	"testing"
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
