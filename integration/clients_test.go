package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
)

// The real-client matrix, because each driver negotiates TLS, copies and
// cancels in its own way: every client a user is likely to point at
// PostgreSQL connects through pgcertgate with a client certificate and
// sslmode=verify-full on the server name "localhost", runs a query, copies
// at least 10 MB out and back in, and cancels a running pg_sleep with a
// real CancelRequest, after which its session still works.
//
// The external clients (pgjdbc, node-postgres, psycopg) are small programs
// under testdata/clients that speak one line protocol on stdout:
//
//	version <driver and runtime versions>
//	user <current_user>
//	pid <backend pid>
//	copy_out <bytes received by COPY ... TO STDOUT>
//	copy_in <rows reported by COPY ... FROM STDIN>
//	sleeping                      (then it waits for "cancel" on stdin)
//	cancelled <SQLSTATE> <message>
//	alive <backend pid, asked again after the cancel>
//	done
//
// The test answers "sleeping" with "cancel" only once pg_stat_activity
// shows the pg_sleep running: a cancel that arrives earlier cancels
// nothing. A missing client fails its test, naming what to install.

const matrixHBA = `hostssl all all 127.0.0.1/32 cert
hostnossl all all 127.0.0.1/32 reject
`

const (
	// matrixRows rows of 1000 x's copy 10.5 MB each way.
	matrixRows     = 10500
	matrixMinBytes = 10 << 20
	pgjdbcJar      = "/usr/share/java/postgresql.jar"
	debianPython   = "/usr/bin/python3"
	nodeClientDir  = "testdata/clients/node"
)

// matrixBytes is the exact size of COPY (select i, repeat('x', 1000) from
// generate_series(1, matrixRows) i) TO STDOUT: "i\t" + 1000 x's + "\n".
func matrixBytes() int {
	n := 0
	for i := 1; i <= matrixRows; i++ {
		n += len(strconv.Itoa(i)) + 1 + 1000 + 1
	}
	return n
}

// matrixReport is what one client did, in the line protocol's terms.
type matrixReport struct {
	version   string
	user      string
	pid       string
	copyOut   string
	copyIn    string
	cancelled string
	alive     string
	done      bool
}

// matrixRow is one line of the matrix table the test logs (and README
// shows).
type matrixRow struct{ client, version, tls, result string }

func TestClientMatrix(t *testing.T) {
	began := time.Now()
	w := newWorld(t, newPKI(t), worldOptions{hba: matrixHBA})
	w.setup(t, "CREATE ROLE alice LOGIN", "CREATE DATABASE app OWNER alice")
	var table []matrixRow
	run := func(client, tlsMode string, f func(t *testing.T) string) {
		var version string
		ran := false
		ok := t.Run(client+" "+tlsMode, func(t *testing.T) { ran = true; version = f(t) })
		if !ran {
			return // filtered out by -run
		}
		result := "pass"
		if !ok {
			result = "FAIL"
		}
		table = append(table, matrixRow{client, version, tlsMode, result})
	}
	const sslRequest, direct = "SSLRequest", "direct TLS (ALPN postgresql)"

	run("psql/libpq", sslRequest, func(t *testing.T) string { return matrixPsql(t, w) })
	run("pgx v5 (pgconn)", sslRequest, func(t *testing.T) string {
		return matrixPgx(t, w, "matrix_pgx", "sslnegotiation=postgres max_protocol_version=3.0", 4)
	})
	run("pgx v5 (pgconn)", direct+", protocol 3.2", func(t *testing.T) string {
		return matrixPgx(t, w, "matrix_pgx_direct", "sslnegotiation=direct max_protocol_version=3.2", 32)
	})
	run("pgx v5 (pgconn)", sslRequest+", protocol 3.2", func(t *testing.T) string {
		return matrixPgx(t, w, "matrix_pgx_32", "sslnegotiation=postgres min_protocol_version=3.2 max_protocol_version=3.2", 32)
	})
	run("pgjdbc", sslRequest, func(t *testing.T) string { return matrixJDBC(t, w) })
	run("node-postgres", sslRequest, func(t *testing.T) string { return matrixNode(t, w, "matrix_node", "postgres") })
	run("node-postgres", direct, func(t *testing.T) string { return matrixNode(t, w, "matrix_node_direct", "direct") })
	run("psycopg 3", sslRequest, func(t *testing.T) string { return matrixPsycopg(t, w) })

	var b strings.Builder
	b.WriteString("client matrix (verify-full, client certificate, query, COPY out+in of 10.5 MB, cancel of pg_sleep):\n")
	b.WriteString("| client | version | TLS mode | result |\n|---|---|---|---|\n")
	for _, r := range table {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.client, r.version, r.tls, r.result)
	}
	fmt.Fprintf(&b, "(%v)", time.Since(began).Round(100*time.Millisecond))
	t.Log(b.String())
}

