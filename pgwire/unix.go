package pgwire

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/config"
)

// processStart is the lock files' third line, as PostgreSQL writes its
// postmaster's start time there.
var processStart = time.Now()

// ListenUnix opens a Unix-domain socket in each unix_socket_directories
// directory, the way PostgreSQL's postmaster does (pqcomm.c
// StreamServerPort, miscinit.c CreateLockFile):
//
//   - the socket is .s.PGSQL.<port>, beside a lock file .s.PGSQL.<port>.lock
//     whose first line is the owner's pid (then the configuration
//     directory, the start time, the port and the socket directory, the
//     layout of PostgreSQL's own lock). PostgreSQL reads the same file, so
//     the two interlock on a shared directory and port;
//   - a lock whose pid is gone, is our own or our parent's (a container
//     restarted with the same pid), or belongs to another user's process,
//     is stale: it and the socket beside it are replaced. A live one is an
//     error;
//   - the socket is then given unix_socket_group and
//     unix_socket_permissions.
//
// A directory starting with '@' is a Linux abstract-namespace socket: no
// file, so no lock, group or permissions. Any failure closes what was
// opened and returns an error naming the directory; nothing is listening
// then. Closing a listener removes its socket and lock file.
func (s *Server) ListenUnix() ([]net.Listener, error) {
	cfg := s.state.Load().rt.Config
	var lns []net.Listener
	for _, dir := range cfg.SocketDirs() {
		ln, err := listenUnix(dir, cfg)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("could not create Unix-domain socket in directory \"%s\": %w", dir, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// unixListener is one socket and its lock file.
type unixListener struct {
	*net.UnixListener
	lock string // "" for an abstract socket

	closeOnce sync.Once
	closeErr  error
}

// Close closes the socket, which removes its file, then the lock file, in
// PostgreSQL's order.
func (l *unixListener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.UnixListener.Close()
		if l.lock != "" {
			if err := os.Remove(l.lock); err != nil && !errors.Is(err, fs.ErrNotExist) {
				l.closeErr = errors.Join(l.closeErr, err)
			}
		}
	})
	return l.closeErr
}

func listenUnix(dir string, cfg *config.Config) (net.Listener, error) {
	path := config.SocketPath(dir, cfg.Port)
	if strings.HasPrefix(dir, "@") {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			return nil, bare(err)
		}
		return &unixListener{UnixListener: ln}, nil
	}
	gid, err := socketGroup(cfg.UnixSocketGroup)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errors.New("no such directory")
	case err != nil:
		return nil, bare(err)
	case !fi.IsDir():
		return nil, errors.New("not a directory")
	}
	lock := path + ".lock"
	if err := createLockFile(lock, path, dir, cfg); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(lock)
		}
	}()
	// Holding the lock, the socket file left by a crashed run can go, or
	// bind would fail.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("could not remove old socket file \"%s\": %w", path, bare(err))
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("could not bind Unix-domain socket \"%s\": %w", path, bare(err))
	}
	// Removes the socket file on Close.
	ln.SetUnlinkOnClose(true)
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("could not set group of file \"%s\": %w", path, bare(err))
		}
	}
	if err := os.Chmod(path, fs.FileMode(cfg.UnixSocketPermissions)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("could not set permissions of file \"%s\": %w", path, bare(err))
	}
	ok = true
	return &unixListener{UnixListener: ln, lock: lock}, nil
}

// socketGroup is unix_socket_group as a gid: a number is taken as it is, a
// name looked up; -1 when unset.
func socketGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group \"%s\" does not exist", name)
	}
	return strconv.Atoi(g.Gid)
}

// createLockFile mirrors CreateLockFile for a socket lock: create it
// exclusively, or find out whether the process that holds it still runs.
func createLockFile(lock, socket, dir string, cfg *config.Config) error {
	myPID, parentPID := os.Getpid(), os.Getppid()
	for tries := 0; ; tries++ {
		f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return writeLockFile(f, dir, cfg)
		}
		if !errors.Is(err, fs.ErrExist) || tries > 100 {
			return fmt.Errorf("could not create lock file \"%s\": %w", lock, bare(err))
		}
		data, err := os.ReadFile(lock)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile: try again
		}
		if err != nil {
			return fmt.Errorf("could not open lock file \"%s\": %w", lock, bare(err))
		}
		if len(data) == 0 {
			return fmt.Errorf("lock file \"%s\" is empty: either another server is starting, or the lock file is the remnant of a previous server startup crash", lock)
		}
		pid := lockPID(data)
		if pid <= 0 {
			first, _, _ := strings.Cut(string(data), "\n")
			return fmt.Errorf("bogus data in lock file \"%s\": \"%s\"", lock, first)
		}
		if pid != myPID && pid != parentPID && processRuns(pid) {
			return fmt.Errorf("lock file \"%s\" already exists: is another server (PID %d) using socket file \"%s\"?", lock, pid, socket)
		}
		if err := os.Remove(lock); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("could not remove old lock file \"%s\": %w", lock, bare(err))
		}
	}
}

