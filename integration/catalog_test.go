package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcertgate/pgcertgate/config"
)

// The proxy's own catalog lookups (role membership for +role, samerole,
// samegroup and ident +group) run on its own backend connections, as
// catalog_user. Nothing they raise may reach a client that has not
// logged in, and a failing lookup must not cost a backend login per
// connection attempt.

// catalogHBA needs a membership lookup for every plaintext client.
const catalogHBA = `host all +grp 127.0.0.1/32 reject
host samerole all 127.0.0.1/32 reject
host trustdb all 127.0.0.1/32 trust
`

// catalogLoginLine is what log_connections writes for each login of the
// proxy's catalog connection.
const catalogLoginLine = "application_name=pgcertgate catalog"

// catalogUnavailable is the client's error for a failed lookup: the one
// it gets when the backend cannot be reached.
const catalogUnavailable = "FATAL 57P03 could not connect to the database server behind pgcertgate"

func catalogWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, newPKI(t), worldOptions{hba: catalogHBA, conf: map[string]string{"log_connections": "on"}})
	w.setup(t, "CREATE ROLE grp", "CREATE ROLE alice LOGIN IN ROLE grp", "CREATE ROLE bob LOGIN", "CREATE DATABASE trustdb")
	return w
}

// serverLogCount counts s in PostgreSQL's server log. PostgreSQL writes
// a message to its log before it sends it to the client, so whatever the
// proxy has seen is there.
func (w *world) serverLogCount(t *testing.T, s string) int {
	t.Helper()
	log, err := w.cluster.Log()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(log, s)
}

// setCatalogUser reloads the proxy with another catalog_user.
func (w *world) setCatalogUser(t *testing.T, user string) {
	t.Helper()
	b, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	const was = `catalog_user = "postgres"`
	if !strings.Contains(string(b), was) {
		t.Fatalf("%s has no %s", w.cfgPath, was)
	}
	w.writeFile("pgcertgate.toml", strings.Replace(string(b), was, fmt.Sprintf("catalog_user = %q", user), 1))
	rt, err := config.Load(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w.proxy.Reload(rt)
}

// TestCatalogInvalidUTF8 compares, with PostgreSQL, names that are not
// valid UTF-8 where pg_hba.conf asks for role membership: PostgreSQL finds
// no role by such a name, so it is a member of nothing. The proxy must
// not send them to its catalog, whose query would fail on them.
func TestCatalogInvalidUTF8(t *testing.T) {
	w := catalogWorld(t)
	plain := func(user, db string) conn { return conn{user: user, database: db, sslmode: "disable"} }
	for _, tc := range []diffCase{
		{"user not UTF-8", plain("\xff\xfe", "postgres"),
			"FATAL 28000 no pg_hba.conf entry for host \"127.0.0.1\", user \"\xff\xfe\", database \"postgres\", no encryption"},
		{"user not UTF-8, samerole", plain("\xff\xfe", "\xff\xfe"),
			"FATAL 28000 no pg_hba.conf entry for host \"127.0.0.1\", user \"\xff\xfe\", database \"\xff\xfe\", no encryption"},
		// Past the membership lines, the backend refuses the login
		// itself, and that refusal is relayed.
		{"user not UTF-8, trust line", plain("\xff\xfe", "trustdb"),
			"FATAL 28000 role \"\xff\xfe\" does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) { w.differ(t, tc.conn, tc.want) })
	}
	if n := w.serverLogCount(t, catalogLoginLine); n != 0 {
		t.Errorf("names that are not UTF-8 cost %d catalog logins, want 0", n)
	}

	// Valid names still get their membership looked up (bob's in grp
	// for the first line, below).
	for _, tc := range []diffCase{
		{"member of grp", plain("alice", "postgres"),
			`FATAL 28000 pg_hba.conf rejects connection for host "127.0.0.1", user "alice", database "postgres", no encryption`},
		{"member of nothing", plain("bob", "postgres"),
			`FATAL 28000 no pg_hba.conf entry for host "127.0.0.1", user "bob", database "postgres", no encryption`},
		{"samerole", plain("bob", "bob"),
			`FATAL 28000 pg_hba.conf rejects connection for host "127.0.0.1", user "bob", database "bob", no encryption`},
		{"database not UTF-8, samerole", plain("bob", "\xff"),
			"FATAL 28000 no pg_hba.conf entry for host \"127.0.0.1\", user \"bob\", database \"\xff\", no encryption"},
	} {
		t.Run(tc.name, func(t *testing.T) { w.differ(t, tc.conn, tc.want) })
	}
}

// catalogAttempts makes n plaintext attempts as alice, which all need a
// membership lookup, and requires each to be refused with the generic
// FATAL and nothing of the catalog: no backend text, no file, line or
// routine. It returns how long the attempts took.
func catalogAttempts(t *testing.T, w *world, n int, secrets ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Every attempt is made, also after a wrong answer, so that the
	// login count below is for n attempts.
	var bad int
	var first string
	began := time.Now()
	for i := range n {
		if problem := catalogAttempt(ctx, w, secrets); problem != "" {
			if bad++; first == "" {
				first = fmt.Sprintf("attempt %d: %s", i, problem)
			}
		}
	}
	took := time.Since(began)
	if bad > 0 {
		t.Errorf("%d of %d attempts answered wrongly; %s", bad, n, first)
	}
	// One auth event per attempt, with the reason and the backend's
	// own words, which the client never saw. The event is written just
	// after the client's error is sent: poll for the last one.
	var events, detailed int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		events, detailed = 0, 0
		for line := range strings.Lines(w.logBuf.String()) {
			if strings.Contains(line, "reason=catalog_error") {
				events++
				if strings.Contains(line, secrets[0]) {
					detailed++
				}
			}
		}
		if events >= n || time.Now().After(deadline) {
			break
		}
	}
	if events != n || detailed != n {
		t.Errorf("%d auth events with reason=catalog_error, %d naming %q; want %d each", events, detailed, secrets[0], n)
	}
	return took
}

// catalogAttempt makes one attempt and says what is wrong with its answer.
func catalogAttempt(ctx context.Context, w *world, secrets []string) string {
	pc, err := w.connect(ctx, proxy, conn{user: "alice", sslmode: "disable"})
	if err == nil {
		pc.Close(ctx)
		return "connected, want a refusal"
	}
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	if !ok {
		return fmt.Sprintf("%v, want an ErrorResponse", err)
	}
	if got := classify(err).String(); got != catalogUnavailable {
		return fmt.Sprintf("got %q (file=%q line=%d routine=%q), want %q", got, pgErr.File, pgErr.Line, pgErr.Routine, catalogUnavailable)
	}
	if pgErr.Detail != "" || pgErr.Hint != "" || pgErr.Where != "" || pgErr.File != "" || pgErr.Line != 0 || pgErr.Routine != "" {
		return fmt.Sprintf("the client got more than the message: %+v", *pgErr)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			return fmt.Sprintf("the client learns %q: %v", s, err)
		}
	}
	return ""
}