// matrixConninfo is a libpq conninfo for alice through the proxy, with
// verify-full on the name "localhost".
func matrixConninfo(w *world, extra string) string {
	_, port := w.hostPort(proxy)
	cert, key := w.clientFiles("alice")
	return fmt.Sprintf("host=localhost port=%s user=alice dbname=app sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s connect_timeout=20 %s",
		port, filepath.Join(w.dir, "root.crt"), cert, key, extra)
}

// matrixEnv is the environment of an external client program.
func matrixEnv(w *world, table, key, negotiation string) []string {
	_, port := w.hostPort(proxy)
	cert, pemKey := w.clientFiles("alice")
	if key == "" {
		key = pemKey
	}
	return append(cleanEnv(),
		"MATRIX_HOST=localhost",
		"MATRIX_PORT="+port,
		"MATRIX_USER=alice",
		"MATRIX_DB=app",
		"MATRIX_ROOT="+filepath.Join(w.dir, "root.crt"),
		"MATRIX_CERT="+cert,
		"MATRIX_KEY="+key,
		"MATRIX_TABLE="+table,
		"MATRIX_ROWS="+strconv.Itoa(matrixRows),
		"MATRIX_SSLNEGOTIATION="+negotiation,
	)
}

// matrixNeed fails the test when a client is not installed.
func matrixNeed(t *testing.T, what string, ok bool) {
	t.Helper()
	if !ok {
		t.Fatalf("%s is missing: run `make test` as root, which installs the client matrix's packages", what)
	}
}

func matrixFileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func matrixCommandExists(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// matrixRun runs an external client program and speaks its line protocol.
func matrixRun(t *testing.T, w *world, cmd *exec.Cmd) matrixReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	// The deadline kills the program, which ends the reads below.
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	var r matrixReport
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Logf("%s: %s", filepath.Base(cmd.Args[len(cmd.Args)-1]), line)
		key, val, _ := strings.Cut(line, " ")
		switch key {
		case "version":
			r.version = val
		case "user":
			r.user = val
		case "pid":
			r.pid = val
		case "copy_out":
			r.copyOut = val
		case "copy_in":
			r.copyIn = val
		case "sleeping":
			matrixWaitSleeping(t, ctx, w, r.pid)
			if _, err := io.WriteString(stdin, "cancel\n"); err != nil {
				t.Errorf("telling the client to cancel: %v", err)
			}
		case "cancelled":
			r.cancelled = val
		case "alive":
			r.alive = val
		case "done":
			r.done = true
		default:
			t.Errorf("unexpected line from the client: %q", line)
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("%s: %v\nstderr:\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	} else if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("stderr:\n%s", s)
	}
	return r
}

// matrixWaitSleeping waits until the backend pid runs pg_sleep.
func matrixWaitSleeping(t *testing.T, ctx context.Context, w *world, pid string) {
	t.Helper()
	if _, err := strconv.Atoi(pid); err != nil {
		t.Fatalf("client reported no backend pid before sleeping (got %q)", pid)
	}
	waitFor(t, ctx, w, fmt.Sprintf("select 1 from pg_stat_activity where pid = %s and state = 'active' and query like 'select pg_sleep%%'", pid))
}

// matrixCheck asserts one client's report and what it left in the
// database, and that the cancel went through the proxy's cancel routing.
func matrixCheck(t *testing.T, w *world, r matrixReport, table string) {
	t.Helper()
	if r.user != "alice" {
		t.Errorf("current_user = %q, want alice", r.user)
	}
	if got, want := r.copyOut, strconv.Itoa(matrixBytes()); got != want {
		t.Errorf("COPY TO STDOUT gave %s bytes, want %s", got, want)
	}
	if matrixBytes() < matrixMinBytes {
		t.Fatalf("test data too small: %d bytes", matrixBytes())
	}
	if got, want := r.copyIn, strconv.Itoa(matrixRows); got != want {
		t.Errorf("COPY FROM STDIN reported %s rows, want %s", got, want)
	}
	if !strings.HasPrefix(r.cancelled, "57014 ") {
		t.Errorf("pg_sleep ended with %q, want SQLSTATE 57014 (canceling statement due to user request)", r.cancelled)
	}
	if r.alive != r.pid || r.pid == "" {
		t.Errorf("after the cancel the session answered pid %q, want the same session %q", r.alive, r.pid)
	}
	if !r.done {
		t.Error("the client did not finish")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows := matrixAppRows(t, ctx, w, fmt.Sprintf("select count(*)::text, sum(length(s))::text, sum(i)::text from %s", table))
	if want := []string{strconv.Itoa(matrixRows), strconv.Itoa(matrixRows * 1000), strconv.Itoa(matrixRows * (matrixRows + 1) / 2)}; len(rows) != 1 || strings.Join(rows[0], ",") != strings.Join(want, ",") {
		t.Errorf("%s after COPY FROM STDIN: %v, want %v", table, rows, want)
	}
	if !strings.Contains(w.logBuf.String(), fmt.Sprintf(`msg="cancel request forwarded" backend_pid=%s`, r.pid)) {
		t.Errorf("proxy log shows no cancel forwarded to backend pid %s", r.pid)
	}
}

// matrixAppRows queries database app directly as the superuser.
func matrixAppRows(t *testing.T, ctx context.Context, w *world, query string) [][]string {
	t.Helper()
	rows, err := w.superuserRowsIn(ctx, "app", query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	var out [][]string
	for _, row := range rows {
		var r []string
		for _, v := range row {
			r = append(r, string(v))
		}
		out = append(out, r)
	}
	return out
}

// matrixALPNCount counts authorized connections that negotiated ALPN
// "postgresql" (direct TLS clients; libpq 15 and SSLRequest clients offer
// none).
func matrixALPNCount(w *world) int {
	n, _ := matrixAuthCounts(w)
	return n
}

// matrixAuthCounts counts "connection authorized" events: those with ALPN
// postgresql, and all of them.
func matrixAuthCounts(w *world) (alpn, all int) {
	for _, line := range strings.Split(w.logBuf.String(), "\n") {
		if strings.Contains(line, `msg="connection authorized"`) {
			all++
			if strings.Contains(line, "alpn=postgresql") {
				alpn++
			}
		}
	}
	return alpn, all
}

// matrixPsql drives psql: COPY with \copy (COPY ... TO STDOUT / FROM STDIN
// underneath), and a cancel by SIGINT, on which psql sends a
// CancelRequest (libpq PQcancel) and goes on with its next -c.
func matrixPsql(t *testing.T, w *world) string {
	matrixNeed(t, "psql (Debian postgresql-client)", matrixCommandExists("psql"))
	out, err := exec.Command("psql", "--version").Output()
	if err != nil {
		t.Fatalf("psql --version: %v", err)
	}
	version := strings.TrimSpace(strings.TrimPrefix(string(out), "psql (PostgreSQL) "))
	version = "psql " + version
	t.Logf("version %s", version)
	conninfo := matrixConninfo(w, "application_name=matrix-psql")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	psqlCmd := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "psql", append([]string{"-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-d", conninfo}, args...)...)
		cmd.Env = cleanEnv()
		cmd.WaitDelay = 5 * time.Second
		return cmd
	}

	r := matrixReport{version: version}
	who, err := psqlCmd("-v", "ON_ERROR_STOP=1", "-F", " ", "-c", "select current_user, pg_backend_pid()").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, who)
	}
	r.user, _, _ = strings.Cut(strings.TrimSpace(string(who)), " ")

	file := filepath.Join(t.TempDir(), "copy.tsv")
	copyOut, err := psqlCmd("-v", "ON_ERROR_STOP=1",
		"-c", "CREATE TABLE matrix_psql (i int, s text)",
		"-c", fmt.Sprintf(`\copy (select i, repeat('x', 1000) from generate_series(1, %d) i) to '%s'`, matrixRows, file),
		"-c", fmt.Sprintf(`\copy matrix_psql from '%s'`, file)).CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, copyOut)
	}
	t.Logf("psql COPY:\n%s", copyOut)
	if want := fmt.Sprintf("CREATE TABLE\nCOPY %d\nCOPY %d\n", matrixRows, matrixRows); string(copyOut) != want {
		t.Errorf("psql printed %q, want %q", copyOut, want)
	}
	if fi, err := os.Stat(file); err == nil {
		r.copyOut = strconv.FormatInt(fi.Size(), 10)
	}
	r.copyIn = strconv.Itoa(matrixRows)

	// The cancel, as a user does it: interactive psql (on a pseudo
	// terminal, since psql reads commands interactively only from a tty)
	// gets SIGINT during pg_sleep, sends a CancelRequest (libpq PQcancel),
	// prints the error and reads the next command in the same session. A
	// non-interactive psql would exit after a cancel instead.
	master, tty, err := matrixOpenPty()
	if err != nil {
		t.Fatalf("pseudo terminal: %v", err)
	}
	defer master.Close()
	sleeper := psqlCmd("-n", "-q", "-P", "pager=off", "-v", "PROMPT1=", "-v", "PROMPT2=")
	sleeper.Stdin, sleeper.Stdout, sleeper.Stderr = tty, tty, tty
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var transcript bytes.Buffer
	copied := make(chan struct{})
	// The read ends with EIO once psql, the last holder of the tty, exits.
	go func() { _, _ = io.Copy(&transcript, master); close(copied) }()
	// The terminal holds the lines until psql reads them, one command
	// at a time.
	if _, err := io.WriteString(master, "select 'pid', pg_backend_pid();\nselect pg_sleep(60);\nselect 'alive', pg_backend_pid();\n\\q\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, w, "select pid::text from pg_stat_activity where application_name = 'matrix-psql' and state = 'active' and query like 'select pg_sleep%'")
	if err := sleeper.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = sleeper.Wait()
	<-copied
	t.Logf("interactive psql, SIGINT during pg_sleep (exit: %v):\n%s", err, strings.ReplaceAll(transcript.String(), "\r", ""))
	if m := regexp.MustCompile(`(?m)^pid\|(\d+)\r?$`).FindStringSubmatch(transcript.String()); m != nil {
		r.pid = m[1]
	}
	if strings.Contains(transcript.String(), "ERROR:  57014: canceling statement due to user request") {
		r.cancelled = "57014 canceling statement due to user request"
	}
	if m := regexp.MustCompile(`(?m)^alive\|(\d+)\r?$`).FindStringSubmatch(transcript.String()); m != nil {
		r.alive = m[1]
	}
	r.done = err == nil
	matrixCheck(t, w, r, "matrix_psql")
	return version
}