// writeLockFile writes PostgreSQL's socket lock layout: pid, data
// directory (the configuration's directory here: pgcertgate has none),
// start time, port, socket directory.
func writeLockFile(f *os.File, dir string, cfg *config.Config) error {
	content := fmt.Sprintf("%d\n%s\n%d\n%d\n%s\n", os.Getpid(), filepath.Dir(cfg.Path), processStart.Unix(), cfg.Port, dir)
	_, err := f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("could not write lock file \"%s\": %w", f.Name(), bare(err))
	}
	return nil
}

// lockPID reads the lock's first line as atoi does; a negative pid (a
// PostgreSQL backend's) names the same process. 0 means no pid.
func lockPID(data []byte) int {
	s := strings.TrimLeft(string(data), " \t\n\r\f\v")
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	n := 0
	for i := 0; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
		if n > 1<<31 {
			return 0
		}
	}
	return n
}

// processRuns is CreateLockFile's test: kill(pid, 0) succeeds, or fails
// with anything but ESRCH (no such process) and EPERM (a process of
// another user, which cannot be a server of ours).
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || (!errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.EPERM))
}

// bare drops an *fs.PathError's operation and path, which the caller's
// message already names.
func bare(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		if se, ok := oe.Err.(*os.SyscallError); ok {
			return se.Err
		}
		return oe.Err
	}
	return err
}

// localPeer is what a Unix-domain socket tells of its client: the
// credentials the kernel recorded when it connected (SO_PEERCRED), and,
// once peer authentication has looked it up, its OS user name.
type localPeer struct {
	uid, gid uint32
	pid      int32
	err      error // the credentials could not be read
	osUser   string
	// peer: the session was admitted by a peer line, so the uid is who
	// it is (the reuse key and pass_client_identity say so).
	peer bool
}

// initLocal records a Unix-domain socket client: PostgreSQL's "[local]"
// host, and the peer's credentials, read once at accept.
func (c *clientConn) initLocal(uc *net.UnixConn) {
	lp := &localPeer{}
	lp.uid, lp.gid, lp.pid, lp.err = peerCredentials(uc)
	c.local = lp
	c.note(slog.Uint64("conn_id", c.id), slog.String("client", "[local]"))
	if lp.err == nil {
		c.note(slog.Uint64("peer_uid", uint64(lp.uid)), slog.Uint64("peer_gid", uint64(lp.gid)), slog.Int64("peer_pid", int64(lp.pid)))
	}
}

// clientHost names the client as PostgreSQL's log does: its address, or
// "[local]" on a Unix-domain socket.
func (c *clientConn) clientHost() string { return authz.ClientHost(c.local != nil, c.addr) }

// noteDecision keeps what the socket session's decision said of its peer.
func (c *clientConn) noteDecision(d *authz.Decision) {
	if c.local != nil {
		c.local.osUser = d.OSUser
		c.local.peer = authz.PeerLine(d.Entry)
	}
}

// reuseHolder is who the client proved to be, for the reuse key: the
// leaf certificate's SHA-256; on a socket admitted by peer, its uid (the
// OS user the kernel vouches for); otherwise "-", the hba line alone
// (trust).
func (c *clientConn) reuseHolder() string {
	switch {
	case c.peer != nil:
		return c.peer.Fingerprint()
	case c.local != nil && c.local.peer:
		return "uid:" + strconv.FormatUint(uint64(c.local.uid), 10)
	}
	return "-"
}

// identity is pass_client_identity's pgcertgate.identity: the
// certificate's DN, or a peer session's OS user name.
func (c *clientConn) identity() string {
	switch {
	case c.peer != nil:
		return c.peer.Subject
	case c.local != nil && c.local.peer:
		return c.local.osUser
	}
	return ""
}

// osUsers resolves uids with os/user: getpwuid through the C library when
// built with cgo, and a read of /etc/passwd alone in a static build
// (CGO_ENABLED=0), which then knows only the users that file lists.
type osUsers struct{}

func (osUsers) LookupUID(uid uint32) (string, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		if _, ok := errors.AsType[user.UnknownUserIdError](err); ok {
			return "", authz.ErrUnknownUser
		}
		return "", err
	}
	return u.Username, nil
}

var _ authz.UserLookup = osUsers{}

// declineSSL answers an SSLRequest on a Unix-domain socket with 'N', as
// PostgreSQL does (it never runs SSL over a socket): the client goes on in
// plaintext, or asks for GSSAPI. Bytes that came with the request were
// sent before the answer, which PostgreSQL refuses here too.
func (c *clientConn) declineSSL() error {
	if _, err := c.conn.Write([]byte{'N'}); err != nil {
		return errSilentClose
	}
	if c.r.Buffered() > 0 {
		e := fatal(codeProtocolViolation, "plaintext_after_ssl_request", "received unencrypted data after SSL request")
		e.Detail = mitmDetail
		e.LogDetail = mitmDetail
		return e
	}
	return nil
}
