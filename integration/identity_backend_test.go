package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestClientIdentityAtBackend: with pass_client_identity, the backend
// session sees who connected, from where, through which pg_hba.conf line;
// a client can never supply those settings itself.
func TestClientIdentityAtBackend(t *testing.T) {
	w := newWorld(t, newPKI(t), worldOptions{hba: sessionHBA, ident: sessionIdent, backendTOML: "pass_client_identity = true\nreuse = true"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE DATABASE app")
	// The identity is the full DN even when pg_hba.conf maps the CN.
	pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice-dn"})
	if err != nil {
		t.Fatal(err)
	}
	res := pc.ExecParams(ctx, "select current_setting('pgcertgate.client_addr'), current_setting('pgcertgate.identity'), current_setting('pgcertgate.hba_line')", nil, nil, nil, nil).Read()
	pc.Close(ctx)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := []string{"127.0.0.1", "CN=alice,OU=Engineering+OU=Testing,O=PGDG", filepath.Join(w.dir, "pg_hba.conf") + ":1"}
	for i, v := range res.Rows[0] {
		if string(v) != want[i] {
			t.Errorf("setting %d = %q, want %q", i, v, want[i])
		}
	}

	for _, extra := range []string{
		"options='-c pgcertgate.identity=CN=admin'",
		"options='--PgCertGate.identity=CN=admin'",
		"pgcertgate.identity=CN=admin",
		"PGCERTGATE.client_addr=10.0.0.1",
	} {
		got := w.attempt(proxy, conn{user: "alice", database: "app", cert: "alice", extra: extra})
		if got.ok || got.code != "42501" {
			t.Errorf("forged %s: %s, want FATAL 42501", extra, got)
		}
	}
}
