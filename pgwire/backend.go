package pgwire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
)

// session is an authenticated client joined to its backend connection.
type session struct {
	backend net.Conn
	cancel  *cancelTarget
	// params are the backend's ParameterStatus values, replayed to the
	// next client when the backend is reused.
	params map[string]string
	// reuseKey is where the backend goes when the session ends cleanly;
	// "" means it is closed.
	reuseKey    string
	idleTimeout time.Duration
	// created is when the backend connection was opened; maxLifetime
	// bounds a kept backend's age (reuse_max_lifetime).
	created     time.Time
	maxLifetime time.Duration
	// greeting is what the client gets when the session starts.
	greeting []byte
	// meta is the session's identity for the ledger and the admin API.
	meta sessionMeta
}

// connectBackend opens the backend connection as the client's user and
// database, then hands the client the backend's greeting with the proxy's
// own cancel key.
func (c *clientConn) connectBackend(ctx context.Context, si *startupInfo, entry *hba.Entry) (*session, error) {
	if c.state.rt.Config.Backend.PassClientIdentity {
		// Part of the startup parameters, so also part of the reuse key:
		// a kept backend carries them, and only the same identity from
		// the same address may take it.
		si.params = append(si.params, identityParams(c, entry)...)
	}
	key := reuseKey(c.state, si, entry, c.reuseHolder())
	if key != "" {
		if s := c.srv.pool.acquire(key); s != nil {
			// A backend kept from an earlier session of the same
			// certificate, hba line, user, database and parameters,
			// already reset.
			c.note(slog.Bool("backend_reused", true))
			s.meta.reused = true
			return c.greet(s, nil)
		}
	}
	cfg := c.state.rt.Backend.Copy()
	cfg.User = si.user
	cfg.Database = si.database
	// The client's startup parameters, and only those: the proxy's own
	// PGOPTIONS/PGAPPNAME/PGTZ must never reach a client session.
	cfg.RuntimeParams = make(map[string]string, len(si.params))
	for _, p := range si.params {
		cfg.RuntimeParams[p[0]] = p[1]
	}
	// Notices the backend sends while it starts (e.g. a login event
	// trigger's NOTICE) are replayed to the client after AuthenticationOk.
	var notices []*pgconn.Notice
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n) }

	connectCtx, cancel := context.WithTimeout(ctx, c.state.rt.Config.Backend.ConnectTimeout.Duration)
	defer cancel()
	began := time.Now()
	pgc, err := pgconn.ConnectConfig(connectCtx, cfg)
	c.srv.metrics.backendConnect(time.Since(began))
	if err != nil {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
			// The backend's own refusal (unknown database, NOLOGIN role,
			// too many connections) reaches the client unchanged.
			return nil, refusedByBackend(pgErr)
		}
		return nil, pgerr.BackendUnavailable("backend_unavailable", err)
	}
	// pgconn's Hijack contract: SyncConn first, so that no read-ahead
	// and no background reader (pgconn starts one when a write stalls
	// past 15 ms) can take the backend's bytes from the relay. When
	// pgconn is idle, as after a completed startup, it returns at once.
	if err := pgc.SyncConn(connectCtx); err != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		pgc.Close(closeCtx)
		cancel()
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
			return nil, refusedByBackend(pgErr)
		}
		return nil, pgerr.BackendUnavailable("backend_unavailable", err)
	}
	hj, err := pgc.Hijack()
	if err != nil {
		pgc.Close(context.Background())
		return nil, fmt.Errorf("hijacking backend connection: %w", err)
	}
	if hj.TxStatus != 'I' {
		hj.Conn.Close()
		return nil, fmt.Errorf("backend greeted with transaction status %q", hj.TxStatus)
	}
	s := &session{
		backend: hj.Conn,
		cancel: &cancelTarget{
			pid:        hj.PID,
			backendKey: hj.SecretKey,
			network:    hj.Conn.RemoteAddr().Network(),
			address:    hj.Conn.RemoteAddr().String(),
		},
		params:      hj.ParameterStatuses,
		created:     began,
		reuseKey:    key,
		idleTimeout: c.state.rt.Config.Backend.ReuseIdleTimeout.Duration,
	}
	return c.greet(s, notices)
}

// greet hands the client the backend's greeting with the proxy's own
// cancel key: AuthenticationOk, the startup notices, every ParameterStatus,
// BackendKeyData with the backend's real pid (clients use it for
// pg_backend_pid() and NOTIFY self-filtering) and ReadyForQuery.
func (c *clientConn) greet(s *session, notices []*pgconn.Notice) (*session, error) {
	// PostgreSQL refuses some certificate names only here, after the
	// backend has checked the database and role: see authz.AfterBackend.
	if err := authz.AfterBackend(c.peer); err != nil {
		s.backend.Close()
		return nil, err
	}
	// The client's cancel key is the proxy's own (crypto/rand); the
	// backend's key never leaves the proxy. 4 bytes for protocol 3.0 and
	// 32 bytes for 3.2, as PostgreSQL 18 makes them.
	keyLen := 4
	if c.minor >= 2 {
		keyLen = 32
	}
	key, err := c.newCancelKey(keyLen)
	if err != nil {
		s.backend.Close()
		return nil, err
	}
	s.cancel = &cancelTarget{
		pid:        s.cancel.pid,
		clientKey:  key,
		backendKey: s.cancel.backendKey,
		network:    s.cancel.network,
		address:    s.cancel.address,
	}

	buf, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	for _, n := range notices {
		buf, _ = (*pgproto3.NoticeResponse)(noticeToResponse(n)).Encode(buf)
	}
	for _, name := range slices.Sorted(maps.Keys(s.params)) {
		buf, _ = (&pgproto3.ParameterStatus{Name: name, Value: s.params[name]}).Encode(buf)
	}
	buf, _ = (&pgproto3.BackendKeyData{ProcessID: s.cancel.pid, SecretKey: key}).Encode(buf)
	buf, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(buf)
	// Sent by runSession, after the auth event is logged: a client that
	// has its ReadyForQuery can rely on the event being written.
	s.greeting = buf
	c.note(slog.Uint64("backend_pid", uint64(s.cancel.pid)))
	return s, nil
}

func noticeToResponse(n *pgconn.Notice) *pgproto3.ErrorResponse {
	return pgErrorResponse((*pgconn.PgError)(n))
}
