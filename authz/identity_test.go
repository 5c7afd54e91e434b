package authz_test

import (
	"context"
	"crypto/x509/pkix"
	"net/netip"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/identmap"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestDecisionIdentity: the Decision names the certificate name the check
// accepted (what the identity ledger records), which is not always the
// first one tried.
func TestDecisionIdentity(t *testing.T) {
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "root"})
	if err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{
		"pg_hba.conf": {Data: []byte(`hostssl all app 127.0.0.1/32 cert clientname=SAN-email map=m
hostssl all alice 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 trust clientcert=verify-ca
`)},
		"pg_ident.conf": {Data: []byte("m second@example.com app\n")},
	}
	opts := authfile.ReadOptions{FS: authfile.NewFS(files)}
	conf, err := hba.Load("pg_hba.conf", opts)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := identmap.Load("pg_ident.conf", opts)
	if err != nil {
		t.Fatal(err)
	}
	snap := &authz.Snapshot{HBA: conf, Ident: ident, CAConfigured: true}
	for _, tc := range []struct {
		user  string
		specs []string
		want  string
	}{
		{"app", []string{"cn:x", "email:first@example.com", "email:second@example.com"}, "second@example.com"},
		{"alice", []string{"cn:alice"}, "alice"},
		// trust clientcert=verify-ca checks no name.
		{"bob", []string{"cn:bob"}, ""},
	} {
		req := &authz.Request{Addr: netip.MustParseAddr("127.0.0.1"), SSL: true, User: tc.user, Database: "db", Peer: peer(t, root, tc.specs)}
		d, err := authz.Authorize(context.Background(), snap, req, false)
		if err != nil {
			t.Fatalf("%s: %v", tc.user, err)
		}
		if d.Identity != tc.want {
			t.Errorf("%s: Identity %q, want %q (tried %q)", tc.user, d.Identity, tc.want, d.Identities)
		}
	}
}
