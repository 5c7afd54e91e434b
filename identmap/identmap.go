// Package identmap implements a pg_ident.conf parser and user-name mapper.
//
// It mirrors PostgreSQL 18's src/backend/libpq/hba.c: parse_ident_line
// (load time), check_ident_usermap and check_usermap (lookup). Files are
// tokenized by package internal/authfile, PostgreSQL's tokenizer for both
// pg_hba.conf and pg_ident.conf (quotes, comments, continuation lines,
// @file, include, include_if_exists, include_dir).
//
// Regular expressions (a system-user or database-user token starting with
// '/') are PostgreSQL AREs, compiled at load time by package internal/are,
// which pg_hba.conf's /regex fields share: they match exactly what
// PostgreSQL matches, byte-wise in the C locale as PostgreSQL runs them
// during authentication; constructs Go's RE2 cannot reproduce are refused
// at load time, naming the file and line. The table of decisions is on
// are.Regexp.
//
// PostgreSQL 15 differs from 16+ in the database-user field, where it
// knows no all, +role or /regex (all three are literal names there, and
// only \1 is special); this package follows 16+. Check is the
// case-sensitive variant of check_usermap, the one cert authentication
// uses; the case-insensitive one (GSSAPI/SSPI krb_caseins_users) is not
// provided.
//
// The package is pure: no I/O beyond reading the files through
// authfile.ReadOptions.FS, no logging; role membership is asked of a
// RoleChecker.
package identmap

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pgcertgate/pgcertgate/internal/are"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// RoleChecker answers role-membership questions for +role database users.
// IsMember reports whether user is directly or indirectly a member of
// role, not counting superuser status, and answers false, not an error,
// when either role does not exist. hba.RoleChecker has the same method,
// so one implementation serves both files.
type RoleChecker interface {
	IsMember(ctx context.Context, user, role string) (bool, error)
}

// Entry is one pg_ident.conf line (hba.c IdentLine).
type Entry struct {
	// File and Line locate the record; Line is its first physical line.
	File string
	Line int
	// Raw is the record's text, continuation lines joined.
	Raw string
	// MapName is compared exactly (case-sensitively, quoted or not) with
	// the map= option of the pg_hba.conf line.
	MapName string
	// System is the system (authenticated) user name, or a regular
	// expression when its value starts with '/', quoted or not.
	System authfile.String
	// User is the database user: an exact name, the unquoted keyword all,
	// an unquoted +role (membership), or a regular expression when its
	// value starts with '/'. When System is a regular expression, the
	// first \1 of an exact name is replaced by System's group 1.
	User authfile.String

	systemRE *are.Regexp
	userRE   *are.Regexp
}

// String returns the entry in canonical pg_ident.conf syntax. Parsing it
// again yields an entry with the same meaning and the same String.
func (e *Entry) String() string {
	return authfile.String{Value: e.MapName}.String() + " " + e.System.String() + " " + e.User.String()
}

// isMemberCheck mirrors hba.c token_is_member_check.
func isMemberCheck(s authfile.String) bool { return !s.Quoted && strings.HasPrefix(s.Value, "+") }

// Map is a loaded pg_ident.conf, its lines in file order with includes
// expanded in place.
type Map struct {
	Entries []*Entry
	// Warnings are non-fatal messages from reading the file, such as
	// "skipping missing authentication file".
	Warnings []*authfile.Error
}

