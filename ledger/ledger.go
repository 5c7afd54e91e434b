// Package ledger writes pgcertgate's identity ledger: one row per live
// proxied session, in the backend database itself, that the session can
// read (pgcertgate.identity() and friends) and cannot change.
//
// The rows are written over pgcertgate's own connection, as ledger_user,
// one connection per database, after the backend has accepted the
// client's session and before the client is greeted, so the client's first
// statement already sees its row. Rows are deleted shortly after their
// session ends, and rows whose backend is gone (a proxy that was killed)
// are swept at start and periodically.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Defaults for Options' zero values.
const (
	// DefaultSweepInterval is how often rows whose backend is gone are
	// swept. A restarted proxy sweeps at once, so stale rows of a killed
	// one go within seconds.
	DefaultSweepInterval = 5 * time.Second
	// DefaultDeleteDelay bounds how long a finished session's row waits
	// to be deleted with others in one statement.
	DefaultDeleteDelay = 200 * time.Millisecond
	// DefaultStatementTimeout bounds each statement the writer sends.
	DefaultStatementTimeout = 5 * time.Second
)

// startSlack widens the window in which a recorded backend must have
// started: the writer's own round trip happens after the proxy took its
// measure of elapsed time.
const startSlack = time.Second

// maxDeleteBatch caps the rows one delete statement removes.
const maxDeleteBatch = 1000

// Options configures a Ledger.
type Options struct {
	// Backend is the template for the writer's connections (host, port,
	// TLS, password); User, Database and run-time parameters are set
	// per database. Required.
	Backend *pgconn.Config
	// User is the writer role, [backend] ledger_user. Required.
	User string
	// Log receives sweeps and failures. Nil discards.
	Log *slog.Logger
	// SweepInterval is how often stale rows are swept. Zero means
	// DefaultSweepInterval.
	SweepInterval time.Duration
	// DeleteDelay is the most a finished session's row waits before its
	// delete is sent. Zero means DefaultDeleteDelay.
	DeleteDelay time.Duration
	// StatementTimeout bounds each statement. Zero means
	// DefaultStatementTimeout.
	StatementTimeout time.Duration
}

// Row is what the ledger records for one session.
type Row struct {
	// PID is the backend's process id, from its BackendKeyData.
	PID uint32
	// Role is the role the backend session is logged in as; the writer
	// checks that the pid's backend runs as it.
	Role string
	// Identity is the certificate name pg_hba.conf authenticated; empty
	// (NULL) without a certificate.
	Identity string
	// CertSHA256 is the lowercase hex SHA-256 of the leaf certificate's
	// DER; Subject and Issuer are its names in OpenSSL's RFC 2253 form.
	// All empty (NULL) without a certificate.
	CertSHA256, Subject, Issuer string
	// ClientAddr is the client's address.
	ClientAddr netip.Addr
	// HBALine is the pg_hba.conf file:line that admitted the client.
	HBALine string
	// AuthTime is when the client was authenticated.
	AuthTime time.Time
	// Opened is when the proxy began opening this backend connection:
	// the backend's start, as PostgreSQL records it, must lie between
	// Opened and the time of the write.
	Opened time.Time
}

// Entry is a recorded row, to be released when its session ends.
type Entry struct {
	w        *writer
	pid      uint32
	authTime string
}

// ErrNotInstalled is returned by Record for a database without the
// ledger (or with one that install-sql did not make).
type ErrNotInstalled struct {
	Database string
	Detail   string
}

func (e *ErrNotInstalled) Error() string {
	return fmt.Sprintf("identity ledger is not installed in database %q: %s", e.Database, e.Detail)
}

// ErrBackendMismatch is returned by Record when the pid's backend is not
// the session's: it is gone, in another database, logged in as another
// role, or started outside the window in which the proxy opened it.
var ErrBackendMismatch = errors.New("the backend pid does not match the session's backend (gone, another database or role, or started outside the connect window)")

// Ledger holds one writer per database.
type Ledger struct {
	opts Options

	mu      sync.Mutex
	writers map[string]*writer
	closed  bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// New makes a Ledger; Start begins its sweeps.
func New(o Options) *Ledger {
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.DeleteDelay <= 0 {
		o.DeleteDelay = DefaultDeleteDelay
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = DefaultStatementTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Ledger{opts: o, writers: make(map[string]*writer), stop: make(chan struct{})}
}

// Start sweeps every database the writer can reach once, at once (rows
// left by a proxy that was killed), then every database with a writer
// every SweepInterval.
func (l *Ledger) Start() {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-l.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		l.SweepAll(ctx)
		t := time.NewTicker(l.opts.SweepInterval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.sweepWriters(ctx)
			}
		}
	}()
}

