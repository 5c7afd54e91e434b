package authz_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/identmap"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestDecisionKeepsBoundedNames: a certificate with 40 SAN URIs of 3 KB
// each, none of which the map accepts. The audit attributes list 16 of
// them, each cut to LogTextMax bytes plus its SHA-256, and count the rest;
// the server-log detail (PostgreSQL's "no match in usermap", which names
// the identity) is cut the same way.
func TestDecisionKeepsBoundedNames(t *testing.T) {
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "root"})
	if err != nil {
		t.Fatal(err)
	}
	var uris []*url.URL
	var names []string
	for i := range 40 {
		name := fmt.Sprintf("spiffe://x/%02d/%s", i, strings.Repeat("a", 3000))
		u, err := url.Parse(name)
		if err != nil {
			t.Fatal(err)
		}
		uris, names = append(uris, u), append(names, name)
	}
	leaf, err := root.NewClient(pkix.Name{CommonName: "many"}, testpki.WithURISANs(uris...))
	if err != nil {
		t.Fatal(err)
	}
	peer := certauth.NewPeer([]*x509.Certificate{leaf.Cert})
	peer.VerifiedBy([]*x509.Certificate{leaf.Cert, root.Cert})

	files := fstest.MapFS{
		"pg_hba.conf":   {Data: []byte("hostssl all all 127.0.0.1/32 cert clientname=SAN-URI map=s\n")},
		"pg_ident.conf": {Data: []byte(`s "/^spiffe://x/[0-9]+/(a)a*$" \1` + "\n")},
	}
	opts := authfile.ReadOptions{FS: authfile.NewFS(files)}
	conf, err := hba.Load("pg_hba.conf", opts)
	if err != nil {
		t.Fatal(err)
	}
	m, err := identmap.Load("pg_ident.conf", opts)
	if err != nil {
		t.Fatal(err)
	}
	snap := &authz.Snapshot{HBA: conf, Ident: m, CAConfigured: true}
	req := &authz.Request{Addr: netip.MustParseAddr("127.0.0.1"), SSL: true, Peer: peer, User: "b", Database: "postgres"}
	d, err := authz.Authorize(context.Background(), snap, req, false)
	e, ok := errors.AsType[*pgerr.Error](err)
	if !ok || e.Reason != "ident_no_match" {
		t.Fatalf("Authorize: %v", err)
	}

	var ids []string
	omitted := int64(-1)
	for _, a := range d.Attrs() {
		switch a.Key {
		case "cert_identity":
			ids = append(ids, a.Value.String())
		case "cert_identities_omitted":
			if a.Value.Kind() != slog.KindInt64 {
				t.Fatalf("cert_identities_omitted is %v", a.Value.Kind())
			}
			omitted = a.Value.Int64()
		}
	}
	if len(ids) != certauth.LogListMax || omitted != int64(len(names)-certauth.LogListMax) {
		t.Errorf("%d identities listed, %d omitted; want %d and %d", len(ids), omitted, certauth.LogListMax, len(names)-certauth.LogListMax)
	}
	for i, id := range ids {
		if id != certauth.LogText(names[i]) {
			t.Errorf("identity %d is not cut as LogText cuts it: %.60q…", i, id)
		}
	}
	last := names[len(names)-1]
	if strings.Contains(e.LogDetail, last) || !strings.Contains(e.LogDetail, certauth.LogText(last)) {
		t.Errorf("the log detail does not cut the identity: %d bytes, %.120q…", len(e.LogDetail), e.LogDetail)
	}
	if !strings.HasPrefix(e.LogDetail, `no match in usermap "s" for user "b" authenticated as "spiffe://x/39/aaa`) {
		t.Errorf("log detail %.120q…", e.LogDetail)
	}
}
