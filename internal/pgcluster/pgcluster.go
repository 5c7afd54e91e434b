// Package pgcluster runs a throwaway PostgreSQL server for tests and the
// demo.
//
// A cluster is a fresh data directory (copied from a cached initdb template,
// see [Options.NoTemplate]) started with pg_ctl on its own Unix socket
// directory and port, and stopped with an immediate shutdown. Durability is
// switched off (fsync=off, initdb --no-sync): a crash loses the cluster,
// which is fine for a throwaway server.
//
// PostgreSQL refuses to run as root, so when the current process is root
// every server command runs as the "postgres" OS user and the cluster
// directory is chowned to it; otherwise everything runs as the current user.
//
// Clusters are not reaped if the process dies without calling
// [Cluster.Stop]; a killed test binary leaves a postmaster behind.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout bounds each command pgcluster runs (initdb, pg_ctl) and
// each SQL call, when the context has no earlier deadline.
const DefaultTimeout = 60 * time.Second

// DefaultHBA is the pg_hba.conf used when [Options.HBA] is empty.
const DefaultHBA = "local all all trust\n"

// maxSocketPath is the longest Unix socket path PostgreSQL accepts: sun_path
// is 108 bytes on Linux including the terminating NUL (pqcomm.c
// StreamServerPort, "Unix-domain socket path ... is too long").
const maxSocketPath = 107

// socketName is the longest socket file name: ".s.PGSQL." + a 5-digit port.
const socketName = "/.s.PGSQL.65535"

// Options configures [Start]. The zero value is a Unix-socket-only cluster
// with trust authentication.
type Options struct {
	// BinDir holds initdb, pg_ctl and postgres. Empty means the output of
	// `pg_config --bindir`, else the directory of the first initdb on PATH.
	BinDir string

	// Dir is the parent of the data directory ("data"), the server log
	// ("postgres.log") and, when the path is short enough, the Unix socket.
	// Empty means a new "pgc*" directory, removed by Stop, in /dev/shm when
	// that is a roomy tmpfs (much faster, see tempParent) or else in
	// os.TempDir(). A given Dir is kept (only its contents are created) and
	// must not contain "data" already. When running as root, every ancestor
	// of Dir must be searchable by the postgres user: t.TempDir() (mode
	// 0700) is not.
	Dir string

	// ListenAddresses is postgresql.conf listen_addresses. Empty means Unix
	// socket only; "127.0.0.1" enables TCP on the loopback.
	ListenAddresses string

	// Port is the server port. 0 means a free TCP port (chosen by binding
	// 127.0.0.1:0), also for socket-only clusters, where the port names the
	// socket file. With TCP, a port taken between the check and the
	// server's bind is retried with another port.
	Port int

	// HBA is the pg_hba.conf content. Empty means [DefaultHBA]. The
	// cluster's own SQL helpers connect over the Unix socket as the
	// superuser, so they need a line that lets that in.
	HBA string

	// Ident is the pg_ident.conf content. Empty keeps initdb's (no maps).
	Ident string

	// Conf holds extra postgresql.conf settings, applied after (and so
	// overriding) pgcluster's own. Values are written as quoted strings,
	// which PostgreSQL accepts for every setting type, e.g.
	// {"ssl": "on", "ssl_cert_file": "server.crt", "max_connections": "20"}.
	// Relative file paths are relative to the data directory.
	Conf map[string]string

	// Files are written into the data directory before the server starts,
	// keyed by slash-separated relative path (parent directories are
	// created), with mode 0600 and owned by the server's user, as
	// PostgreSQL requires for server.key.
	Files map[string][]byte

	// Superuser is the bootstrap superuser's name. Empty means "postgres".
	Superuser string

	// NoTemplate runs initdb for this cluster instead of copying the
	// cached template data directory (see [Start]).
	NoTemplate bool

	// Timeout bounds each command and SQL call. 0 means DefaultTimeout.
	Timeout time.Duration
}

