package ledger

import (
	"fmt"
	"strings"
)

// OwnerRole owns the pgcertgate schema, its table and its functions. It
// cannot log in: nothing ever runs as it except the functions, which are
// SECURITY DEFINER. Roles are cluster-wide, so install-sql creates it only
// when it does not exist yet.
const OwnerRole = "pgcertgate_owner"

// Schema and Table name the ledger. Every statement pgcertgate sends spells
// them qualified.
const (
	Schema = "pgcertgate"
	Table  = "pgcertgate.sessions"
)

// quoteIdent quotes an SQL identifier, always, as quote_ident would when
// it must: the role name comes from the configuration file.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteLiteral quotes an SQL string literal (standard_conforming_strings).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// sessionCheck is the body shared by every function: the calling session's
// row, and only when the row's pid and backend start are those of the
// calling backend, so that a row left by an earlier backend that had the
// same pid is never inherited. Every name is qualified, operators included:
// the function's own search_path is pinned too, but nothing here may
// depend on it.
//
// pg_stat_get_activity(pid) reads one backend's entry. It shows another
// role's backend_start only to a member of pg_read_all_stats; inside this
// SECURITY DEFINER function the current user is OwnerRole, which is one.
const sessionCheck = `
  FROM pgcertgate.sessions AS s,
       pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a
 WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
   AND a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
   AND s.backend_start OPERATOR(pg_catalog.=) a.backend_start`

// functions are the SQL-callable accessors: name, return type, and the
// select list over s.
var functions = []struct{ name, returns, expr string }{
	{"session", "pgcertgate.sessions", "s.*"},
	{"identity", "text", "s.identity"},
	{"cert_fingerprint", "text", "s.cert_sha256"},
	{"client_addr", "inet", "s.client_addr"},
	{"hba_line", "text", "s.hba_line"},
}

// InstallSQL returns the SQL that sets up the identity ledger in one
// database for the writer role ledgerUser, which must already exist. Run
// it as a superuser in every database clients reach through pgcertgate
// (psql -d DB -f install.sql). It may be run again: it replaces the
// functions and re-applies the grants, and refuses to adopt a pgcertgate
// schema or table that someone else created.
func InstallSQL(ledgerUser string) string {
	var b strings.Builder
	owner, writer := quoteIdent(OwnerRole), quoteIdent(ledgerUser)
	fmt.Fprintf(&b, `-- pgcertgate identity ledger, for writer role %s.
-- Run as a superuser in each database that clients reach through
-- pgcertgate with [backend] identity_ledger = true.
\set ON_ERROR_STOP on
BEGIN;

DO $install$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %s) THEN
    RAISE EXCEPTION 'role %% does not exist', %s
      USING HINT = 'Create the ledger_user role first (CREATE ROLE ... LOGIN).';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %s) THEN
    CREATE ROLE %s NOLOGIN;
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_namespace
              WHERE nspname = 'pgcertgate'
                AND nspowner OPERATOR(pg_catalog.<>) %s::pg_catalog.regrole) THEN
    RAISE EXCEPTION 'schema pgcertgate exists and is not owned by %%', %s
      USING HINT = 'Drop it, or find out who created it: the ledger cannot trust it.';
  END IF;
END
$install$;

-- The owner reads other roles' backend_start in pg_stat_activity from
-- inside the SECURITY DEFINER functions; the writer checks it for the
-- sessions it records and sweeps.
GRANT pg_read_all_stats TO %s;
GRANT pg_read_all_stats TO %s;

CREATE SCHEMA IF NOT EXISTS pgcertgate AUTHORIZATION %s;
REVOKE ALL ON SCHEMA pgcertgate FROM PUBLIC;
GRANT USAGE ON SCHEMA pgcertgate TO PUBLIC;

-- Live sessions only, so UNLOGGED: no WAL for the rows, and after a crash
-- PostgreSQL empties it, which is right since no session survives one.
CREATE UNLOGGED TABLE IF NOT EXISTS pgcertgate.sessions (
  pid           integer     PRIMARY KEY,
  backend_start timestamptz NOT NULL,
  identity      text,
  cert_sha256   text,
  subject       text,
  issuer        text,
  client_addr   inet,
  hba_line      text,
  auth_time     timestamptz NOT NULL
);
ALTER TABLE pgcertgate.sessions OWNER TO %s;
REVOKE ALL ON TABLE pgcertgate.sessions FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE pgcertgate.sessions TO %s;
`, ledgerUser, quoteLiteral(ledgerUser), quoteLiteral(ledgerUser),
		quoteLiteral(OwnerRole), owner,
		quoteLiteral(OwnerRole), quoteLiteral(OwnerRole),
		owner, writer, owner, owner, writer)

	for _, f := range functions {
		fmt.Fprintf(&b, `
CREATE OR REPLACE FUNCTION pgcertgate.%s() RETURNS %s
  LANGUAGE sql STABLE SECURITY DEFINER PARALLEL RESTRICTED
  SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT %s%s
$fn$;
ALTER FUNCTION pgcertgate.%s() OWNER TO %s;
REVOKE ALL ON FUNCTION pgcertgate.%s() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgcertgate.%s() TO PUBLIC;
`, f.name, f.returns, f.expr, sessionCheck, f.name, owner, f.name, f.name)
	}
	b.WriteString("\nCOMMIT;\n")
	return b.String()
}