// Close stops the sweeps, sends the deletes still queued and closes every
// writer connection.
func (l *Ledger) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.stop)
	ws := make([]*writer, 0, len(l.writers))
	for _, w := range l.writers {
		ws = append(ws, w)
	}
	l.mu.Unlock()
	l.wg.Wait()
	for _, w := range ws {
		w.close()
	}
}

// Record writes the session's row in database, and returns the Entry to
// release when the session ends. An error means the session must not run:
// *ErrNotInstalled, ErrBackendMismatch, or the writer's own failure.
func (l *Ledger) Record(ctx context.Context, database string, r Row) (*Entry, error) {
	w, err := l.writer(database)
	if err != nil {
		return nil, err
	}
	return w.record(ctx, r)
}

// Release queues the deletion of a finished session's row; it is sent
// within DeleteDelay, together with others. Safe on a nil Entry.
func (e *Entry) Release() {
	if e == nil {
		return
	}
	e.w.queueDelete(e.pid, e.authTime)
}

func (l *Ledger) writer(database string) (*writer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("identity ledger is closed")
	}
	w := l.writers[database]
	if w == nil {
		w = newWriter(l, database)
		l.writers[database] = w
	}
	return w, nil
}

// SweepAll sweeps every database the writer may connect to that has the
// ledger. It lists them over a connection to any one of them.
func (l *Ledger) SweepAll(ctx context.Context) {
	dbs, err := l.databases(ctx)
	if err != nil {
		l.opts.Log.Warn("identity ledger: could not list databases to sweep", slog.String("error", err.Error()))
		l.sweepWriters(ctx)
		return
	}
	for _, db := range dbs {
		w, err := l.writer(db)
		if err != nil || ctx.Err() != nil {
			return
		}
		if _, err := w.sweep(ctx); err != nil {
			if _, ok := errors.AsType[*ErrNotInstalled](err); ok {
				// Not every database need have the ledger: only
				// connections to it are refused.
				l.forget(db, w)
				continue
			}
			l.opts.Log.Warn("identity ledger: sweep failed", slog.String("database", db), slog.String("error", err.Error()))
		}
	}
}

// forget drops an idle writer for a database without the ledger.
func (l *Ledger) forget(db string, w *writer) {
	l.mu.Lock()
	if l.writers[db] == w {
		delete(l.writers, db)
	}
	l.mu.Unlock()
	w.close()
}

func (l *Ledger) sweepWriters(ctx context.Context) {
	l.mu.Lock()
	ws := make([]*writer, 0, len(l.writers))
	for _, w := range l.writers {
		ws = append(ws, w)
	}
	l.mu.Unlock()
	for _, w := range ws {
		if _, err := w.sweep(ctx); err != nil {
			if _, ok := errors.AsType[*ErrNotInstalled](err); ok || ctx.Err() != nil {
				continue
			}
			l.opts.Log.Warn("identity ledger: sweep failed", slog.String("database", w.database), slog.String("error", err.Error()))
		}
	}
}

// databases lists the databases to sweep, asking the catalog over a
// connection to "postgres", or to "template1" when that one is missing.
func (l *Ledger) databases(ctx context.Context) ([]string, error) {
	var errs []error
	for _, db := range []string{"postgres", "template1"} {
		cctx, cancel := context.WithTimeout(ctx, l.opts.StatementTimeout)
		conn, err := pgconn.ConnectConfig(cctx, l.connConfig(db))
		if err != nil {
			cancel()
			errs = append(errs, err)
			continue
		}
		res := conn.ExecParams(cctx, databasesSQL, nil, nil, nil, nil).Read()
		conn.Close(cctx)
		cancel()
		if res.Err != nil {
			return nil, res.Err
		}
		out := make([]string, 0, len(res.Rows))
		for _, r := range res.Rows {
			out = append(out, string(r[0]))
		}
		return out, nil
	}
	return nil, errors.Join(errs...)
}

