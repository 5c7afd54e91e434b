package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Replication through the proxy, since standbys and subscribers log in
// with certificates too: physical (replication=true) and logical
// (replication=database) walsenders, with real clients
// (pg_receivewal, pg_recvlogical) and with pgconn speaking CopyBoth
// itself. The relay carries the CopyBoth stream unchanged in both
// directions: WAL and decoded changes down, standby status updates up.

// replHBA serves both sides. The first line is for PostgreSQL only (the
// proxy's Unix-socket connection to it; "all" never matches a physical
// walsender, so the harness's "local all all trust" is not enough);
// pgcertgate never matches local lines.
const replHBA = `local replication all trust
hostssl replication all 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 cert
`

func replWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, newPKI(t), worldOptions{hba: replHBA, conf: map[string]string{
		"wal_level":             "logical",
		"max_wal_senders":       "10",
		"max_replication_slots": "10",
	}})
	w.setup(t, "CREATE ROLE alice LOGIN REPLICATION", "CREATE DATABASE app OWNER alice")
	return w
}

// replConninfo is alice's conninfo through the proxy for PostgreSQL's
// own tools, which add replication=true or replication=database.
func replConninfo(w *world, dbname string) string {
	_, port := w.hostPort(proxy)
	cert, key := w.clientFiles("alice")
	return fmt.Sprintf("host=localhost port=%s user=alice dbname=%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s connect_timeout=20",
		port, dbname, filepath.Join(w.dir, "root.crt"), cert, key)
}

// replTool finds one of PostgreSQL's client programs beside initdb.
func replTool(t *testing.T, w *world, name string) string {
	t.Helper()
	if p := filepath.Join(fmt.Sprintf("/usr/lib/postgresql/%d/bin", w.cluster.MajorVersion()), name); matrixFileExists(p) {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is missing: run `make test` as root, which installs Debian postgresql-client", name)
	}
	return p
}

func TestReplication(t *testing.T) {
	forEachRelayEngineWorld(t, replWorld, testReplication)
}

func testReplication(t *testing.T, w *world) {

	t.Run("IDENTIFY_SYSTEM over replication=true", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		want := map[target][]string{}
		for _, tg := range []target{direct, proxy} {
			pc, err := w.connect(ctx, tg, conn{user: "alice", cert: "alice", extra: "replication=true"})
			if err != nil {
				t.Fatalf("%s: %v", tg, err)
			}
			res, err := pc.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
			pc.Close(ctx)
			if err != nil {
				t.Fatalf("%s: IDENTIFY_SYSTEM: %v", tg, err)
			}
			row := res[0].Rows[0]
			t.Logf("%s: IDENTIFY_SYSTEM systemid=%s timeline=%s xlogpos=%s dbname=%q (NULL: %v)", tg, row[0], row[1], row[2], row[3], row[3] == nil)
			if row[3] != nil {
				t.Errorf("%s: a physical walsender is connected to no database, got dbname %q", tg, row[3])
			}
			want[tg] = []string{string(row[0]), string(row[1])}
		}
		rows, err := w.superuserRows(ctx, "select system_identifier::text from pg_control_system()")
		if err != nil {
			t.Fatal(err)
		}
		if got := want[proxy][0]; got != string(rows[0][0]) || fmt.Sprint(want[proxy]) != fmt.Sprint(want[direct]) {
			t.Errorf("through the proxy %v, directly %v, pg_control_system %s", want[proxy], want[direct], rows[0][0])
		}
	})

	t.Run("pg_receivewal streams a segment", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		dir := t.TempDir()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, replTool(t, w, "pg_receivewal"), "--no-loop", "--verbose", "-D", dir, "-d", replConninfo(w, "replication"))
		cmd.Env = cleanEnv()
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		// The walsender serves pg_receivewal through the proxy.
		waitFor(t, ctx, w, "select pid::text from pg_stat_replication where application_name = 'pg_receivewal' and state = 'streaming'")
		// Fill and close the segment being streamed; pg_receivewal renames
		// the .partial file once the segment is complete.
		if err := w.cluster.Exec(ctx, "CREATE TABLE wal_filler AS SELECT generate_series(1, 1000) i; SELECT pg_switch_wal()"); err != nil {
			t.Fatal(err)
		}
		segment := regexp.MustCompile(`^[0-9A-F]{24}$`)
		var got string
		for got == "" {
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if segment.MatchString(e.Name()) {
					got = e.Name()
				}
			}
			if got != "" {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no complete WAL segment received: %v\n%s", ctx.Err(), out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
		fi, err := os.Stat(filepath.Join(dir, got))
		if err != nil {
			t.Fatal(err)
		}
		// pg_receivewal stops cleanly on SIGINT.
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("pg_receivewal: %v", err)
		}
		t.Logf("received segment %s (%d bytes); pg_receivewal said:\n%s", got, fi.Size(), out.String())
		if fi.Size() != 16<<20 {
			t.Errorf("segment is %d bytes, want 16 MiB", fi.Size())
		}
	})

	t.Run("pg_recvlogical decodes an insert", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		recvlogical := replTool(t, w, "pg_recvlogical")
		run := func(args ...string) string {
			t.Helper()
			cmd := exec.CommandContext(ctx, recvlogical, append([]string{"-d", replConninfo(w, "app"), "--slot", "gate_slot"}, args...)...)
			cmd.Env = cleanEnv()
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("pg_recvlogical %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		run("--create-slot", "--plugin", "test_decoding")
		pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		// Separate queries: one simple query with several statements is
		// one transaction, and the LSN must be read after its commit.
		if _, err := pc.Exec(ctx, "CREATE TABLE gate_t (i int PRIMARY KEY, s text)").ReadAll(); err != nil {
			t.Fatal(err)
		}
		if _, err := pc.Exec(ctx, "INSERT INTO gate_t VALUES (42, 'through the proxy')").ReadAll(); err != nil {
			t.Fatal(err)
		}
		res, err := pc.Exec(ctx, "SELECT pg_current_wal_insert_lsn()").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		endpos := string(res[0].Rows[0][0])
		// --endpos makes pg_recvlogical stop once it has streamed up to
		// the insert's commit.
		out := run("--start", "--no-loop", "--endpos", endpos, "-f", "-")
		t.Logf("pg_recvlogical --start --endpos %s:\n%s", endpos, out)
		if want := `table public.gate_t: INSERT: i[integer]:42 s[text]:'through the proxy'`; !strings.Contains(out, want) {
			t.Errorf("the decoded stream lacks %q", want)
		}
		run("--drop-slot")
	})

	t.Run("CopyBoth both ways with pgconn", func(t *testing.T) {
		replCopyBoth(t, w)
	})
}