// Cluster is a running PostgreSQL server. Its methods are safe for
// concurrent use.
type Cluster struct {
	bin        string
	dir        string
	ownDir     bool   // dir was created by Start, and Stop removes it
	socketDir  string // dir, or a separate short temp dir
	ownSocket  bool   // socketDir is separate, and Stop removes it
	dataDir    string
	ownData    bool // dataDir did not exist before Start
	logFile    string
	port       int
	listen     string
	superuser  string
	timeout    time.Duration
	cred       *syscall.Credential // nil: run as the current user
	baseConf   []byte              // initdb's postgresql.conf
	majorVer   int
	stopOnce   sync.Once
	stopErr    error
	startedFor time.Duration
}

// Start creates and starts a cluster. It returns once the server accepts
// connections (pg_ctl -w).
//
// The first cluster per (binaries, superuser) runs initdb and saves the
// result under os.UserCacheDir()/pgcluster as a template; later clusters,
// in this or any other process, copy it instead, which is several times
// faster. Delete that directory to force a fresh initdb. A side effect is
// that clusters share pg_control's system identifier, which only matters
// for physical replication between them.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	c := &Cluster{
		listen:    opts.ListenAddresses,
		superuser: opts.Superuser,
		timeout:   opts.Timeout,
	}
	if c.superuser == "" {
		c.superuser = "postgres"
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.bin, err = findBinDir(ctx, opts.BinDir, c.timeout); err != nil {
		return nil, err
	}
	if c.cred, err = serverCredential(); err != nil {
		return nil, err
	}
	if err := validateOptions(&opts); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// The error carries the log tail; leave a caller's Dir
			// reusable by removing the half-made data directory too.
			if c.ownData && !c.ownDir {
				_ = os.RemoveAll(c.dataDir)
			}
			_ = c.removeDirs()
		}
	}()
	if err := c.makeDirs(opts.Dir); err != nil {
		return nil, err
	}

	begin := time.Now()
	if err := c.initData(ctx, opts.NoTemplate); err != nil {
		return nil, err
	}
	if c.baseConf, err = os.ReadFile(filepath.Join(c.dataDir, "postgresql.conf")); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if err := c.writeSetup(opts); err != nil {
		return nil, err
	}

	c.port = opts.Port
	for attempt := 0; ; attempt++ {
		if opts.Port == 0 {
			if c.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		if err := c.writeConf(opts.Conf); err != nil {
			return nil, err
		}
		err = c.start(ctx)
		if err == nil {
			break
		}
		// Another process may take the free port before the server binds
		// it; only then is a retry with a new port worthwhile.
		if opts.Port != 0 || c.listen == "" || attempt == 2 || !strings.Contains(err.Error(), "could not bind") {
			return nil, err
		}
	}
	c.startedFor = time.Since(begin)
	return c, nil
}

func validateOptions(opts *Options) error {
	for k := range opts.Conf {
		if !confName.MatchString(k) {
			return fmt.Errorf("pgcluster: invalid configuration parameter name %q", k)
		}
	}
	for name := range opts.Files {
		if _, err := dataPath("", name); err != nil {
			return err
		}
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return fmt.Errorf("pgcluster: invalid port %d", opts.Port)
	}
	return nil
}