// matrixPgxVersion is the pgx version in go.mod (test binaries carry no module
// list in their build info).
func matrixPgxVersion(t *testing.T) string {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/jackc/pgx/v5" {
			return f[1]
		}
	}
	t.Fatal("go.mod names no github.com/jackc/pgx/v5")
	return ""
}

// matrixPgx runs the matrix with pgconn in process. keyLen is the cancel
// key length the proxy must hand out: 4 bytes for protocol 3.0, 32 for 3.2.
func matrixPgx(t *testing.T, w *world, table, extra string, keyLen int) string {
	version := "pgx " + matrixPgxVersion(t)
	t.Logf("version %s", version)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alpnBefore, authBefore := matrixAuthCounts(w)
	cfg, err := pgconn.ParseConfig(matrixConninfo(w, extra+" application_name=matrix-pgx"))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if got := len(pc.SecretKey()); got != keyLen {
		t.Errorf("cancel key is %d bytes, want %d (%s)", got, keyLen, extra)
	}
	direct := strings.Contains(extra, "sslnegotiation=direct")
	// The proxy logs the auth event just after it greets the client:
	// wait for this connection's event before counting.
	waitUntil(t, "the auth event", 10*time.Second, func() bool { _, all := matrixAuthCounts(w); return all > authBefore })
	if got := matrixALPNCount(w) - alpnBefore; (got > 0) != direct {
		t.Errorf("%d new connections with ALPN postgresql; want ALPN exactly when sslnegotiation=direct", got)
	}

	r := matrixReport{version: version, done: true}
	res := pc.ExecParams(ctx, "select current_user, pg_backend_pid()::text", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r.user, r.pid = string(res.Rows[0][0]), string(res.Rows[0][1])

	var out bytes.Buffer
	if _, err := pc.CopyTo(ctx, &out, fmt.Sprintf("COPY (select i, repeat('x', 1000) from generate_series(1, %d) i) TO STDOUT", matrixRows)); err != nil {
		t.Fatal(err)
	}
	r.copyOut = strconv.Itoa(out.Len())
	if err := pc.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (i int, s text)", table)).Close(); err != nil {
		t.Fatal(err)
	}
	tag, err := pc.CopyFrom(ctx, &out, fmt.Sprintf("COPY %s FROM STDIN", table))
	if err != nil {
		t.Fatal(err)
	}
	r.copyIn = strconv.FormatInt(tag.RowsAffected(), 10)

	done := make(chan error, 1)
	go func() { done <- pc.ExecParams(ctx, "select pg_sleep(60)", nil, nil, nil, nil).Read().Err }()
	matrixWaitSleeping(t, ctx, w, r.pid)
	// pgconn sends the CancelRequest over TLS the way the session
	// negotiated it (SSLRequest or direct), with the 4- or 32-byte key.
	if err := pc.CancelRequest(ctx); err != nil {
		t.Fatalf("CancelRequest: %v", err)
	}
	err = <-done
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		r.cancelled = pgErr.Code + " " + pgErr.Message
	} else {
		r.cancelled = fmt.Sprint(err)
	}
	res = pc.ExecParams(ctx, "select pg_backend_pid()::text", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("session unusable after cancel: %v", res.Err)
	}
	r.alive = string(res.Rows[0][0])
	matrixCheck(t, w, r, table)
	return version
}