func (l *Ledger) connConfig(database string) *pgconn.Config {
	cfg := l.opts.Backend.Copy()
	cfg.User = l.opts.User
	cfg.Database = database
	cfg.RuntimeParams = map[string]string{
		"application_name": "pgcertgate ledger",
		// Every statement is bounded here too, so a writer stuck
		// behind a lock never holds its connection for long.
		"statement_timeout": strconv.FormatInt(l.opts.StatementTimeout.Milliseconds(), 10),
		// backend_start comes back as text, "+00" with UTC.
		"TimeZone": "UTC",
	}
	cfg.OnNotice = nil
	cfg.OnNotification = nil
	return cfg
}

// writer is the ledger's one connection to one database. Statements on it
// are serialised; a broken connection is replaced on the next use.
type writer struct {
	l        *Ledger
	database string

	mu        sync.Mutex // serialises use of conn
	conn      *pgconn.PgConn
	installed bool

	dmu     sync.Mutex
	pending []pendingDelete
	wake    chan struct{}
	done    chan struct{}
	closed  bool
}

type pendingDelete struct {
	pid      uint32
	authTime string
}

func newWriter(l *Ledger, database string) *writer {
	w := &writer{l: l, database: database, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.deleter()
	return w
}

// use runs f on the writer's connection, connecting (and checking the
// ledger's installation) first when needed. A connection-level failure
// closes the connection; when it was one kept from before, which may have
// died while idle (a backend restart, idle_session_timeout), f runs once
// more on a new one. Every f is idempotent.
func (w *writer) use(ctx context.Context, f func(ctx context.Context, conn *pgconn.PgConn) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, w.l.opts.StatementTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		pooled := w.conn != nil && !w.conn.IsClosed()
		if !pooled {
			conn, err := pgconn.ConnectConfig(ctx, w.l.connConfig(w.database))
			if err != nil {
				return fmt.Errorf("identity ledger: connecting to database %q as %q: %w", w.database, w.l.opts.User, err)
			}
			if err := checkInstalled(ctx, conn, w.database); err != nil {
				conn.Close(ctx)
				return err
			}
			w.conn = conn
		}
		err := f(ctx, w.conn)
		if err != nil && !statementLevel(w.conn, err) {
			w.conn.Close(context.WithoutCancel(ctx))
			w.conn = nil
			if pooled && attempt == 0 && ctx.Err() == nil {
				continue
			}
		}
		if pg, ok := errors.AsType[*pgconn.PgError](err); ok {
			switch pg.Code {
			case "42P01", "3F000":
				// The ledger was dropped under a running writer.
				return &ErrNotInstalled{Database: w.database, Detail: pg.Message}
			}
		}
		return err
	}
}

// statementLevel reports whether err failed one statement and left the
// connection usable.
func statementLevel(conn *pgconn.PgConn, err error) bool {
	if conn.IsClosed() {
		return false
	}
	_, ok := errors.AsType[*pgconn.PgError](err)
	return ok
}

func checkInstalled(ctx context.Context, conn *pgconn.PgConn, database string) error {
	res := conn.ExecParams(ctx, checkInstalledSQL, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return fmt.Errorf("identity ledger: checking database %q: %w", database, res.Err)
	}
	if len(res.Rows) == 0 {
		return &ErrNotInstalled{Database: database, Detail: "no schema pgcertgate"}
	}
	row := res.Rows[0]
	switch {
	case string(row[0]) != OwnerRole:
		return &ErrNotInstalled{Database: database, Detail: fmt.Sprintf("schema pgcertgate is owned by %q, not %q", row[0], OwnerRole)}
	case row[1] == nil:
		return &ErrNotInstalled{Database: database, Detail: "no table pgcertgate.sessions"}
	case string(row[1]) != OwnerRole:
		return &ErrNotInstalled{Database: database, Detail: fmt.Sprintf("table pgcertgate.sessions is owned by %q, not %q", row[1], OwnerRole)}
	case string(row[2]) != strconv.Itoa(len(functions)):
		return &ErrNotInstalled{Database: database, Detail: "the pgcertgate functions are missing or not SECURITY DEFINER functions of " + OwnerRole}
	}
	return nil
}

// timestampFormat is timestamptz's text form to the microsecond, which
// PostgreSQL stores exactly, so a delete can match the row by it.
const timestampFormat = "2006-01-02 15:04:05.000000Z07:00"

