package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// SocketPermissions is unix_socket_permissions: a file mode from 0 to
// 0777. The file may give it as an integer (0o770; TOML has no leading-zero
// octal) or as a string read as postgresql.conf reads an integer, so that
// "0770" is octal and "0x1f8" hexadecimal.
type SocketPermissions uint32

// UnmarshalText implements encoding.TextUnmarshaler; the TOML decoder
// hands an integer over as its decimal text.
func (p *SocketPermissions) UnmarshalText(b []byte) error {
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 0, 64)
	if err != nil {
		return fmt.Errorf("%q is not an integer", b)
	}
	if v < 0 || v > 0o777 {
		return fmt.Errorf("%#o is outside the valid range 0000..0777 (write 0o770 or \"0770\" for octal)", v)
	}
	*p = SocketPermissions(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler, in postgresql.conf's
// four-digit octal.
func (p SocketPermissions) MarshalText() ([]byte, error) {
	return []byte(fmt.Sprintf("%04o", uint32(p))), nil
}

// maxSocketPath is the longest Unix-domain socket path: sun_path holds 108
// bytes on Linux with the terminating NUL (pqcomm.c StreamServerPort).
const maxSocketPath = 107

// SocketPath is the Unix-domain socket a server on port listens on in dir,
// as PostgreSQL names it (UNIXSOCK_PATH).
func SocketPath(dir string, port int) string {
	return filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(port))
}

// SocketDirs returns unix_socket_directories as a list, each directory
// cleaned and, when relative, resolved against the configuration file's
// directory. A name starting with '@' is a Linux abstract-namespace
// socket, as in PostgreSQL, and is kept as written. Parse has already
// checked the list; a list it would refuse yields nil.
func (c *Config) SocketDirs() []string {
	dirs, err := splitDirectories(c.UnixSocketDirectories)
	if err != nil {
		return nil
	}
	base := filepath.Dir(c.Path)
	for i, d := range dirs {
		switch {
		case strings.HasPrefix(d, "@"):
		case filepath.IsAbs(d):
			dirs[i] = filepath.Clean(d)
		default:
			dirs[i] = filepath.Join(base, d)
		}
	}
	return dirs
}

// validateUnix checks the unix_socket_* keys. Whether a directory exists
// and is writable, and whether the group exists, is learnt when the
// listener opens, at start.
func (c *Config) validateUnix() []error {
	var errs []error
	if _, err := splitDirectories(c.UnixSocketDirectories); err != nil {
		return append(errs, c.keyError("unix_socket_directories", "%v", err))
	}
	seen := map[string]bool{}
	for _, d := range c.SocketDirs() {
		if seen[d] {
			errs = append(errs, c.keyError("unix_socket_directories", "directory \"%s\" is listed twice", d))
			continue
		}
		seen[d] = true
		if p := SocketPath(d, c.Port); len(p) > maxSocketPath {
			// PostgreSQL's own text for it.
			errs = append(errs, c.keyError("unix_socket_directories", "Unix-domain socket path \"%s\" is too long (maximum %d bytes)", p, maxSocketPath))
		}
	}
	if g := c.UnixSocketGroup; g != "" && strings.TrimSpace(g) != g {
		errs = append(errs, c.keyError("unix_socket_group", "%q has leading or trailing spaces", g))
	}
	return errs
}

// splitDirectories mirrors PostgreSQL's SplitDirectoriesString: names
// separated by commas, whitespace around each ignored, a name in double
// quotes taken literally ("" inside is a quote). An empty string is an
// empty list; an empty name inside a list is an error.
func splitDirectories(s string) ([]string, error) {
	const invalid = "invalid list syntax"
	isSpace := func(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v' }
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	skip()
	if i == len(s) {
		return nil, nil
	}
	var out []string
	for {
		var name string
		if s[i] == '"' {
			var b strings.Builder
			i++
			for {
				if i == len(s) {
					return nil, fmt.Errorf("%s: unterminated quoted name", invalid)
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			name = b.String()
		} else {
			start := i
			for i < len(s) && s[i] != ',' {
				i++
			}
			name = strings.TrimRightFunc(s[start:i], func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
		}
		skip()
		if name == "" {
			return nil, fmt.Errorf("%s: empty directory name", invalid)
		}
		out = append(out, name)
		if i == len(s) {
			return out, nil
		}
		if s[i] != ',' {
			return nil, fmt.Errorf("%s: text after the quoted name %q", invalid, name)
		}
		i++
		skip()
		if i == len(s) {
			return nil, fmt.Errorf("%s: empty directory name after the last comma", invalid)
		}
	}
}