// replCopyBoth streams a logical slot with START_REPLICATION through the
// proxy, speaking the replication protocol with pgconn: XLogData and
// keepalives come down as CopyData, a standby status update goes up as
// CopyData, and CopyDone ends the stream with the session still usable.
func replCopyBoth(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice", extra: "replication=database"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "CREATE_REPLICATION_SLOT copyboth_slot LOGICAL test_decoding NOEXPORT_SNAPSHOT").ReadAll(); err != nil {
		t.Fatal(err)
	}
	sess, err := w.connect(ctx, proxy, conn{user: "alice", database: "app", cert: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(ctx)
	for _, q := range []string{"CREATE TABLE copyboth_t (i int PRIMARY KEY)", "INSERT INTO copyboth_t VALUES (7)"} {
		if _, err := sess.Exec(ctx, q).ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()

	pc.Frontend().Send(&pgproto3.Query{String: "START_REPLICATION SLOT copyboth_slot LOGICAL 0/0"})
	if err := pc.Frontend().Flush(); err != nil {
		t.Fatal(err)
	}
	var decoded strings.Builder
	var commitEnd uint64
	gotCopyBoth, sawInsert := false, false
	// Read until the commit of the INSERT's transaction (the CREATE
	// TABLE's comes first, decoded as an empty BEGIN/COMMIT).
	for commitEnd == 0 {
		msg, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receiving: %v (decoded so far: %q)", err, decoded.String())
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			gotCopyBoth = true
		case *pgproto3.CopyData:
			switch m.Data[0] {
			case 'w': // XLogData: start, end, send time, then the change
				if len(m.Data) < 25 {
					t.Fatalf("short XLogData %q", m.Data)
				}
				start := binary.BigEndian.Uint64(m.Data[1:])
				text := string(m.Data[25:])
				fmt.Fprintf(&decoded, "%X/%X %s\n", start>>32, uint32(start), text)
				sawInsert = sawInsert || strings.Contains(text, "INSERT")
				if strings.HasPrefix(text, "COMMIT") && sawInsert {
					commitEnd = binary.BigEndian.Uint64(m.Data[9:])
				}
			case 'k': // primary keepalive
			default:
				t.Fatalf("unexpected CopyData %q", m.Data)
			}
		case *pgproto3.ErrorResponse:
			t.Fatalf("START_REPLICATION: %s %s", m.Code, m.Message)
		default:
			t.Fatalf("unexpected %T during START_REPLICATION", msg)
		}
	}
	t.Logf("decoded through the proxy in %v:\n%s", time.Since(began), decoded.String())
	if !gotCopyBoth {
		t.Error("no CopyBothResponse")
	}
	if want := "table public.copyboth_t: INSERT: i[integer]:7"; !strings.Contains(decoded.String(), want) {
		t.Errorf("stream lacks %q", want)
	}

	// Up the stream: a standby status update confirming the commit.
	status := []byte{'r'}
	for range 3 {
		status = binary.BigEndian.AppendUint64(status, commitEnd)
	}
	status = binary.BigEndian.AppendUint64(status, 0)
	status = append(status, 0)
	pc.Frontend().Send(&pgproto3.CopyData{Data: status})
	pc.Frontend().Send(&pgproto3.CopyDone{})
	if err := pc.Frontend().Flush(); err != nil {
		t.Fatal(err)
	}
	// The server ends its side with CopyDone, CommandComplete and
	// ReadyForQuery; more WAL may still arrive before that.
	for done := false; !done; {
		msg, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("after CopyDone: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			done = true
		case *pgproto3.ErrorResponse:
			t.Fatalf("after CopyDone: %s %s", m.Code, m.Message)
		}
	}
	// The walsender took the status update: the slot's confirmed flush
	// position is the commit the client acknowledged.
	lsn := fmt.Sprintf("%X/%X", commitEnd>>32, uint32(commitEnd))
	rows := waitFor(t, ctx, w, fmt.Sprintf("select confirmed_flush_lsn::text from pg_replication_slots where slot_name = 'copyboth_slot' and confirmed_flush_lsn >= '%s'", lsn))
	t.Logf("confirmed_flush_lsn %s after acknowledging %s (%v)", rows, lsn, time.Since(began))
	// The walsender session goes on after the stream.
	if res, err := pc.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll(); err != nil || string(res[0].Rows[0][3]) != "app" {
		t.Fatalf("IDENTIFY_SYSTEM after the stream: %v", err)
	}
	if _, err := pc.Exec(ctx, "DROP_REPLICATION_SLOT copyboth_slot").ReadAll(); err != nil {
		t.Fatal(err)
	}
}
