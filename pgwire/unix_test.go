package pgwire

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/config"
)

func unixConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	return &config.Config{Path: "/etc/pgcertgate/pgcertgate.toml", Port: 5999, UnixSocketDirectories: dir, UnixSocketPermissions: 0o777}
}

// deadPID is the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// livePID is the pid of a process that runs until the test ends.
func livePID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// TestListenUnix: the socket and its lock file are made as PostgreSQL
// makes them, a crashed run's leftovers are replaced, a live owner's are
// not, and every refusal names the path.
func TestListenUnix(t *testing.T) {
	t.Run("socket, lock and mode", func(t *testing.T) {
		dir := t.TempDir()
		cfg := unixConfig(t, dir)
		cfg.UnixSocketPermissions = 0o770
		cfg.UnixSocketGroup = strconv.Itoa(os.Getgid())
		ln, err := listenUnix(dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		socket := filepath.Join(dir, ".s.PGSQL.5999")
		fi, err := os.Stat(socket)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o770 {
			t.Errorf("socket mode %v, want a socket with 0770", fi.Mode())
		}
		lock, err := os.ReadFile(socket + ".lock")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%d\n/etc/pgcertgate\n%d\n5999\n%s\n", os.Getpid(), processStart.Unix(), dir)
		if string(lock) != want {
			t.Errorf("lock file:\n%q\nwant\n%q", lock, want)
		}
		if fi, err := os.Stat(socket + ".lock"); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("lock file mode: %v %v, want 0600", fi.Mode(), err)
		}
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{socket, socket + ".lock"} {
			if _, err := os.Stat(f); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s after Close: %v", f, err)
			}
		}
	})

	t.Run("leftovers", func(t *testing.T) {
		for _, tc := range []struct {
			name, lock string
			err        string // "" when the leftovers are replaced
		}{
			{name: "dead pid", lock: fmt.Sprintf("%d\n/data\n", deadPID(t))},
			{name: "our own pid: a container restarted with it", lock: fmt.Sprintf("%d\n", os.Getpid())},
			{name: "a PostgreSQL backend's negative pid, dead", lock: fmt.Sprintf("-%d\n", deadPID(t))},
			{name: "live pid", lock: fmt.Sprintf("%d\n", livePID(t)), err: `lock file "DIR/.s.PGSQL.5999.lock" already exists: is another server (PID `},
			{name: "empty", lock: "", err: `lock file "DIR/.s.PGSQL.5999.lock" is empty`},
			{name: "bogus", lock: "x\n", err: `bogus data in lock file "DIR/.s.PGSQL.5999.lock": "x"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				socket := filepath.Join(dir, ".s.PGSQL.5999")
				// A crashed run's socket: bound, never unlinked.
				old, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				old.SetUnlinkOnClose(false)
				old.Close()
				if err := os.WriteFile(socket+".lock", []byte(tc.lock), 0o600); err != nil {
					t.Fatal(err)
				}
				ln, err := listenUnix(dir, unixConfig(t, dir))
				if tc.err != "" {
					want := strings.ReplaceAll(tc.err, "DIR", dir)
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("got %v, want %q", err, want)
					}
					// Nothing of the live owner's is touched.
					if got, _ := os.ReadFile(socket + ".lock"); string(got) != tc.lock {
						t.Errorf("lock file changed to %q", got)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				c, err := net.Dial("unix", socket)
				if err != nil {
					t.Fatalf("the stale socket was not replaced: %v", err)
				}
				c.Close()
				if got, _ := os.ReadFile(socket + ".lock"); !strings.HasPrefix(string(got), strconv.Itoa(os.Getpid())+"\n") {
					t.Errorf("lock file %q does not start with our pid", got)
				}
			})
		}
	})

	t.Run("bad directories", func(t *testing.T) {
		base := t.TempDir()
		file := filepath.Join(base, "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ name, dir, group, err string }{
			{"missing", filepath.Join(base, "missing"), "", "no such directory"},
			{"not a directory", file, "", "not a directory"},
			{"unknown group", base, "no-such-group-pgcg", `group "no-such-group-pgcg" does not exist`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := unixConfig(t, tc.dir)
				cfg.UnixSocketGroup = tc.group
				srv := New(Options{Runtime: &config.Runtime{Config: cfg}})
				defer srv.Close()
				lns, err := srv.ListenUnix()
				want := fmt.Sprintf("could not create Unix-domain socket in directory %q: %s", tc.dir, tc.err)
				if err == nil || err.Error() != want {
					t.Fatalf("got %v (%d listeners), want %q", err, len(lns), want)
				}
				if entries, _ := os.ReadDir(base); len(entries) != 1 {
					t.Errorf("files left behind: %v", entries)
				}
			})
		}
	})

	t.Run("a later directory failing closes the earlier", func(t *testing.T) {
		good := t.TempDir()
		cfg := unixConfig(t, good+", "+filepath.Join(good, "missing"))
		srv := New(Options{Runtime: &config.Runtime{Config: cfg}})
		defer srv.Close()
		if _, err := srv.ListenUnix(); err == nil {
			t.Fatal("no error")
		}
		if entries, _ := os.ReadDir(good); len(entries) != 0 {
			t.Errorf("the first directory kept %v", entries)
		}
	})

	t.Run("abstract namespace", func(t *testing.T) {
		name := fmt.Sprintf("@pgcertgate-test-%d", os.Getpid())
		ln, err := listenUnix(name, unixConfig(t, name))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("unix", name+"/.s.PGSQL.5999")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
}

// TestPeerCredentials: the accepted side of a socket reads the
// connecting process's uid, gid and pid from the kernel.
func TestPeerCredentials(t *testing.T) {
	dir := t.TempDir()
	ln, err := listenUnix(dir, unixConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", filepath.Join(dir, ".s.PGSQL.5999"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_ = ln.(*unixListener).SetDeadline(time.Now().Add(10 * time.Second))
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	uid, gid, pid, err := peerCredentials(server.(*net.UnixConn))
	if err != nil {
		t.Fatal(err)
	}
	if uid != uint32(os.Getuid()) || gid != uint32(os.Getgid()) || pid != int32(os.Getpid()) {
		t.Errorf("credentials uid=%d gid=%d pid=%d, want %d %d %d", uid, gid, pid, os.Getuid(), os.Getgid(), os.Getpid())
	}
}

// TestOSUsers: the uid lookup peer authentication uses knows root, and
// says "user does not exist" for a uid the user database lacks, as
// PostgreSQL logs it.
func TestOSUsers(t *testing.T) {
	if name, err := (osUsers{}).LookupUID(0); err != nil || name != "root" {
		t.Errorf("uid 0: %q %v", name, err)
	}
	if _, err := (osUsers{}).LookupUID(4242); err == nil || err.Error() != "user does not exist" {
		t.Errorf("uid 4242: %v, want user does not exist", err)
	}
}
