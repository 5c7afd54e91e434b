package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ConnConfig returns a pgconn configuration for user and database over the
// cluster's Unix socket, with nothing taken from the environment.
//
// pgconn.ParseConfig always merges PG* environment variables (PGOPTIONS,
// PGAPPNAME, PGPASSWORD, PGSSLMODE, PGTARGETSESSIONATTRS, ...), so every
// field they can reach is reset here; a test that sets PGOPTIONS for the
// code under test must not change the cluster's own sessions. One variable
// cannot be neutralised: a PGSERVICE naming a service that does not exist
// makes ParseConfig fail.
func (c *Cluster) ConnConfig(user, database string) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		dsnQuote(c.socketDir), c.port, dsnQuote(user), dsnQuote(database)))
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	cfg.Host = c.socketDir
	cfg.Port = uint16(c.port)
	cfg.User = user
	cfg.Database = database
	cfg.Password = ""
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.RuntimeParams = map[string]string{"application_name": "pgcluster"}
	cfg.KerberosSrvName = ""
	cfg.KerberosSpn = ""
	cfg.SSLNegotiation = ""
	cfg.MinProtocolVersion = "3.0"
	cfg.MaxProtocolVersion = "3.0"
	cfg.ChannelBinding = "disable"
	cfg.RequireAuth = ""
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	return cfg, nil
}

// connect opens a superuser session over the Unix socket.
func (c *Cluster) connect(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := c.ConnConfig(c.superuser, "postgres")
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: connect as %s: %w", c.superuser, err)
	}
	return conn, nil
}

// Exec runs sql (one or more statements, simple query protocol) as the
// superuser in database postgres, on a fresh connection.
func (c *Cluster) Exec(ctx context.Context, sql string) error {
	_, err := c.Query(ctx, sql)
	return err
}

// Query runs sql like Exec and returns the rows of the last statement as
// text; a NULL becomes "".
func (c *Cluster) Query(ctx context.Context, sql string) ([][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return query(ctx, conn, sql)
}

func query(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %q: %w", sql, err)
	}
	if len(results) == 0 {
		return nil, nil
	}
	var rows [][]string
	for _, r := range results[len(results)-1].Rows {
		row := make([]string, len(r))
		for i, v := range r {
			row[i] = string(v)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// ConfigError reports the configuration errors the server found on
// Reload. The server keeps its previous pg_hba.conf or pg_ident.conf when
// that file has an error ("pg_hba.conf was not reloaded"), and keeps
// previous settings for bad postgresql.conf lines.
type ConfigError struct {
	// Errors are "file:line: message", as the pg_hba_file_rules,
	// pg_ident_file_mappings and pg_file_settings views report them.
	Errors []string
}

func (e *ConfigError) Error() string {
	return "pgcluster: configuration errors after reload:\n" + strings.Join(e.Errors, "\n")
}

// Reload makes the server re-read its configuration files (pg_reload_conf)
// and waits until the postmaster has done so, so that the next connection
// is checked against the new pg_hba.conf. pg_reload_conf only sends SIGHUP;
// from PostgreSQL 16 the postmaster handles it in its event loop, where it
// can race with an incoming connection, so the wait is needed.
//
// The wait watches pg_conf_load_time() on fresh connections (a new backend
// inherits the postmaster's value), so the current pg_hba.conf must still
// let the superuser in over the Unix socket.
//
// If any file has errors, Reload still signals the server and returns a
// *ConfigError listing them.
func (c *Cluster) Reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := query(ctx, conn, "select pg_conf_load_time()::text, pg_reload_conf()")
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return errNoRows
	}
	before := rows[0][0]

	cfgErr, err := c.configErrors(ctx, conn)
	if err != nil {
		return err
	}
	// A postgresql.conf that does not parse leaves pg_conf_load_time
	// unchanged (guc-file.l ProcessConfigFileInternal bails out before
	// setting PgReloadTime; verified on 15), so there is nothing to wait for.
	// Bad values still count as a reload.
	if cfgErr != nil && cfgErr.unparsable {
		return cfgErr.ConfigError
	}

	check := fmt.Sprintf("select pg_conf_load_time() > %s::timestamptz", sqlQuote(before))
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		fresh, err := c.connect(ctx)
		if err != nil {
			return fmt.Errorf("pgcluster: waiting for reload: %w", err)
		}
		rows, err := query(ctx, fresh, check)
		fresh.Close(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return errNoRows
		}
		if rows[0][0] == "t" {
			break
		}
		// Polling the server's own reload timestamp, not sleeping in hope:
		// each round trip observes whether the SIGHUP has been processed.
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("pgcluster: waiting for reload: %w", ctx.Err())
		case <-t.C:
		}
	}
	if cfgErr != nil {
		return cfgErr.ConfigError
	}
	return nil
}

// configErrs is a ConfigError plus whether a configuration file could not
// be parsed at all.
type configErrs struct {
	*ConfigError
	unparsable bool
}

// configErrors reads the files' errors through the views that parse them
// afresh; nil means none.
func (c *Cluster) configErrors(ctx context.Context, conn *pgconn.PgConn) (*configErrs, error) {
	var out []string
	unparsable := false
	rows, err := query(ctx, conn, `select coalesce(sourcefile, ''), coalesce(sourceline, 0), error, name is null
		from pg_file_settings where error is not null order by seqno`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s:%s: %s", r[0], r[1], r[2]))
		// A row without a name is a file-level (syntax) error; a bad
		// value has its name and "setting could not be applied".
		if r[3] == "t" {
			unparsable = true
		}
	}
	type view struct{ name, file string }
	views := []view{{"pg_hba_file_rules", "'pg_hba.conf'"}}
	if c.majorVer >= 15 {
		views = append(views, view{"pg_ident_file_mappings", "'pg_ident.conf'"})
	}
	for _, v := range views {
		if c.majorVer >= 16 {
			// Since 16 the views name the file, which may be an include.
			v.file = "file_name"
		}
		rows, err := query(ctx, conn, fmt.Sprintf(
			`select %s, line_number, error from %s where error is not null order by line_number`, v.file, v.name))
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			out = append(out, fmt.Sprintf("%s:%s: %s", r[0], r[1], r[2]))
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return &configErrs{&ConfigError{Errors: out}, unparsable}, nil
}

// sqlQuote quotes s as an SQL string literal (standard_conforming_strings
// is on by default).
func sqlQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// errNoRows is returned when a query unexpectedly produced no row.
var errNoRows = errors.New("pgcluster: query returned no rows")
