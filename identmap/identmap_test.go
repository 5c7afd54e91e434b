package identmap

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

func tok(v string) authfile.String  { return authfile.String{Value: v} }
func qtok(v string) authfile.String { return authfile.String{Value: v, Quoted: true} }

func line(n int, fields ...authfile.Field) authfile.Line {
	return authfile.Line{File: "ident.conf", Line: n, Fields: fields}
}

// TestParseIdentLine covers parse_ident_line's checks, without the
// tokenizer: one token per field, three fields, extra fields ignored,
// regexes compiled for both user fields.
func TestParseIdentLine(t *testing.T) {
	for _, c := range []struct {
		name string
		l    authfile.Line
		err  string // "" for success
		want string // String() on success
	}{
		{"plain", line(1, authfile.Field{tok("m")}, authfile.Field{tok("sys")}, authfile.Field{tok("db")}), "", "m sys db"},
		{"extra fields ignored", line(1, authfile.Field{tok("m")}, authfile.Field{tok("sys")}, authfile.Field{tok("db")}, authfile.Field{tok("x"), tok("y")}), "", "m sys db"},
		{"quoted kept", line(1, authfile.Field{qtok("m")}, authfile.Field{qtok("all")}, authfile.Field{qtok("+g")}), "", `m "all" "+g"`},
		{"map list", line(3, authfile.Field{tok("a"), tok("b")}, authfile.Field{tok("s")}, authfile.Field{tok("d")}), "ident.conf:3: multiple values in ident field", ""},
		{"system list", line(4, authfile.Field{tok("m")}, authfile.Field{tok("s"), tok("t")}, authfile.Field{tok("d")}), "ident.conf:4: multiple values in ident field", ""},
		{"user list", line(5, authfile.Field{tok("m")}, authfile.Field{tok("s")}, authfile.Field{tok("d"), tok("e")}), "ident.conf:5: multiple values in ident field", ""},
		{"one field", line(6, authfile.Field{tok("m")}), "ident.conf:6: missing entry at end of line", ""},
		{"two fields", line(7, authfile.Field{tok("m")}, authfile.Field{tok("s")}), "ident.conf:7: missing entry at end of line", ""},
		{"list before missing", line(8, authfile.Field{tok("m"), tok("n")}), "ident.conf:8: multiple values in ident field", ""},
		{"quoted slash is a regex", line(9, authfile.Field{tok("m")}, authfile.Field{qtok("/(")}, authfile.Field{tok("d")}),
			`ident.conf:9: invalid regular expression "(": parentheses () not balanced`, ""},
		{"user regex compiled", line(10, authfile.Field{tok("m")}, authfile.Field{tok("s")}, authfile.Field{tok("/[")}),
			`ident.conf:10: invalid regular expression "[": brackets [] not balanced`, ""},
		{"system error first", line(11, authfile.Field{tok("m")}, authfile.Field{tok("/(")}, authfile.Field{tok("/[")}),
			`ident.conf:11: invalid regular expression "(": parentheses () not balanced`, ""},
		{"unsupported", line(12, authfile.Field{tok("m")}, authfile.Field{tok(`/(x)\1`)}, authfile.Field{tok("d")}),
			`ident.conf:12: regular expression "(x)\1" is not supported by pgcertgate: back-reference \1 is not supported`, ""},
		{"empty regex", line(13, authfile.Field{tok("m")}, authfile.Field{tok("/")}, authfile.Field{tok("d")}), "", "m / d"},
	} {
		m, err := Parse([]authfile.Line{c.l})
		switch {
		case c.err != "":
			if err == nil || err.Error() != c.err {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			var he *authfile.Error
			if err != nil && !errors.As(err, &he) {
				t.Errorf("%s: error is not an *authfile.Error", c.name)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case len(m.Entries) != 1 || m.Entries[0].String() != c.want:
			t.Errorf("%s: got %q, want %q", c.name, m.String(), c.want)
		}
	}
}

// TestParseAllErrors: every bad line is reported, and the file refused.
func TestParseAllErrors(t *testing.T) {
	m, err := Parse([]authfile.Line{
		line(1, authfile.Field{tok("m")}),
		line(2, authfile.Field{tok("m")}, authfile.Field{tok("s")}, authfile.Field{tok("d")}),
		line(3, authfile.Field{tok("m")}, authfile.Field{tok("/(")}, authfile.Field{tok("d")}),
	})
	if m != nil {
		t.Fatal("a file with bad lines must be refused")
	}
	u, ok := err.(interface{ Unwrap() []error })
	if !ok || len(u.Unwrap()) != 2 {
		t.Fatalf("want 2 joined errors, got %v", err)
	}
	if got := err.Error(); got != "ident.conf:1: missing entry at end of line\n"+
		`ident.conf:3: invalid regular expression "(": parentheses () not balanced` {
		t.Fatalf("got %q", got)
	}
}

// TestCheckRules is the lookup rules as a table, one map per case.
func TestCheckRules(t *testing.T) {
	l := func(sys, user authfile.String) authfile.Line {
		return line(1, authfile.Field{tok("m")}, authfile.Field{sys}, authfile.Field{user})
	}
	for _, c := range []struct {
		name        string
		lines       []authfile.Line
		mapName     string
		pgUser, sys string
		matched     bool
		log         string
	}{
		{"exact", []authfile.Line{l(tok("alice"), tok("a"))}, "m", "a", "alice", true, ""},
		{"case-sensitive system", []authfile.Line{l(tok("alice"), tok("a"))}, "m", "a", "Alice", false,
			`no match in usermap "m" for user "a" authenticated as "Alice"`},
		{"case-sensitive user", []authfile.Line{l(tok("alice"), tok("a"))}, "m", "A", "alice", false,
			`no match in usermap "m" for user "A" authenticated as "alice"`},
		{"map name exact", []authfile.Line{l(tok("alice"), tok("a"))}, "M", "a", "alice", false,
			`no match in usermap "M" for user "a" authenticated as "alice"`},
		{"first match wins", []authfile.Line{l(tok("/^a"), tok("x")), l(tok("alice"), tok("a"))}, "m", "a", "alice", true, ""},
		{"regex unanchored", []authfile.Line{l(tok("/lic"), tok("a"))}, "m", "a", "alice", true, ""},
		{"quoted regex", []authfile.Line{l(qtok("/^ali"), tok("a"))}, "m", "a", "alice", true, ""},
		{"\\1 first only", []authfile.Line{l(tok("/^(.)"), tok(`\1\1`))}, "m", `a\1`, "alice", true, ""},
		{"\\1 no group stops scan", []authfile.Line{l(tok("/^a"), tok(`\1`)), l(tok("alice"), tok("a"))}, "m", "a", "alice", false,
			`regular expression "^a" has no subexpressions as requested by backreference in "\1"`},
		{"\\1 unset group stops scan", []authfile.Line{l(tok("/^(x)?a"), tok(`\1`)), l(tok("alice"), tok("a"))}, "m", "a", "alice", false,
			`regular expression "^(x)?a" has no subexpressions as requested by backreference in "\1"`},
		{"no \\1, no group needed", []authfile.Line{l(tok("/^a"), tok("a"))}, "m", "a", "alice", true, ""},
		{"non-matching regex does not stop", []authfile.Line{l(tok("/^z"), tok(`\1`)), l(tok("alice"), tok("a"))}, "m", "a", "alice", true, ""},
		{"all keyword", []authfile.Line{l(tok("alice"), tok("all"))}, "m", "anyone", "alice", true, ""},
		{"quoted all literal", []authfile.Line{l(tok("alice"), qtok("all"))}, "m", "anyone", "alice", false,
			`no match in usermap "m" for user "anyone" authenticated as "alice"`},
		{"user regex", []authfile.Line{l(tok("alice"), tok("/^a_"))}, "m", "a_1", "alice", true, ""},
		{"quoted user regex", []authfile.Line{l(tok("alice"), qtok("/^a_"))}, "m", "a_1", "alice", true, ""},
		{"no \\1 in user regex", []authfile.Line{l(tok("/^(a)"), tok(`/^x\\1$`))}, "m", `x\1`, "alice", true, ""},
		{"substituted all is literal", []authfile.Line{l(tok("/^(.*)$"), tok(`\1`))}, "m", "bob", "all", false,
			`no match in usermap "m" for user "bob" authenticated as "all"`},
		{"substituted +x is literal", []authfile.Line{l(tok("/^(.*)$"), tok(`\1`))}, "m", "+x", "+x", true, ""},
		{"substituted /x is literal", []authfile.Line{l(tok("/^(.*)$"), tok(`\1`))}, "m", "/.", "/.", true, ""},
		{"empty map name compares names", []authfile.Line{l(tok("alice"), tok("all"))}, "", "bob", "alice", false,
			"provided user name (bob) and authenticated user name (alice) do not match"},
		{"non-ASCII byte-wise", []authfile.Line{l(tok("/^jos.$"), tok("one")), l(tok("/^jos..$"), tok("two"))}, "m", "two", "jos\xc3\xa9", true, ""},
	} {
		m, err := Parse(c.lines)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		r, err := m.Check(context.Background(), c.mapName, c.pgUser, c.sys, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Matched != c.matched || r.LogMessage != c.log {
			t.Errorf("%s: matched=%v log=%q, want %v %q", c.name, r.Matched, r.LogMessage, c.matched, c.log)
		}
	}
}

func TestMembership(t *testing.T) {
	m, err := Parse([]authfile.Line{
		line(1, authfile.Field{tok("m")}, authfile.Field{tok("alice")}, authfile.Field{tok("+admins")}),
		line(2, authfile.Field{tok("m")}, authfile.Field{tok("/^(.*)$")}, authfile.Field{tok(`+\1`)}),
		line(3, authfile.Field{tok("n")}, authfile.Field{tok("bob")}, authfile.Field{qtok("+admins")}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !m.UsesMembership("m") || m.UsesMembership("n") || m.UsesMembership("x") {
		t.Fatal("UsesMembership")
	}
	ctx := context.Background()
	r, err := m.Check(ctx, "m", "bob", "alice", fakeRoles{"bob:admins": true})
	if err != nil || !r.Matched || r.Entry.Line != 1 {
		t.Fatalf("member: %+v %v", r, err)
	}
	// +\1 is no substitution: membership of the role named `\1`
	r, err = m.Check(ctx, "m", "bob", "carol", fakeRoles{"bob:carol": true})
	if err != nil || r.Matched {
		t.Fatalf("+\\1 substituted: %+v %v", r, err)
	}
	if _, err := m.Check(ctx, "m", "bob", "alice", nil); !errors.Is(err, ErrNoRoleChecker) {
		t.Fatalf("nil RoleChecker: %v", err)
	}
	if _, err := m.Check(ctx, "m", "bob", "alice", errRoles{}); err == nil || !strings.Contains(err.Error(), "catalog") {
		t.Fatalf("RoleChecker error: %v", err)
	}
	// a map with no +role line needs no RoleChecker
	if r, err := m.Check(ctx, "n", "+admins", "bob", nil); err != nil || !r.Matched {
		t.Fatalf("quoted +admins: %+v %v", r, err)
	}
}
