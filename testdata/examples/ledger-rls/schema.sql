-- pgcertgate example: each certificate holder sees and changes only the
-- rows they own, although all of them log in as the same role, app.
--
-- Setup, as a superuser, in the application's database:
--   CREATE ROLE pgcertgate_ledger LOGIN;
--   pgcertgate install-sql --config pgcertgate.toml | psql -d appdb
--   psql -d appdb -f schema.sql
--
-- Always call pgcertgate.identity() schema-qualified: an unqualified
-- identity() is looked up in the session's search_path, which the
-- session controls.

CREATE TABLE notes (
  id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner text NOT NULL DEFAULT pgcertgate.identity(),
  body  text NOT NULL
);

ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
-- The policy binds the table's owner too (superusers and BYPASSRLS roles
-- are never bound).
ALTER TABLE notes FORCE ROW LEVEL SECURITY;

CREATE POLICY own_notes ON notes
  USING (owner = pgcertgate.identity())
  WITH CHECK (owner = pgcertgate.identity());

GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO app;