// matrixJDBC runs testdata/clients/Matrix.java with Debian's pgjdbc. pgjdbc
// reads its key as PKCS#8 DER, made here from the PEM key.
func matrixJDBC(t *testing.T, w *world) string {
	matrixNeed(t, "java (Debian default-jdk-headless)", matrixCommandExists("java"))
	matrixNeed(t, "pgjdbc ("+pgjdbcJar+", Debian libpostgresql-jdbc-java)", matrixFileExists(pgjdbcJar))
	block, _ := pem.Decode(w.pki.clients["alice"].KeyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatal("alice's key is not a PKCS#8 PEM key")
	}
	pk8 := filepath.Join(w.dir, "client-alice.pk8")
	if err := os.WriteFile(pk8, block.Bytes, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("java", "-cp", pgjdbcJar, "testdata/clients/Matrix.java")
	cmd.Env = matrixEnv(w, "matrix_jdbc", pk8, "")
	r := matrixRun(t, w, cmd)
	matrixCheck(t, w, r, "matrix_jdbc")
	return r.version
}

// matrixNode runs testdata/clients/node/matrix.js with the pinned pg.
func matrixNode(t *testing.T, w *world, table, negotiation string) string {
	matrixNeed(t, "node (Debian nodejs)", matrixCommandExists("node"))
	for _, pkg := range []string{"pg", "pg-copy-streams"} {
		matrixNeed(t, "npm package "+pkg+" in "+nodeClientDir+"/node_modules", matrixFileExists(filepath.Join(nodeClientDir, "node_modules", pkg, "package.json")))
	}
	alpnBefore := matrixALPNCount(w)
	cmd := exec.Command("node", filepath.Join(nodeClientDir, "matrix.js"))
	cmd.Env = matrixEnv(w, table, "", negotiation)
	r := matrixRun(t, w, cmd)
	if got := matrixALPNCount(w) - alpnBefore; (got > 0) != (negotiation == "direct") {
		t.Errorf("%d new connections with ALPN postgresql; want ALPN exactly when sslnegotiation=direct", got)
	}
	matrixCheck(t, w, r, table)
	return r.version
}

// matrixPsycopg runs testdata/clients/matrix.py with Debian's psycopg 3.
// It must be Debian's python: a python3 earlier on PATH (pyenv) lacks it.
func matrixPsycopg(t *testing.T, w *world) string {
	err := exec.Command(debianPython, "-c", "import psycopg").Run()
	matrixNeed(t, "psycopg 3 for "+debianPython+" (Debian python3-psycopg)", err == nil)
	cmd := exec.Command(debianPython, "testdata/clients/matrix.py")
	cmd.Env = matrixEnv(w, "matrix_psycopg", "", "")
	r := matrixRun(t, w, cmd)
	matrixCheck(t, w, r, "matrix_psycopg")
	return r.version
}

// matrixOpenPty opens a pseudo terminal pair (posix_openpt, unlockpt, ptsname).
func matrixOpenPty() (master, tty *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", e)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, tty, nil
}