// TestCatalogUserMissing: a catalog_user that does not exist. The client
// must not learn the role's name, and a failed catalog login is not
// tried again for every attempt.
func TestCatalogUserMissing(t *testing.T) {
	w := catalogWorld(t)
	w.setCatalogUser(t, "pgcg_missing")
	const refused = `role "pgcg_missing" does not exist`
	before := w.serverLogCount(t, refused)
	const n = 100
	elapsed := catalogAttempts(t, w, n, "pgcg_missing", "pg_auth_members", "does not exist")
	logins := w.serverLogCount(t, refused) - before
	t.Logf("%d attempts in %v: %d catalog logins", n, elapsed.Round(time.Millisecond), logins)
	// A failed connect is remembered for 5 s: at most one login per 5 s.
	if limit := 1 + int(elapsed/(5*time.Second)); logins < 1 || logins > limit {
		t.Errorf("%d attempts in %v cost %d catalog logins, want 1 to %d", n, elapsed, logins, limit)
	}
}

// TestCatalogQueryRefused: a catalog_user that may not read
// pg_auth_members. The client must learn nothing of it, and the failing
// query keeps its connection: 100 attempts cost one catalog login.
func TestCatalogQueryRefused(t *testing.T) {
	w := catalogWorld(t)
	w.setup(t, "CREATE ROLE pgcg_catalog LOGIN", "REVOKE SELECT ON pg_catalog.pg_auth_members FROM PUBLIC")
	w.setCatalogUser(t, "pgcg_catalog")
	before := w.serverLogCount(t, catalogLoginLine)
	const n = 100
	catalogAttempts(t, w, n, "permission denied for table pg_auth_members", "pgcg_catalog", "aclchk")
	logins := w.serverLogCount(t, catalogLoginLine) - before
	t.Logf("%d attempts: %d catalog logins", n, logins)
	if logins > 1 {
		t.Errorf("%d attempts cost %d catalog logins, want at most 1", n, logins)
	}
}