// String returns every entry, one per line: the "interpreted
// configuration" for a reload log and the form golden tests compare.
func (m *Map) String() string {
	var b strings.Builder
	for _, e := range m.Entries {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Load reads and parses an ident file, as hba.c load_ident does. Any bad
// line refuses the whole file: the error is the errors.Join of one
// *authfile.Error per bad line (tokenizer errors first, then parse errors, each
// in file order), and the Map is nil, so that a caller reloading keeps its
// previous Map. An empty file (or one with only comments) is valid:
// unlike load_hba, load_ident does not require entries.
func Load(path string, opts authfile.ReadOptions) (*Map, error) {
	lines, warnings, err := authfile.ReadFile(path, opts)
	var errs []error
	if err != nil {
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			errs = append(errs, u.Unwrap()...)
		} else {
			errs = append(errs, err)
		}
	}
	m, perr := Parse(lines)
	if perr != nil {
		errs = append(errs, perr.(interface{ Unwrap() []error }).Unwrap()...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.Warnings = warnings
	return m, nil
}

// Parse parses tokenized lines (parse_ident_line for each). On error the
// Map is nil and the error joins one *authfile.Error per bad line.
func Parse(lines []authfile.Line) (*Map, error) {
	m := &Map{}
	var errs []error
	for _, l := range lines {
		e, msg := parseIdentLine(l)
		if msg != "" {
			errs = append(errs, &authfile.Error{File: l.File, Line: l.Line, Msg: msg})
			continue
		}
		m.Entries = append(m.Entries, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// parseIdentLine mirrors hba.c parse_ident_line. It returns PostgreSQL's
// message for a bad line.
func parseIdentLine(l authfile.Line) (*Entry, string) {
	e := &Entry{File: l.File, Line: l.Line, Raw: l.Raw}
	field := func(i int) (authfile.String, string) {
		if i >= len(l.Fields) {
			return authfile.String{}, "missing entry at end of line"
		}
		if len(l.Fields[i]) > 1 {
			return authfile.String{}, "multiple values in ident field"
		}
		return l.Fields[i][0], ""
	}
	mapTok, msg := field(0)
	if msg != "" {
		return nil, msg
	}
	e.MapName = mapTok.Value
	if e.System, msg = field(1); msg != "" {
		return nil, msg
	}
	if e.User, msg = field(2); msg != "" {
		return nil, msg
	}
	// Fields beyond the third are ignored, as in PostgreSQL.
	var err error
	if e.systemRE, err = regcompAuthToken(e.System); err != nil {
		return nil, err.Error()
	}
	if e.userRE, err = regcompAuthToken(e.User); err != nil {
		return nil, err.Error()
	}
	return e, ""
}

// regcompAuthToken mirrors hba.c regcomp_auth_token: a token whose value
// starts with '/' (quoted or not) is a regex. The error is an *are.Error,
// whose text is PostgreSQL's message for patterns PostgreSQL refuses too.
func regcompAuthToken(t authfile.String) (*are.Regexp, error) {
	if !strings.HasPrefix(t.Value, "/") {
		return nil, nil
	}
	return are.Compile(t.Value[1:])
}

// Result is the outcome of Check.
type Result struct {
	// Matched is true when the system user may connect as the database
	// user.
	Matched bool
	// Entry is the line that matched, or, when the scan stopped on a
	// regex problem, the line that stopped it.
	Entry *Entry
	// LogMessage is PostgreSQL's server-log text when Matched is false:
	// the "no match in usermap" line, or the regex problem that stopped
	// the scan. It is never for the client, which gets only the
	// authentication method's generic failure.
	LogMessage string
}

// ErrNoRoleChecker is returned by Check when a +role line must be
// evaluated and no RoleChecker was given.
var ErrNoRoleChecker = errors.New("identmap: a +role line needs a RoleChecker")

// Check mirrors hba.c check_usermap (case-sensitive, as for cert
// authentication): may systemUser connect as pgUser under mapName?
//
// With an empty mapName, the names must be equal. Otherwise lines are
// scanned in order and the first match wins. A regex error, or a \1 when
// the pattern's group 1 did not take part in the match, stops the scan
// even if a later line would match; LogMessage then carries PostgreSQL's
// text for it.
//
// roles may be nil when the map has no +role line that the scan reaches
// (see UsesMembership); otherwise ErrNoRoleChecker is returned. An error
// from roles is returned as is; the caller must fail the authentication.
//
// Regular expressions run in time linear in the names' length, and the
// scan stops with ctx's error once ctx is done, between lines and inside
// a match: the authentication deadline bounds a lookup whatever the map
// holds and however long the certificate's name is.
func (m *Map) Check(ctx context.Context, mapName, pgUser, systemUser string, roles RoleChecker) (Result, error) {
	if mapName == "" {
		if pgUser == systemUser {
			return Result{Matched: true}, nil
		}
		return Result{LogMessage: fmt.Sprintf("provided user name (%s) and authenticated user name (%s) do not match",
			pgUser, systemUser)}, nil
	}
	for _, e := range m.Entries {
		found, logMsg, err := e.check(ctx, mapName, pgUser, systemUser, roles)
		if err != nil {
			return Result{Entry: e}, err
		}
		if found {
			return Result{Matched: true, Entry: e}, nil
		}
		if logMsg != "" {
			return Result{Entry: e, LogMessage: logMsg}, nil
		}
	}
	return Result{LogMessage: fmt.Sprintf("no match in usermap \"%s\" for user \"%s\" authenticated as \"%s\"",
		mapName, pgUser, systemUser)}, nil
}

// check mirrors hba.c check_ident_usermap for one line. logMsg not empty
// means PostgreSQL's *error_p: the scan stops.
func (e *Entry) check(ctx context.Context, mapName, pgUser, systemUser string, roles RoleChecker) (found bool, logMsg string, err error) {
	if e.MapName != mapName {
		return false, "", nil
	}
	if err := ctx.Err(); err != nil {
		return false, "", err
	}
	if e.systemRE == nil {
		if e.System.Value != systemUser {
			return false, "", nil
		}
		return e.checkRole(ctx, pgUser, e.User, roles)
	}
	user := e.User
	needGroup := !isMemberCheck(e.User) && e.userRE == nil && strings.Contains(e.User.Value, `\1`)
	if !needGroup {
		matched, err := e.systemRE.MatchContext(ctx, systemUser)
		if err != nil || !matched {
			return false, "", err
		}
		return e.checkRole(ctx, pgUser, user, roles)
	}
	matched, g1, ok, rerr := e.systemRE.Group1(ctx, systemUser)
	if err := ctx.Err(); rerr != nil && err != nil {
		return false, "", err
	}
	if rerr != nil {
		return false, fmt.Sprintf("regular expression match for \"%s\" failed: %s", e.systemRE.String(), rerr), nil
	}
	if !matched {
		return false, "", nil
	}
	if !ok {
		return false, fmt.Sprintf("regular expression \"%s\" has no subexpressions as requested by backreference in \"%s\"",
			e.systemRE.String(), e.User.Value), nil
	}
	// Substitute the first \1 only; the result is literal (quoted), so it
	// is never all, +role or a regex.
	user = authfile.String{Value: strings.Replace(e.User.Value, `\1`, g1, 1), Quoted: true}
	return e.checkRoleToken(ctx, pgUser, user, nil, roles)
}

func (e *Entry) checkRole(ctx context.Context, pgUser string, tok authfile.String, roles RoleChecker) (bool, string, error) {
	return e.checkRoleToken(ctx, pgUser, tok, e.userRE, roles)
}

// checkRoleToken mirrors hba.c check_role for a single token.
func (e *Entry) checkRoleToken(ctx context.Context, pgUser string, tok authfile.String, re *are.Regexp, roles RoleChecker) (bool, string, error) {
	switch {
	case isMemberCheck(tok):
		if roles == nil {
			return false, "", ErrNoRoleChecker
		}
		ok, err := roles.IsMember(ctx, pgUser, tok.Value[1:])
		return ok && err == nil, "", err
	case tok.IsKeyword("all"):
		return true, "", nil
	case re != nil:
		ok, err := re.MatchContext(ctx, pgUser)
		return ok, "", err
	default:
		return tok.Value == pgUser, "", nil
	}
}

// UsesMembership reports whether any line of mapName checks role
// membership (an unquoted +role database user), so that the caller knows
// whether Check may need a RoleChecker.
func (m *Map) UsesMembership(mapName string) bool {
	for _, e := range m.Entries {
		if e.MapName == mapName && isMemberCheck(e.User) {
			return true
		}
	}
	return false
}
