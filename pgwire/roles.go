package pgwire

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/authz"
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

// catalogRetryAfter is how long a failed catalog connect is remembered.
// Until it passes, lookups fail at once: a misconfigured catalog_user or
// a backend that is down must not turn every client attempt into one more
// backend login (and one more FATAL in the server log).
const catalogRetryAfter = 5 * time.Second

// catalogRoles answers role membership from the backend's catalog, always
// as the configured catalog_user. It never connects as the client's
// requested user: an unauthenticated client must not be able to open a
// backend session as anyone.
type catalogRoles struct {
	cfg        *pgconn.Config
	slots      chan struct{}
	retryAfter time.Duration
	now        func() time.Time // time.Now; tests step it
	// connect opens one catalog connection (pgconn.ConnectConfig).
	connect func(context.Context, *pgconn.Config) (*pgconn.PgConn, error)

	mu   sync.Mutex
	idle []*pgconn.PgConn
	done bool
	// connectErr is the last failed connect, served instead of a new
	// one until retryAt.
	connectErr error
	retryAt    time.Time
}

func newCatalogRoles(backend *pgconn.Config, user string) *catalogRoles {
	cfg := backend.Copy()
	cfg.User = user
	// pg_auth_members is a shared catalog: any database will do, and
	// "postgres" exists in every stock cluster.
	cfg.Database = "postgres"
	cfg.RuntimeParams = map[string]string{"application_name": "pgcertgate catalog"}
	return &catalogRoles{
		cfg:        cfg,
		slots:      make(chan struct{}, catalogPoolSize),
		retryAfter: catalogRetryAfter,
		now:        time.Now,
		connect:    pgconn.ConnectConfig,
	}
}

// IsMember implements hba.RoleChecker. Its errors are *authz.CatalogError, or
// the context's error once the authentication deadline has passed.
func (r *catalogRoles) IsMember(ctx context.Context, user, role string) (bool, error) {
	// PostgreSQL looks the startup packet's bytes up as they are
	// (get_role_oid in is_member), so a name that no role can have is
	// simply not a member. In a UTF-8 catalog no role name is invalid
	// UTF-8, and the query could not even carry one: the backend would
	// refuse the parameter with 22021. (Only a cluster whose catalog is
	// not UTF-8 could have such a role; its members are not looked up.)
	if !utf8.ValidString(user) || !utf8.ValidString(role) {
		return false, nil
	}
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-r.slots }()
	// A pooled connection may have died while idle (idle_session_timeout,
	// a backend restart) without looking closed: on a connection-level
	// failure of a pooled connection, try once more on a fresh one.
	for attempt := 0; ; attempt++ {
		conn, pooled, err := r.get(ctx, attempt > 0)
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, &authz.CatalogError{Op: "connect", Err: err}
		}
		res := conn.ExecParams(ctx, membershipQuery, [][]byte{[]byte(user), []byte(role)}, nil, nil, nil).Read()
		if res.Err == nil {
			r.put(conn)
			return len(res.Rows) > 0, nil
		}
		if statementLevel(conn, res.Err) {
			// The query failed (permission denied, statement_timeout)
			// but the session is idle and sound: keep it, so that a
			// failing lookup does not cost a backend login per attempt.
			r.put(conn)
			return false, &authz.CatalogError{Op: "query", Err: res.Err}
		}
		conn.Close(context.Background())
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if !pooled || attempt > 0 {
			return false, &authz.CatalogError{Op: "query", Err: res.Err}
		}
	}
}

// statementLevel reports whether err failed only the statement and left
// conn usable: a backend ERROR, after which the backend is back at
// ReadyForQuery outside a transaction. A FATAL (pgconn closes the
// connection then) or any I/O failure is connection-level.
func statementLevel(conn *pgconn.PgConn, err error) bool {
	_, isPg := errors.AsType[*pgconn.PgError](err)
	return isPg && !conn.IsClosed() && !conn.IsBusy() && conn.TxStatus() == 'I'
}

// get returns an idle pooled connection (pooled is true) or a new one.
// fresh skips the pool.
func (r *catalogRoles) get(ctx context.Context, fresh bool) (conn *pgconn.PgConn, pooled bool, err error) {
	r.mu.Lock()
	for !fresh && len(r.idle) > 0 {
		c := r.idle[len(r.idle)-1]
		r.idle = r.idle[:len(r.idle)-1]
		if !c.IsClosed() {
			r.mu.Unlock()
			return c, true, nil
		}
	}
	if r.connectErr != nil && r.now().Before(r.retryAt) {
		err := r.connectErr
		r.mu.Unlock()
		return nil, false, fmt.Errorf("not retried within %s of the last failure: %w", r.retryAfter, err)
	}
	r.mu.Unlock()

	c, err := r.connect(ctx, r.cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		r.connectErr = nil
	case ctx.Err() == nil:
		// The client's own deadline is not the catalog's failure; a
		// refusal, an unreachable backend or connect_timeout is.
		r.connectErr, r.retryAt = err, r.now().Add(r.retryAfter)
	}
	return c, false, err
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