// confName is what postgresql.conf accepts as a parameter name
// (guc-file.l ID, including custom "ext.name" parameters).
var confName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$.]*$`)

// findBinDir locates the server binaries: explicit, then pg_config, then
// PATH, reporting everything it tried when none works.
func findBinDir(ctx context.Context, dir string, timeout time.Duration) (string, error) {
	if dir != "" {
		return dir, checkBinDir(dir)
	}
	var tried []string
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
		if err == nil {
			d := strings.TrimSpace(string(out))
			if err := checkBinDir(d); err == nil {
				return d, nil
			}
			tried = append(tried, fmt.Sprintf("%s --bindir gave %s, which lacks the server binaries", pgConfig, d))
		} else {
			tried = append(tried, fmt.Sprintf("%s --bindir: %v", pgConfig, err))
		}
	} else {
		tried = append(tried, "pg_config is not on PATH")
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		// Resolve symlinks such as /usr/local/bin/initdb so pg_ctl and
		// postgres are found next to the real binary.
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			initdb = real
		}
		d := filepath.Dir(initdb)
		if err := checkBinDir(d); err == nil {
			return d, nil
		}
		tried = append(tried, fmt.Sprintf("initdb on PATH is in %s, which lacks pg_ctl or postgres", d))
	} else {
		tried = append(tried, "initdb is not on PATH")
	}
	// Debian and Ubuntu keep the server binaries off PATH, one directory
	// per major version; take the newest.
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(dirs) > 0 {
		sort.Slice(dirs, func(i, j int) bool { return debianMajor(dirs[i]) > debianMajor(dirs[j]) })
		for _, d := range dirs {
			if checkBinDir(d) == nil {
				return d, nil
			}
		}
		tried = append(tried, "no complete /usr/lib/postgresql/*/bin")
	}
	return "", fmt.Errorf("pgcluster: PostgreSQL server binaries not found (%s); install them or set Options.BinDir", strings.Join(tried, "; "))
}

// debianMajor is the major version in /usr/lib/postgresql/<major>/bin.
func debianMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func checkBinDir(dir string) error {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pgcluster: BinDir %s: no %s: %w", dir, name, err)
		}
	}
	return nil
}

// serverCredential returns the identity to run the server as: nil (the
// current user) unless we are root, which PostgreSQL refuses
// (main.c check_root: "root" execution of the PostgreSQL server is not
// permitted).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: running as root, which PostgreSQL refuses, and there is no %q OS user to run the server as: %w", "postgres", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgcluster: user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeDirs creates the cluster directory, the socket directory if Dir is
// too long to hold the socket, and hands both to the server's user.
func (c *Cluster) makeDirs(dir string) error {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp(tempParent(), "pgc"); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		c.ownDir = true
	} else {
		if dir, err = filepath.Abs(dir); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
	}
	c.dir = dir
	c.dataDir = filepath.Join(dir, "data")
	c.logFile = filepath.Join(dir, "postgres.log")
	if _, err := os.Lstat(c.dataDir); err == nil {
		return fmt.Errorf("pgcluster: %s already exists", c.dataDir)
	}
	c.ownData = true
	if err := c.own(dir, 0o700); err != nil {
		return err
	}
	if err := c.checkSearchable(dir); err != nil {
		return err
	}
	c.socketDir = dir
	if len(dir)+len(socketName) > maxSocketPath {
		if c.socketDir, err = os.MkdirTemp(tempParent(), "pgs"); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		c.ownSocket = true
		if len(c.socketDir)+len(socketName) > maxSocketPath {
			return fmt.Errorf("pgcluster: socket directory %s is too long for a Unix socket path (maximum %d bytes); set TMPDIR to a shorter directory", c.socketDir, maxSocketPath)
		}
		if err := c.own(c.socketDir, 0o700); err != nil {
			return err
		}
		if err := c.checkSearchable(c.socketDir); err != nil {
			return err
		}
	}
	return nil
}

// own sets path's mode and, when the server runs as another user, its
// owner.
func (c *Cluster) own(path string, mode fs.FileMode) error {
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if c.cred != nil {
		if err := os.Lchown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
	}
	return nil
}

// checkSearchable fails early, with a clear message, when the server's user
// cannot reach dir because an ancestor lacks search permission for it (for
// example a TMPDIR under /root); initdb's own error is much less direct.
func (c *Cluster) checkSearchable(dir string) error {
	if c.cred == nil {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		searchable := perm&0o001 != 0 ||
			ok && st.Uid == c.cred.Uid && perm&0o100 != 0 ||
			ok && st.Gid == c.cred.Gid && perm&0o010 != 0
		if !searchable {
			return fmt.Errorf("pgcluster: directory %s (mode %v) is not searchable by the postgres user, which runs the server; use a Dir or TMPDIR outside it", d, perm)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// initData fills the data directory, from the template when allowed.
func (c *Cluster) initData(ctx context.Context, noTemplate bool) error {
	if noTemplate {
		return c.initdb(ctx)
	}
	return c.fromTemplate(ctx)
}

func (c *Cluster) initdb(ctx context.Context) error {
	// --no-sync and trust make initdb fast and the server usable without
	// passwords; --locale=C keeps server messages in English, which tests
	// compare against.
	_, err := c.run(ctx, "initdb", "-D", c.dataDir, "-A", "trust", "--no-sync",
		"-E", "UTF8", "--locale=C", "-U", c.superuser)
	return err
}

// writeSetup writes pg_hba.conf, pg_ident.conf and the extra files.
func (c *Cluster) writeSetup(opts Options) error {
	hba := opts.HBA
	if hba == "" {
		hba = DefaultHBA
	}
	if err := c.WriteFile("pg_hba.conf", []byte(hba), 0o600); err != nil {
		return err
	}
	if opts.Ident != "" {
		if err := c.WriteFile("pg_ident.conf", []byte(opts.Ident), 0o600); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Files)) {
		if err := c.WriteFile(name, opts.Files[name], 0o600); err != nil {
			return err
		}
	}
	ver, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION"))
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	c.majorVer, _ = strconv.Atoi(strings.TrimSpace(string(ver)))
	return nil
}

// writeConf rewrites postgresql.conf as initdb's content followed by
// pgcluster's settings and then the caller's, so later lines win.
func (c *Cluster) writeConf(extra map[string]string) error {
	var b bytes.Buffer
	b.Write(c.baseConf)
	b.WriteString("\n# Added by pgcluster.\n")
	settings := [][2]string{
		{"listen_addresses", c.listen},
		{"port", strconv.Itoa(c.port)},
		{"unix_socket_directories", c.socketDir},
		// Durability is pointless for a throwaway cluster, and slow.
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "off"},
		{"shared_buffers", "16MB"},
		{"max_connections", "100"},
		// Less background work on small CI machines.
		{"autovacuum", "off"},
		// pg_ctl -l sends stderr to postgres.log, which Log reads.
		{"logging_collector", "off"},
		{"log_destination", "stderr"},
		// "connection authenticated: identity=... method=cert" and
		// "connection authorized: user=..." are what tests check.
		{"log_connections", "on"},
		{"lc_messages", "C"},
	}
	for _, kv := range settings {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], confQuote(kv[1]))
	}
	if len(extra) > 0 {
		b.WriteString("# Options.Conf\n")
		for _, k := range slices.Sorted(maps.Keys(extra)) {
			fmt.Fprintf(&b, "%s = %s\n", k, confQuote(extra[k]))
		}
	}
	return c.WriteFile("postgresql.conf", b.Bytes(), 0o600)
}

// confQuote quotes v as a postgresql.conf string literal (guc-file.l
// STRING: a doubled quote is a quote; backslash escapes are also
// processed, so backslashes are doubled).
func confQuote(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

func (c *Cluster) start(ctx context.Context) error {
	_, err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-l", c.logFile, "-w", "-t", strconv.Itoa(int(c.timeout/time.Second)), "start")
	if err == nil {
		return nil
	}
	// pg_ctl may give up while the postmaster still runs (timeout, or the
	// context); make sure it does not outlive the failed Start.
	if _, statErr := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); statErr == nil {
		_, _ = c.run(context.WithoutCancel(ctx), "pg_ctl", "-D", c.dataDir, "-m", "immediate", "-w", "stop")
	}
	return fmt.Errorf("%w\nserver log tail:\n%s", err, c.logTail(30))
}

// logTail returns the last n lines of the server log.
func (c *Cluster) logTail(n int) string {
	data, err := os.ReadFile(c.logFile)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.logFile, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs a server binary as the server's user, in the cluster directory
// (the process's own working directory may be unreadable to that user),
// with a minimal environment so that PG* variables of the caller cannot
// change what initdb or pg_ctl do.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + c.bin + ":/usr/bin:/bin", "LC_ALL=C", "LANG=C"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		cmd.Env = append(cmd.Env, "TZ="+tz)
	}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return string(out), fmt.Errorf("pgcluster: %s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pgcluster: pick a free port: %w", err)
	}
	return port, nil
}

// Stop shuts the server down (pg_ctl stop -m immediate: no checkpoint, as
// nothing needs to survive) and removes the directories Start created.
// Later calls return the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		ctx := context.Background()
		var errs []error
		if _, err := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); err == nil {
			if _, err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-m", "immediate", "-w", "stop"); err != nil {
				errs = append(errs, err)
			}
		}
		// Keep the files for inspection if the server may still be running.
		if len(errs) == 0 {
			errs = append(errs, c.removeDirs())
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

func (c *Cluster) removeDirs() error {
	var errs []error
	if c.ownSocket && c.socketDir != "" {
		errs = append(errs, os.RemoveAll(c.socketDir))
	}
	if c.ownDir && c.dir != "" {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

// SocketDir returns the Unix socket directory (libpq's host for a local
// connection).
func (c *Cluster) SocketDir() string { return c.socketDir }

// Port returns the server port.
func (c *Cluster) Port() int { return c.port }

// DataDir returns the data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// Dir returns the cluster directory, which holds the data directory and
// the server log.
func (c *Cluster) Dir() string { return c.dir }

// MajorVersion returns the server's major version (PG_VERSION), e.g. 15.
func (c *Cluster) MajorVersion() int { return c.majorVer }

// StartDuration returns how long Start took from creating the data
// directory to the server accepting connections.
func (c *Cluster) StartDuration() time.Duration { return c.startedFor }

// Host returns the host clients should connect to: the first listen address
// for a TCP cluster ("*" and "0.0.0.0" become 127.0.0.1, "::" becomes ::1),
// else the socket directory.
func (c *Cluster) Host() string {
	if c.listen == "" {
		return c.socketDir
	}
	h := strings.TrimSpace(strings.Split(c.listen, ",")[0])
	switch h {
	case "*", "0.0.0.0":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return h
}

// Addr returns Host():Port() for a TCP cluster, or "" for a socket-only one.
func (c *Cluster) Addr() string {
	if c.listen == "" {
		return ""
	}
	return net.JoinHostPort(c.Host(), strconv.Itoa(c.port))
}

// SuperuserDSN returns a keyword/value connection string for the superuser
// over the Unix socket.
func (c *Cluster) SuperuserDSN() string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable",
		dsnQuote(c.socketDir), c.port, dsnQuote(c.superuser))
}

// dsnQuote quotes a libpq keyword/value value when it needs it.
func dsnQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`) {
		return v
	}
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
}