// Statements the writer sends. Each names everything qualified.
const (
	// checkInstalledSQL answers whether this database has the ledger and
	// whether it is the one install-sql made: the schema and table
	// owned by OwnerRole, and every function SECURITY DEFINER and owned
	// by it. A schema created by anyone else must not be trusted.
	checkInstalledSQL = `
SELECT pg_catalog.pg_get_userbyid(n.nspowner),
       (SELECT pg_catalog.pg_get_userbyid(c.relowner)
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relname OPERATOR(pg_catalog.=) 'sessions'),
       (SELECT pg_catalog.count(*)
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) n.oid
           AND p.prosecdef
           AND p.proowner OPERATOR(pg_catalog.=) n.nspowner
           AND p.proname OPERATOR(pg_catalog.=) ANY ('{session,identity,cert_fingerprint,client_addr,hba_line}'::pg_catalog.name[]))
  FROM pg_catalog.pg_namespace n
 WHERE n.nspname OPERATOR(pg_catalog.=) 'pgcertgate'`

	// (OPERATOR(...) binds like any other operator, left to right: the
	// parentheses are needed.)
	// recordSQL writes (or, for a kept backend handed to a new client,
	// rewrites) the row for one backend. The backend start is read from
	// the server's own activity entry and must lie between the moment
	// the proxy began opening that backend ($9 ago, in microseconds) and
	// now: a pid that belongs to any other backend (one that died and
	// whose pid was reused) writes nothing. The backend must also be in
	// this database and logged in as the client's role ($10).
	recordSQL = `
INSERT INTO pgcertgate.sessions AS s
       (pid, backend_start, identity, cert_sha256, subject, issuer, client_addr, hba_line, auth_time)
SELECT a.pid, a.backend_start, $2, $3, $4, $5, $6::pg_catalog.inet, $7, $8::pg_catalog.timestamptz
  FROM pg_catalog.pg_stat_get_activity($1::pg_catalog.int4) AS a
 WHERE a.pid OPERATOR(pg_catalog.=) $1::pg_catalog.int4
   AND a.datid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
   AND a.usesysid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $10)
   AND a.backend_start OPERATOR(pg_catalog.>=) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => ($9::pg_catalog.float8 OPERATOR(pg_catalog./) 1e6)))
   AND a.backend_start OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
ON CONFLICT (pid) DO UPDATE
   SET backend_start = excluded.backend_start, identity = excluded.identity,
       cert_sha256 = excluded.cert_sha256, subject = excluded.subject, issuer = excluded.issuer,
       client_addr = excluded.client_addr, hba_line = excluded.hba_line, auth_time = excluded.auth_time
RETURNING s.backend_start`

	// deleteSQL removes the rows of sessions that ended. auth_time tells
	// one session on a kept backend from the next: the next client's row
	// (same pid) has its own and survives a late delete.
	deleteSQL = `
DELETE FROM pgcertgate.sessions AS s
 USING ROWS FROM (pg_catalog.unnest($1::pg_catalog.int4[]), pg_catalog.unnest($2::pg_catalog.timestamptz[])) AS d(pid, auth_time)
 WHERE s.pid OPERATOR(pg_catalog.=) d.pid AND s.auth_time OPERATOR(pg_catalog.=) d.auth_time`

	// sweepSQL removes the rows whose backend no longer exists: the
	// sessions of a proxy that was killed, or deletes that failed.
	sweepSQL = `
DELETE FROM pgcertgate.sessions AS s
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a
                    WHERE a.pid OPERATOR(pg_catalog.=) s.pid
                      AND a.backend_start OPERATOR(pg_catalog.=) s.backend_start)`

	// databasesSQL lists the databases the writer may connect to, to
	// sweep each at start.
	databasesSQL = `
SELECT d.datname FROM pg_catalog.pg_database d
 WHERE d.datallowconn AND NOT d.datistemplate
   AND pg_catalog.has_database_privilege(d.oid, 'CONNECT')
 ORDER BY 1`
)
