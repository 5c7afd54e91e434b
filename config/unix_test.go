package config

import (
	"slices"
	"strings"
	"testing"
)

// TestUnixSocketKeys: unix_socket_directories is read as PostgreSQL's
// SplitDirectoriesString reads it, relative directories resolve against
// the configuration file's, and a socket path longer than sun_path holds
// is refused with PostgreSQL's text, naming the path.
func TestUnixSocketKeys(t *testing.T) {
	long := "/" + strings.Repeat("d", 100)
	for _, tc := range []struct {
		name, top string
		dirs      []string
		perm      SocketPermissions
		err       string
	}{
		{name: "default: none", top: "", perm: 0o777},
		{name: "empty is none", top: `unix_socket_directories = ""` + "\n", perm: 0o777},
		{name: "list", top: `unix_socket_directories = " /run/pg , sock ,@abstract"` + "\n", dirs: []string{"/run/pg", "/etc/pgcertgate/sock", "@abstract"}, perm: 0o777},
		{name: "quoted name keeps its comma", top: `unix_socket_directories = '"/run/a,b", /tmp/'` + "\n", dirs: []string{"/run/a,b", "/tmp"}, perm: 0o777},
		{name: "octal string", top: `unix_socket_directories = "/tmp"` + "\nunix_socket_permissions = \"0770\"\n", dirs: []string{"/tmp"}, perm: 0o770},
		{name: "toml octal integer", top: "unix_socket_permissions = 0o700\n", perm: 0o700},
		{name: "zero", top: "unix_socket_permissions = 0\n", perm: 0},
		{name: "decimal 777 is not 0777", top: "unix_socket_permissions = 777\n", err: `c.toml:1: unix_socket_permissions: 01411 is outside the valid range 0000..0777`},
		{name: "not a number", top: "unix_socket_permissions = \"rw\"\n", err: `c.toml:1: unix_socket_permissions: "rw" is not an integer`},
		{name: "empty name", top: `unix_socket_directories = "/tmp,,/run"` + "\n", err: "c.toml:1: unix_socket_directories: invalid list syntax: empty directory name"},
		{name: "trailing comma", top: `unix_socket_directories = "/tmp,"` + "\n", err: "c.toml:1: unix_socket_directories: invalid list syntax: empty directory name after the last comma"},
		{name: "unterminated quote", top: `unix_socket_directories = '"/tmp'` + "\n", err: "c.toml:1: unix_socket_directories: invalid list syntax: unterminated quoted name"},
		{name: "twice", top: `unix_socket_directories = "/tmp, /tmp/"` + "\n", err: `c.toml:1: unix_socket_directories: directory "/tmp" is listed twice`},
		{name: "too long for sun_path", top: "unix_socket_directories = \"" + long + "\"\n", err: `c.toml:1: unix_socket_directories: Unix-domain socket path "` + long + `/.s.PGSQL.6432" is too long (maximum 107 bytes)`},
		{name: "sockets only", top: "listen_addresses = \"\"\nunix_socket_directories = \"/tmp\"\n", dirs: []string{"/tmp"}, perm: 0o777},
		{name: "nowhere", top: "listen_addresses = \"\"\n", err: "c.toml:1: listen_addresses: empty, and so is unix_socket_directories: pgcertgate would listen nowhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/etc/pgcertgate/c.toml", []byte(tc.top+minimal))
			if tc.err != "" {
				want := strings.Replace(tc.err, "c.toml", "/etc/pgcertgate/c.toml", 1)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.SocketDirs(); !slices.Equal(got, tc.dirs) {
				t.Errorf("SocketDirs() = %q, want %q", got, tc.dirs)
			}
			if c.UnixSocketPermissions != tc.perm {
				t.Errorf("permissions %#o, want %#o", c.UnixSocketPermissions, tc.perm)
			}
		})
	}
}
