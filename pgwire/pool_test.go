package pgwire

import (
	"crypto/sha256"
	"testing"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/hba"
)

// TestReuseKey: a kept backend is keyed by who the client proved to be (its
// certificate, or on a socket its uid when a peer line admitted it) and by
// the line that admitted it, not only by role and parameters.
func TestReuseKey(t *testing.T) {
	cfg := &config.Config{}
	cfg.Backend.Reuse = true
	st := &state{rt: &config.Runtime{Config: cfg}}
	si := &startupInfo{user: "app", database: "app", params: [][2]string{{"application_name", "x"}}}
	line1 := &hba.Entry{File: "pg_hba.conf", Line: 1, Raw: "hostssl all all 127.0.0.1/32 cert map=m"}
	line2 := &hba.Entry{File: "pg_hba.conf", Line: 2, Raw: "host all all 127.0.0.1/32 trust"}
	line2edited := &hba.Entry{File: "pg_hba.conf", Line: 2, Raw: "host all all 127.0.0.1/32 trust "}
	alice := &certauth.Peer{SHA256: sha256.Sum256([]byte("alice's DER"))}
	bob := &certauth.Peer{SHA256: sha256.Sum256([]byte("bob's DER"))}
	line3 := &hba.Entry{File: "pg_hba.conf", Line: 3, Raw: "local all all peer"}
	line4 := &hba.Entry{File: "pg_hba.conf", Line: 4, Raw: "local all all trust"}
	holder := func(leaf *certauth.Peer, local *localPeer) string {
		return (&clientConn{peer: leaf, local: local}).reuseHolder()
	}

	distinct := map[string]string{}
	for name, c := range map[string]struct {
		e     *hba.Entry
		leaf  *certauth.Peer
		local *localPeer
	}{
		"alice on line 1":               {line1, alice, nil},
		"bob on line 1":                 {line1, bob, nil},
		"alice on line 2":               {line2, alice, nil},
		"no certificate on line 2":      {line2, nil, nil},
		"no certificate, line 2 edited": {line2edited, nil, nil},
		"uid 1000 by peer on line 3":    {line3, nil, &localPeer{uid: 1000, peer: true}},
		"uid 1001 by peer on line 3":    {line3, nil, &localPeer{uid: 1001, peer: true}},
		"uid 1000 by trust on line 4":   {line4, nil, &localPeer{uid: 1000}},
	} {
		k := reuseKey(st, si, c.e, holder(c.leaf, c.local))
		if k == "" {
			t.Fatalf("%s: empty key with reuse on", name)
		}
		if other, dup := distinct[k]; dup {
			t.Errorf("%s shares a key with %s", name, other)
		}
		distinct[k] = name
	}
	if a, b := reuseKey(st, si, line1, holder(alice, nil)), reuseKey(st, si, line1, holder(&certauth.Peer{SHA256: sha256.Sum256([]byte("alice's DER"))}, nil)); a != b {
		t.Errorf("the same certificate gave two keys:\n%s\n%s", a, b)
	}
	// trust proves nothing of the socket's peer: its sessions are keyed
	// by the line alone.
	if a, b := reuseKey(st, si, line4, holder(nil, &localPeer{uid: 1000})), reuseKey(st, si, line4, holder(nil, &localPeer{uid: 1001})); a != b {
		t.Errorf("two trust socket sessions on one line gave two keys:\n%s\n%s", a, b)
	}
	repl := *si
	repl.replication = replicationPhysical
	if k := reuseKey(st, &repl, line1, holder(alice, nil)); k != "" {
		t.Errorf("replication session got reuse key %q", k)
	}
	cfg.Backend.Reuse = false
	if k := reuseKey(st, si, line1, holder(alice, nil)); k != "" {
		t.Errorf("reuse off gave key %q", k)
	}
}
