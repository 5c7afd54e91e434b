package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"
)

// MaxReplicaID is the largest replica_id: the id travels in the top five
// bits of a protocol 3.0 client's 4-byte cancel secret.
const MaxReplicaID = 31

// Cluster is the [cluster] table: this replica's place among pgcertgate
// replicas behind one balancer, so that a CancelRequest the balancer sends
// to the wrong replica still reaches the session's.
type Cluster struct {
	// ReplicaID is this replica's id, 0..31, or "auto": the ordinal at
	// the end of the host name (pgcertgate-2 → 2), as a StatefulSet names
	// its pods. Unset (default) means no cluster: cancel keys carry no
	// replica id and unknown cancels are dropped.
	ReplicaID ReplicaID `toml:"replica_id"`
	// Peers are the other replicas' client ports (host:port). A cancel
	// for a session this replica does not hold goes to each once.
	Peers []string `toml:"peers"`
	// PeersDNS is a name:port resolving to every replica (a headless
	// Service), re-resolved at most every 10s; used instead of Peers.
	PeersDNS string `toml:"peers_dns"`
	// CancelForwardTimeout bounds one forwarded cancel: dial, send, and
	// the peer's close. Default 1s.
	CancelForwardTimeout Duration `toml:"cancel_forward_timeout"`
}

// ReplicaID is replica_id: an integer, or the string "auto".
type ReplicaID struct {
	Set  bool
	Auto bool
	N    int
}

// UnmarshalTOML implements toml.Unmarshaler.
func (r *ReplicaID) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 || x > MaxReplicaID {
			return fmt.Errorf("%d is outside the valid range 0..%d", x, MaxReplicaID)
		}
		*r = ReplicaID{Set: true, N: int(x)}
	case string:
		if x != "auto" {
			return fmt.Errorf("%q (an integer 0..%d, or \"auto\")", x, MaxReplicaID)
		}
		*r = ReplicaID{Set: true, Auto: true}
	default:
		return fmt.Errorf("an integer 0..%d, or \"auto\"", MaxReplicaID)
	}
	return nil
}

// UnmarshalText accepts the same as UnmarshalTOML, as text; it also tells
// the type checker that the key takes more than one TOML type.
func (r *ReplicaID) UnmarshalText(b []byte) error {
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return r.UnmarshalTOML(n)
	}
	return r.UnmarshalTOML(string(b))
}

// hostOrdinal is the StatefulSet pod name's ordinal.
var hostOrdinal = regexp.MustCompile(`-([0-9]+)$`)

// hostname is os.Hostname, replaced in tests.
var hostname = os.Hostname

// ClusterOn reports whether [cluster] names this replica.
func (c *Config) ClusterOn() bool { return c.Cluster.ReplicaID.Set }

// ReplicaIDValue is this replica's id, "auto" resolved (validate has
// checked that it resolves).
func (c *Config) ReplicaIDValue() int { return c.replicaID }

// CancelForwardTimeout is cancel_forward_timeout with its default.
func (c *Config) CancelForwardTimeout() time.Duration {
	if c.Cluster.CancelForwardTimeout.Duration <= 0 {
		return time.Second
	}
	return c.Cluster.CancelForwardTimeout.Duration
}

func (c *Config) validateCluster() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, c.keyError("cluster."+key, format, args...))
	}
	cl := &c.Cluster
	if cl.ReplicaID.Auto {
		h, err := hostname()
		m := hostOrdinal.FindStringSubmatch(h)
		n := -1
		if err == nil && m != nil {
			n, err = strconv.Atoi(m[1])
		}
		switch {
		case err != nil || m == nil:
			bad("replica_id", "auto, but the host name %q ends in no -<ordinal>", h)
		case n > MaxReplicaID:
			bad("replica_id", "auto: the host name's ordinal %d is outside 0..%d", n, MaxReplicaID)
		default:
			c.replicaID = n
		}
	} else {
		c.replicaID = cl.ReplicaID.N
	}
	if len(cl.Peers) > 0 && cl.PeersDNS != "" {
		bad("peers_dns", "set together with peers: use one")
	}
	for _, p := range cl.Peers {
		if err := checkHostPort(p); err != nil {
			bad("peers", "%q: %v", p, err)
		}
	}
	if cl.PeersDNS != "" {
		if err := checkHostPort(cl.PeersDNS); err != nil {
			bad("peers_dns", "%q: %v", cl.PeersDNS, err)
		}
	}
	if (len(cl.Peers) > 0 || cl.PeersDNS != "") && !cl.ReplicaID.Set {
		bad("replica_id", "required with peers or peers_dns")
	}
	// A forwarded cancel arrives with a PROXY header, which a peer
	// accepts only with proxy_protocol on and this replica trusted.
	if (len(cl.Peers) > 0 || cl.PeersDNS != "") && !c.ProxyProtocolOn() {
		bad("peers", "forwarded cancels carry a PROXY header: set proxy_protocol = \"on\", with the peers in proxy_protocol_trusted")
	}
	if cl.CancelForwardTimeout.Duration < 0 {
		bad("cancel_forward_timeout", "must not be negative")
	}
	return errs
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not host:port")
	}
	if host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is outside the valid range 1..65535", port)
	}
	return nil
}
