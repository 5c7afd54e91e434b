package pgwire

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// membershipQuery mirrors is_member_of_role_nosuper: a role is a member of
// itself and, through pg_auth_members, of every role it was granted
// directly or indirectly. Superuser status does not count, so
// pg_has_role (which lets superusers in) must not be used.
const membershipQuery = `
WITH RECURSIVE m(roleid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1
  UNION
    SELECT a.roleid FROM pg_catalog.pg_auth_members a JOIN m ON a.member = m.roleid
)
SELECT 1 FROM m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid WHERE r.rolname = $2`

// catalogPoolSize bounds the catalog connections: membership lookups are
// rare (only +role, samerole, samegroup and ident +group lines need them).
const catalogPoolSize = 4

// catalogRoles answers role membership from the backend's catalog, always
// as the configured catalog_user. It never connects as the client's
// requested user: an unauthenticated client must not be able to open a
// backend session as anyone.
type catalogRoles struct {
	cfg   *pgconn.Config
	slots chan struct{}
	mu    sync.Mutex
	idle  []*pgconn.PgConn
	done  bool
}

func newCatalogRoles(backend *pgconn.Config, user string) *catalogRoles {
	cfg := backend.Copy()
	cfg.User = user
	// pg_auth_members is a shared catalog: any database will do, and
	// "postgres" exists in every stock cluster.
	cfg.Database = "postgres"
	cfg.RuntimeParams = map[string]string{"application_name": "pgcertgate catalog"}
	return &catalogRoles{cfg: cfg, slots: make(chan struct{}, catalogPoolSize)}
}

// IsMember implements hba.RoleChecker.
func (r *catalogRoles) IsMember(ctx context.Context, user, role string) (bool, error) {
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-r.slots }()
	// A pooled connection may have died while idle (idle_session_timeout,
	// a backend restart) without looking closed: on a connection-level
	// failure, try once more on a fresh one.
	for attempt := 0; ; attempt++ {
		conn, err := r.get(ctx, attempt > 0)
		if err != nil {
			return false, fmt.Errorf("catalog connection as %q: %w", r.cfg.User, err)
		}
		res := conn.ExecParams(ctx, membershipQuery, [][]byte{[]byte(user), []byte(role)}, nil, nil, nil).Read()
		if res.Err == nil {
			r.put(conn)
			return len(res.Rows) > 0, nil
		}
		conn.Close(context.Background())
		if _, isPg := errors.AsType[*pgconn.PgError](res.Err); isPg || attempt > 0 || ctx.Err() != nil {
			return false, fmt.Errorf("role membership query: %w", res.Err)
		}
	}
}

func (r *catalogRoles) get(ctx context.Context, fresh bool) (*pgconn.PgConn, error) {
	if fresh {
		return pgconn.ConnectConfig(ctx, r.cfg)
	}
	r.mu.Lock()
	if n := len(r.idle); n > 0 {
		c := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		if !c.IsClosed() {
			return c, nil
		}
	} else {
		r.mu.Unlock()
	}
	return pgconn.ConnectConfig(ctx, r.cfg)
}

func (r *catalogRoles) put(c *pgconn.PgConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		c.Close(context.Background())
		return
	}
	r.idle = append(r.idle, c)
}

func (r *catalogRoles) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = true
	var errs []error
	for _, c := range r.idle {
		errs = append(errs, c.Close(context.Background()))
	}
	r.idle = nil
	_ = errors.Join(errs...)
}
