package identmap

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgcertgate/pgcertgate/hba"
)

func tok(v string) hba.String  { return hba.String{Value: v} }
func qtok(v string) hba.String { return hba.String{Value: v, Quoted: true} }

func line(n int, fields ...hba.Field) hba.Line {
	return hba.Line{File: "ident.conf", Line: n, Fields: fields}
}

// TestParseIdentLine covers parse_ident_line's checks, without the
// tokenizer: one token per field, three fields, extra fields ignored,
// regexes compiled for both user fields.
func TestParseIdentLine(t *testing.T) {
	for _, c := range []struct {
		name string
		l    hba.Line
		err  string // "" for success
		want string // String() on success
	}{
		{"plain", line(1, hba.Field{tok("m")}, hba.Field{tok("sys")}, hba.Field{tok("db")}), "", "m sys db"},
		{"extra fields ignored", line(1, hba.Field{tok("m")}, hba.Field{tok("sys")}, hba.Field{tok("db")}, hba.Field{tok("x"), tok("y")}), "", "m sys db"},
		{"quoted kept", line(1, hba.Field{qtok("m")}, hba.Field{qtok("all")}, hba.Field{qtok("+g")}), "", `m "all" "+g"`},
		{"map list", line(3, hba.Field{tok("a"), tok("b")}, hba.Field{tok("s")}, hba.Field{tok("d")}), "ident.conf:3: multiple values in ident field", ""},
		{"system list", line(4, hba.Field{tok("m")}, hba.Field{tok("s"), tok("t")}, hba.Field{tok("d")}), "ident.conf:4: multiple values in ident field", ""},
		{"user list", line(5, hba.Field{tok("m")}, hba.Field{tok("s")}, hba.Field{tok("d"), tok("e")}), "ident.conf:5: multiple values in ident field", ""},
		{"one field", line(6, hba.Field{tok("m")}), "ident.conf:6: missing entry at end of line", ""},
		{"two fields", line(7, hba.Field{tok("m")}, hba.Field{tok("s")}), "ident.conf:7: missing entry at end of line", ""},
		{"list before missing", line(8, hba.Field{tok("m"), tok("n")}), "ident.conf:8: multiple values in ident field", ""},
		{"quoted slash is a regex", line(9, hba.Field{tok("m")}, hba.Field{qtok("/(")}, hba.Field{tok("d")}),
			`ident.conf:9: invalid regular expression "(": parentheses () not balanced`, ""},
		{"user regex compiled", line(10, hba.Field{tok("m")}, hba.Field{tok("s")}, hba.Field{tok("/[")}),
			`ident.conf:10: invalid regular expression "[": brackets [] not balanced`, ""},
		{"system error first", line(11, hba.Field{tok("m")}, hba.Field{tok("/(")}, hba.Field{tok("/[")}),
			`ident.conf:11: invalid regular expression "(": parentheses () not balanced`, ""},
		{"unsupported", line(12, hba.Field{tok("m")}, hba.Field{tok(`/(x)\1`)}, hba.Field{tok("d")}),
			`ident.conf:12: regular expression "(x)\1" is not supported by pgcertgate: back-reference \1 is not supported`, ""},
		{"empty regex", line(13, hba.Field{tok("m")}, hba.Field{tok("/")}, hba.Field{tok("d")}), "", "m / d"},
	} {
		m, err := Parse([]hba.Line{c.l})
		switch {
		case c.err != "":
			if err == nil || err.Error() != c.err {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			var he *hba.Error
			if err != nil && !errors.As(err, &he) {
				t.Errorf("%s: error is not an *hba.Error", c.name)
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
	m, err := Parse([]hba.Line{
		line(1, hba.Field{tok("m")}),
		line(2, hba.Field{tok("m")}, hba.Field{tok("s")}, hba.Field{tok("d")}),
		line(3, hba.Field{tok("m")}, hba.Field{tok("/(")}, hba.Field{tok("d")}),
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
	l := func(sys, user hba.String) hba.Line {
		return line(1, hba.Field{tok("m")}, hba.Field{sys}, hba.Field{user})
	}
	for _, c := range []struct {
		name        string
		lines       []hba.Line
		mapName     string
		pgUser, sys string
		matched     bool
		log         string
	}{
		{"exact", []hba.Line{l(tok("alice"), tok("a"))}, "m", "a", "alice", true, ""},
		{"case-sensitive system", []hba.Line{l(tok("alice"), tok("a"))}, "m", "a", "Alice", false,
			`no match in usermap "m" for user "a" authenticated as "Alice"`},
		{"case-sensitive user", []hba.Line{l(tok("alice"), tok("a"))}, "m", "A", "alice", false,
			`no match in usermap "m" for user "A" authenticated as "alice"`},
		{"map name exact", []hba.Line{l(tok("alice"), tok("a"))}, "M", "a", "alice", false,
			`no match in usermap "M" for user "a" authenticated as "alice"`},
		{"first match wins", []hba.Line{l(tok("/^a"), tok("x")), l(tok("alice"), tok("a"))}, "m", "a", "alice", true, ""},
		{"regex unanchored", []hba.Line{l(tok("/lic"), tok("a"))}, "m", "a", "alice", true, ""},
		{"quoted regex", []hba.Line{l(qtok("/^ali"), tok("a"))}, "m", "a", "alice", true, ""},
		{"\\1 first only", []hba.Line{l(tok("/^(.)"), tok(`\1\1`))}, "m", `a\1`, "alice", true, ""},
		{"\\1 no group stops scan", []hba.Line{l(tok("/^a"), tok(`\1`)), l(tok("alice"), tok("a"))}, "m", "a", "alice", false,
			`regular expression "^a" has no subexpressions as requested by backreference in "\1"`},
		{"\\1 unset group stops scan", []hba.Line{l(tok("/^(x)?a"), tok(`\1`)), l(tok("alice"), tok("a"))}, "m", "a", "alice", false,
			`regular expression "^(x)?a" has no subexpressions as requested by backreference in "\1"`},
		{"no \\1, no group needed", []hba.Line{l(tok("/^a"), tok("a"))}, "m", "a", "alice", true, ""},
		{"non-matching regex does not stop", []hba.Line{l(tok("/^z"), tok(`\1`)), l(tok("alice"), tok("a"))}, "m", "a", "alice", true, ""},
		{"all keyword", []hba.Line{l(tok("alice"), tok("all"))}, "m", "anyone", "alice", true, ""},
		{"quoted all literal", []hba.Line{l(tok("alice"), qtok("all"))}, "m", "anyone", "alice", false,
			`no match in usermap "m" for user "anyone" authenticated as "alice"`},
		{"user regex", []hba.Line{l(tok("alice"), tok("/^a_"))}, "m", "a_1", "alice", true, ""},
		{"quoted user regex", []hba.Line{l(tok("alice"), qtok("/^a_"))}, "m", "a_1", "alice", true, ""},
		{"no \\1 in user regex", []hba.Line{l(tok("/^(a)"), tok(`/^x\\1$`))}, "m", `x\1`, "alice", true, ""},
		{"substituted all is literal", []hba.Line{l(tok("/^(.*)$"), tok(`\1`))}, "m", "bob", "all", false,
			`no match in usermap "m" for user "bob" authenticated as "all"`},
		{"substituted +x is literal", []hba.Line{l(tok("/^(.*)$"), tok(`\1`))}, "m", "+x", "+x", true, ""},
		{"substituted /x is literal", []hba.Line{l(tok("/^(.*)$"), tok(`\1`))}, "m", "/.", "/.", true, ""},
		{"empty map name compares names", []hba.Line{l(tok("alice"), tok("all"))}, "", "bob", "alice", false,
			"provided user name (bob) and authenticated user name (alice) do not match"},
		{"non-ASCII byte-wise", []hba.Line{l(tok("/^jos.$"), tok("one")), l(tok("/^jos..$"), tok("two"))}, "m", "two", "jos\xc3\xa9", true, ""},
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
	m, err := Parse([]hba.Line{
		line(1, hba.Field{tok("m")}, hba.Field{tok("alice")}, hba.Field{tok("+admins")}),
		line(2, hba.Field{tok("m")}, hba.Field{tok("/^(.*)$")}, hba.Field{tok(`+\1`)}),
		line(3, hba.Field{tok("n")}, hba.Field{tok("bob")}, hba.Field{qtok("+admins")}),
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