// WriteHBA replaces pg_hba.conf. Call Reload to apply it.
func (c *Cluster) WriteHBA(content string) error {
	return c.WriteFile("pg_hba.conf", []byte(content), 0o600)
}

// WriteIdent replaces pg_ident.conf. Call Reload to apply it.
func (c *Cluster) WriteIdent(content string) error {
	return c.WriteFile("pg_ident.conf", []byte(content), 0o600)
}

// WriteFile writes data to name, a slash-separated path relative to the
// data directory, creating parent directories, with exactly mode, owned by
// the server's user.
func (c *Cluster) WriteFile(name string, data []byte, mode fs.FileMode) error {
	path, err := dataPath(c.dataDir, name)
	if err != nil {
		return err
	}
	// Create missing parents one by one so each is owned by the server.
	rel := filepath.Dir(filepath.FromSlash(name))
	if rel != "." {
		d := c.dataDir
		for _, part := range strings.Split(rel, string(filepath.Separator)) {
			d = filepath.Join(d, part)
			if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("pgcluster: %w", err)
			} else if err == nil {
				if err := c.own(d, 0o700); err != nil {
					return err
				}
			}
		}
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return c.own(path, mode)
}

// dataPath joins name to the data directory, refusing names that escape it.
func dataPath(dataDir, name string) (string, error) {
	if name == "" || !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", fmt.Errorf("pgcluster: file name %q is not a relative path inside the data directory", name)
	}
	return filepath.Join(dataDir, filepath.FromSlash(name)), nil
}

// Log returns the server log so far.
func (c *Cluster) Log() (string, error) {
	data, err := os.ReadFile(c.logFile)
	if err != nil {
		return "", fmt.Errorf("pgcluster: %w", err)
	}
	return string(data), nil
}

// LogFile returns the path of the server log.
func (c *Cluster) LogFile() string { return c.logFile }