func (w *writer) record(ctx context.Context, r Row) (*Entry, error) {
	authTime := r.AuthTime.UTC().Truncate(time.Microsecond).Format(timestampFormat)
	nullable := func(s string) []byte {
		if s == "" {
			return nil
		}
		return []byte(s)
	}
	var addr []byte
	if r.ClientAddr.IsValid() {
		addr = []byte(r.ClientAddr.String())
	}
	var written bool
	err := w.use(ctx, func(ctx context.Context, conn *pgconn.PgConn) error {
		window := time.Since(r.Opened) + startSlack
		params := [][]byte{
			[]byte(strconv.FormatUint(uint64(r.PID), 10)),
			nullable(r.Identity),
			nullable(r.CertSHA256),
			nullable(r.Subject),
			nullable(r.Issuer),
			addr,
			nullable(r.HBALine),
			[]byte(authTime),
			[]byte(strconv.FormatInt(window.Microseconds(), 10)),
			[]byte(r.Role),
		}
		res := conn.ExecParams(ctx, recordSQL, params, nil, nil, nil).Read()
		if res.Err != nil {
			return res.Err
		}
		// No row: the statement worked, and the connection is fine.
		written = len(res.Rows) == 1
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !written {
		return nil, ErrBackendMismatch
	}
	return &Entry{w: w, pid: r.PID, authTime: authTime}, nil
}

// sweep deletes the rows whose backend is gone and returns how many.
func (w *writer) sweep(ctx context.Context) (int64, error) {
	var n int64
	err := w.use(ctx, func(ctx context.Context, conn *pgconn.PgConn) error {
		res := conn.ExecParams(ctx, sweepSQL, nil, nil, nil, nil).Read()
		if res.Err != nil {
			return res.Err
		}
		n = res.CommandTag.RowsAffected()
		return nil
	})
	if err == nil && n > 0 {
		w.l.opts.Log.Info("identity ledger: swept rows of sessions that no longer exist", slog.String("database", w.database), slog.Int64("rows", n))
	}
	return n, err
}

func (w *writer) queueDelete(pid uint32, authTime string) {
	w.dmu.Lock()
	defer w.dmu.Unlock()
	if w.closed {
		return
	}
	w.pending = append(w.pending, pendingDelete{pid: pid, authTime: authTime})
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// deleter sends queued deletes: it waits DeleteDelay after the first one
// so that sessions ending together cost one statement.
func (w *writer) deleter() {
	defer close(w.done)
	for {
		_, ok := <-w.wake
		w.dmu.Lock()
		closed := w.closed
		w.dmu.Unlock()
		if ok && !closed {
			t := time.NewTimer(w.l.opts.DeleteDelay)
			select {
			case <-t.C:
			case <-w.l.stop:
				t.Stop()
			}
		}
		for {
			w.dmu.Lock()
			batch := w.pending[:min(len(w.pending), maxDeleteBatch)]
			w.pending = w.pending[len(batch):]
			w.dmu.Unlock()
			if len(batch) == 0 {
				break
			}
			if err := w.delete(batch); err != nil {
				// The sweep removes them once their backends are
				// gone.
				w.l.opts.Log.Warn("identity ledger: could not delete the rows of ended sessions", slog.String("database", w.database), slog.Int("rows", len(batch)), slog.String("error", err.Error()))
			}
		}
		if !ok || closed {
			return
		}
	}
}

func (w *writer) delete(batch []pendingDelete) error {
	pids := make([]byte, 0, 8*len(batch))
	times := make([]byte, 0, 34*len(batch))
	pids = append(pids, '{')
	times = append(times, '{')
	for i, d := range batch {
		if i > 0 {
			pids = append(pids, ',')
			times = append(times, ',')
		}
		pids = strconv.AppendUint(pids, uint64(d.pid), 10)
		times = append(times, '"')
		times = append(times, d.authTime...)
		times = append(times, '"')
	}
	pids = append(pids, '}')
	times = append(times, '}')
	return w.use(context.Background(), func(ctx context.Context, conn *pgconn.PgConn) error {
		return conn.ExecParams(ctx, deleteSQL, [][]byte{pids, times}, nil, nil, nil).Read().Err
	})
}

// close sends what is queued and closes the connection.
func (w *writer) close() {
	w.dmu.Lock()
	if w.closed {
		w.dmu.Unlock()
		return
	}
	w.closed = true
	close(w.wake)
	w.dmu.Unlock()
	<-w.done
	w.mu.Lock()
	if w.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		w.conn.Close(ctx)
		cancel()
		w.conn = nil
	}
	w.mu.Unlock()
}
