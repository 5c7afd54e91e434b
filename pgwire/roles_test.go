package pgwire

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
)

// countingConnect wraps pgconn.ConnectConfig (or a failure) and counts the
// catalog logins it was asked for.
type countingConnect struct {
	mu    sync.Mutex
	n     int
	fail  error
	inner func(context.Context, *pgconn.Config) (*pgconn.PgConn, error)
}

func (c *countingConnect) connect(ctx context.Context, cfg *pgconn.Config) (*pgconn.PgConn, error) {
	c.mu.Lock()
	c.n++
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	return c.inner(ctx, cfg)
}

func (c *countingConnect) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func testCatalog(t *testing.T, cfg *pgconn.Config, user string) (*catalogRoles, *countingConnect) {
	t.Helper()
	if cfg == nil {
		cfg = &pgconn.Config{}
	}
	r := newCatalogRoles(cfg, user)
	cc := &countingConnect{inner: pgconn.ConnectConfig}
	r.connect = cc.connect
	t.Cleanup(r.close)
	return r, cc
}

// TestCatalogInvalidUTF8 checks that a name that is not valid UTF-8 is a
// member of nothing and never reaches the catalog: PostgreSQL finds no
// role by that name, and the query could not carry it.
func TestCatalogInvalidUTF8(t *testing.T) {
	r, cc := testCatalog(t, nil, "catalog")
	cc.fail = errors.New("the catalog must not be contacted")
	for _, tc := range []struct{ user, role string }{
		{"\xff\xfe", "grp"},
		{"alice", "\xff"},
		{"caf\xe9", "caf\xe9"},
	} {
		ok, err := r.IsMember(t.Context(), tc.user, tc.role)
		if ok || err != nil {
			t.Errorf("IsMember(%q, %q) = %v, %v; want false, nil", tc.user, tc.role, ok, err)
		}
	}
	if n := cc.count(); n != 0 {
		t.Errorf("%d catalog connects, want 0", n)
	}
}

// TestCatalogConnectFailureIsRemembered checks that a failed catalog
// connect is served from memory for catalogRetryAfter, and retried after.
func TestCatalogConnectFailureIsRemembered(t *testing.T) {
	r, cc := testCatalog(t, nil, "catalog")
	refused := &pgconn.PgError{Severity: "FATAL", Code: "28000", Message: `role "catalog" does not exist`}
	cc.fail = refused
	now := time.Unix(1_700_000_000, 0)
	r.now = func() time.Time { return now }

	lookup := func(wantConnects int) {
		t.Helper()
		_, err := r.IsMember(t.Context(), "alice", "grp")
		ce, ok := errors.AsType[*authz.CatalogError](err)
		if !ok || ce.Op != "connect" || !errors.Is(err, refused) {
			t.Fatalf("IsMember error = %v, want a catalog connect error wrapping the refusal", err)
		}
		if n := cc.count(); n != wantConnects {
			t.Fatalf("after %v: %d connects, want %d", now, n, wantConnects)
		}
	}
	lookup(1)
	for range 100 {
		lookup(1)
	}
	now = now.Add(catalogRetryAfter - time.Millisecond)
	lookup(1)
	now = now.Add(time.Millisecond)
	lookup(2)
	lookup(2)

	// The client's own deadline is not the catalog's failure: it is
	// not remembered.
	r2, _ := testCatalog(t, nil, "catalog")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r2.connect = func(context.Context, *pgconn.Config) (*pgconn.PgConn, error) {
		cancel()
		return nil, errors.New("connect interrupted")
	}
	if _, err := r2.IsMember(ctx, "alice", "grp"); !errors.Is(err, context.Canceled) {
		t.Fatalf("IsMember with a context done during connect = %v, want context.Canceled", err)
	}
	r2.mu.Lock()
	remembered := r2.connectErr
	r2.mu.Unlock()
	if remembered != nil {
		t.Errorf("a failure under a done context was remembered: %v", remembered)
	}
}

// catalogCluster starts a PostgreSQL with a role pgcg_catalog that may not
// read pg_auth_members, and alice a member of grp, and returns a
// configuration that reaches it over TCP.
func catalogCluster(t *testing.T) (*pgcluster.Cluster, *pgconn.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{
		ListenAddresses: "127.0.0.1",
		HBA:             "local all all trust\nhost all all 127.0.0.1/32 trust\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := c.Log(); err == nil {
				t.Logf("server log:\n%s", log)
			}
		}
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	for _, q := range []string{
		"CREATE ROLE grp", "CREATE ROLE alice LOGIN IN ROLE grp",
		"CREATE ROLE pgcg_catalog LOGIN",
		"REVOKE SELECT ON pg_catalog.pg_auth_members FROM PUBLIC",
	} {
		if err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	cfg, err := c.ConnConfig("postgres", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	// Over TCP, a backend that ended while the connection sat idle is
	// only noticed by reading its FATAL: over a Unix socket the write
	// would already fail.
	cfg.Host = "127.0.0.1"
	return c, cfg
}

// TestCatalogStatementErrorKeepsConnection checks that a failing query
// (here: permission denied) leaves the pooled connection in place, so
// that 100 failed lookups cost one catalog login; and that a connection
// that died while idle is replaced at once.
func TestCatalogStatementErrorKeepsConnection(t *testing.T) {
	c, cfg := catalogCluster(t)
	r, cc := testCatalog(t, cfg, "pgcg_catalog")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	for i := range 100 {
		ok, err := r.IsMember(ctx, "alice", "grp")
		pgErr, isPg := errors.AsType[*pgconn.PgError](err)
		if _, isCat := errors.AsType[*authz.CatalogError](err); ok || !isCat || !isPg || pgErr.Code != "42501" {
			t.Fatalf("lookup %d: %v, %v; want a catalog query error with 42501", i, ok, err)
		}
	}
	if n := cc.count(); n != 1 {
		t.Errorf("100 failed lookups cost %d catalog logins, want 1", n)
	}

	// Once the catalog role may read it, the same connection answers.
	if err := c.Exec(ctx, "GRANT SELECT ON pg_catalog.pg_auth_members TO pgcg_catalog"); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.IsMember(ctx, "alice", "grp"); !ok || err != nil {
		t.Fatalf("IsMember(alice, grp) = %v, %v; want true", ok, err)
	}
	if n := cc.count(); n != 1 {
		t.Errorf("%d catalog logins, want still 1", n)
	}

	// A pooled connection terminated while idle (the backend sends
	// FATAL 57P01 and closes) is connection-level: one fresh login, and
	// the lookup succeeds.
	if err := c.Exec(ctx, "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = 'pgcertgate catalog'"); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.IsMember(ctx, "alice", "grp"); !ok || err != nil {
		t.Fatalf("after termination: IsMember(alice, grp) = %v, %v; want true", ok, err)
	}
	if n := cc.count(); n != 2 {
		t.Errorf("%d catalog logins, want 2", n)
	}
}
