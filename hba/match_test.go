package hba

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// fakeRoles answers membership from a parent map, following it
// transitively and ignoring superuser status, like
// is_member_of_role_nosuper. calls counts IsMember calls.
type fakeRoles struct {
	parents map[string][]string
	err     error
	calls   int
}

func (f *fakeRoles) IsMember(ctx context.Context, user, role string) (bool, error) {
	f.calls++
	if f.err != nil {
		return false, f.err
	}
	seen := map[string]bool{}
	var walk func(r string) bool
	walk = func(r string) bool {
		if r == role {
			return true
		}
		if seen[r] {
			return false
		}
		seen[r] = true
		for _, p := range f.parents[r] {
			if walk(p) {
				return true
			}
		}
		return false
	}
	return walk(user), nil
}

// fakeResolver serves reverse and forward lookups from maps.
type fakeResolver struct {
	ptr         map[string][]string
	hosts       map[string][]string
	ptrCalls    int
	lookupCalls int
}

var errNotFound = errors.New("no such host")

func (f *fakeResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	f.ptrCalls++
	if n, ok := f.ptr[addr]; ok {
		return n, nil
	}
	return nil, errNotFound
}

func (f *fakeResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	f.lookupCalls++
	if a, ok := f.hosts[strings.ToLower(host)]; ok {
		return a, nil
	}
	return nil, errNotFound
}

func mustParse(t *testing.T, text string) *Conf {
	t.Helper()
	conf, err := Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte(text)}})})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return conf
}

func testEnv() Env {
	return Env{
		Roles: &fakeRoles{parents: map[string][]string{
			"member": {"sub"}, "sub": {"grp"}, "alice": {"admins"},
		}},
		Resolver: &fakeResolver{
			ptr: map[string][]string{
				"192.0.2.10":  {"db1.Example.COM."},
				"192.0.2.11":  {"liar.example.com."},
				"2001:db8::1": {"v6.example.com."},
				"192.0.2.12":  {"multi.example.com.", "other.example.org."},
			},
			hosts: map[string][]string{
				"db1.example.com":   {"2001:db8::99", "192.0.2.10"},
				"liar.example.com":  {"192.0.2.99"},
				"v6.example.com":    {"2001:db8::1"},
				"multi.example.com": {"192.0.2.12"},
			},
		},
		LocalAddrs: func() ([]netip.Prefix, error) {
			return []netip.Prefix{
				netip.MustParsePrefix("127.0.0.1/8"),
				netip.MustParsePrefix("10.1.2.3/16"),
				netip.MustParsePrefix("::1/128"),
				netip.MustParsePrefix("2001:db8:1::5/64"),
			}, nil
		},
	}
}

// TestMatch runs requests against small files; want is the line number of
// the matching record, 0 for no match. Every row was checked against the
// matching rules of hba.c check_hba; the rows marked pg15 were also tried
// against a real PostgreSQL 15 server.
func TestMatch(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		name string
		conf string
		req  Request
		want int
	}{
		// connection types
		{"host matches plain", "host all all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 1},
		{"host matches ssl", "host all all all trust", Request{Addr: ip("192.0.2.1"), SSL: true, Database: "d", User: "u"}, 1},
		{"hostssl skips plain", "hostssl all all all trust\nhost all all all reject", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 2},
		{"hostssl matches ssl", "hostssl all all all trust", Request{Addr: ip("192.0.2.1"), SSL: true, Database: "d", User: "u"}, 1},
		{"hostnossl skips ssl", "hostnossl all all all trust\nhost all all all reject", Request{Addr: ip("192.0.2.1"), SSL: true, Database: "d", User: "u"}, 2},
		{"hostnossl matches plain", "hostnossl all all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 1},
		{"local never matches tcp", "local all all trust", Request{Addr: ip("127.0.0.1"), Database: "d", User: "u"}, 0},
		{"hostgssenc needs gss", "hostgssenc all all all gss", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 0},
		{"hostgssenc matches gss", "hostgssenc all all all gss", Request{Addr: ip("192.0.2.1"), GSS: true, Database: "d", User: "u"}, 1},
		{"hostnogssenc matches plain", "hostnogssenc all all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 1},
		{"hostnogssenc skips gss", "hostnogssenc all all all trust", Request{Addr: ip("192.0.2.1"), GSS: true, Database: "d", User: "u"}, 0},
		{"first match wins (pg15)", "host all all 192.0.2.1/32 reject\nhost all all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 1},

		// database keywords
		{"all", "host all all all trust", Request{Addr: ip("192.0.2.1"), Database: "x", User: "u"}, 1},
		{"quoted all is a name (pg15)", `host "all" all all trust`, Request{Addr: ip("192.0.2.1"), Database: "x", User: "u"}, 0},
		{"quoted all matches db all", `host "all" all all trust`, Request{Addr: ip("192.0.2.1"), Database: "all", User: "u"}, 1},
		{"a\"ll\" is the keyword (pg15)", `host a"ll" all all trust`, Request{Addr: ip("192.0.2.1"), Database: "x", User: "u"}, 1},
		{"sameuser (pg15)", "host sameuser all all trust", Request{Addr: ip("192.0.2.1"), Database: "bob", User: "bob"}, 1},
		{"sameuser mismatch (pg15)", "host sameuser all all trust", Request{Addr: ip("192.0.2.1"), Database: "bob", User: "alice"}, 0},
		{"samerole indirect (pg15)", "host samerole all all trust", Request{Addr: ip("192.0.2.1"), Database: "grp", User: "member"}, 1},
		{"samegroup", "host samegroup all all trust", Request{Addr: ip("192.0.2.1"), Database: "grp", User: "member"}, 1},
		{"samerole non-member (pg15)", "host samerole all all trust", Request{Addr: ip("192.0.2.1"), Database: "grp", User: "plain"}, 0},
		{"exact name case-sensitive", "host Sales all all trust", Request{Addr: ip("192.0.2.1"), Database: "sales", User: "u"}, 0},
		{"exact name in list", "host a, b,sales all all trust", Request{Addr: ip("192.0.2.1"), Database: "sales", User: "u"}, 1},
		{"regex database", "host /^app_[0-9]+$ all all trust", Request{Addr: ip("192.0.2.1"), Database: "app_12", User: "u"}, 1},
		{"regex database no match", "host /^app_[0-9]+$ all all trust", Request{Addr: ip("192.0.2.1"), Database: "app_x", User: "u"}, 0},
		{"quoted regex still a regex", `host "/^a,b$" all all trust`, Request{Addr: ip("192.0.2.1"), Database: "a,b", User: "u"}, 1},
		{"regex is unanchored", "host /pp all all trust", Request{Addr: ip("192.0.2.1"), Database: "app", User: "u"}, 1},

		// replication
		{"physical not matched by all (pg15)", "host all all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u", Replication: true}, 0},
		{"physical matched by replication (pg15)", "host replication all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u", Replication: true}, 1},
		{"physical not matched by quoted replication (pg15)", `host "replication" all all trust`, Request{Addr: ip("192.0.2.1"), Database: "d", User: "u", Replication: true}, 0},
		{"physical not matched by its db name", "host d all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u", Replication: true}, 0},
		{"physical not matched by sameuser", "host sameuser all all trust", Request{Addr: ip("192.0.2.1"), Database: "u", User: "u", Replication: true}, 0},
		{"replication keyword skips normal (pg15)", "host replication all all trust", Request{Addr: ip("192.0.2.1"), Database: "replication", User: "u"}, 0},
		{"quoted replication is a name", `host "replication" all all trust`, Request{Addr: ip("192.0.2.1"), Database: "replication", User: "u"}, 1},
		{"replication in a list", "host replication,d all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 1},

		// user field
		{"user all", "host all all all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "anyone"}, 1},
		{"user exact", "host all alice all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "alice"}, 1},
		{"user exact mismatch", "host all alice all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "Alice"}, 0},
		{"+role indirect (pg15)", "host all +grp all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "member"}, 1},
		{"+role non-member (pg15)", "host all +grp all trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "plain"}, 0},
		{"quoted +role is a name (pg15)", `host all "+grp" all trust`, Request{Addr: ip("192.0.2.1"), Database: "d", User: "member"}, 0},
		{"quoted +role matches that name", `host all "+grp" all trust`, Request{Addr: ip("192.0.2.1"), Database: "d", User: "+grp"}, 1},
		{"user regex", `host all "/^(alice|bob)$" all trust`, Request{Addr: ip("192.0.2.1"), Database: "d", User: "bob"}, 1},
		{"user regex mismatch", `host all "/^(alice|bob)$" all trust`, Request{Addr: ip("192.0.2.1"), Database: "d", User: "bobby"}, 0},
		{"quoted user all is a name", `host all "all" all trust`, Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 0},

		// addresses
		{"cidr v4", "host all all 192.0.2.0/24 trust", Request{Addr: ip("192.0.2.77"), Database: "d", User: "u"}, 1},
		{"cidr v4 outside", "host all all 192.0.2.0/24 trust", Request{Addr: ip("192.0.3.1"), Database: "d", User: "u"}, 0},
		{"host bits kept", "host all all 192.0.2.5/24 trust", Request{Addr: ip("192.0.2.200"), Database: "d", User: "u"}, 1},
		{"inet_aton short form", "host all all 10/8 trust", Request{Addr: ip("0.0.0.10"), Database: "d", User: "u"}, 1},
		{"ip and mask", "host all all 10.0.0.0 255.0.0.0 trust", Request{Addr: ip("10.9.9.9"), Database: "d", User: "u"}, 1},
		{"non-contiguous mask", "host all all 10.0.7.0 255.0.255.0 trust", Request{Addr: ip("10.99.7.1"), Database: "d", User: "u"}, 1},
		{"non-contiguous mask miss", "host all all 10.0.7.0 255.0.255.0 trust", Request{Addr: ip("10.99.8.1"), Database: "d", User: "u"}, 0},
		{"v6 cidr", "host all all 2001:db8::/32 trust", Request{Addr: ip("2001:db8:ffff::1"), Database: "d", User: "u"}, 1},
		{"v6 rule vs v4 client", "host all all ::/0 trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 0},
		{"v4 rule vs v6 client", "host all all 0.0.0.0/0 trust", Request{Addr: ip("2001:db8::1"), Database: "d", User: "u"}, 0},
		{"v4 rule vs v4-mapped client", "host all all 0.0.0.0/0 trust", Request{Addr: ip("::ffff:192.0.2.1"), Database: "d", User: "u"}, 0},
		{"v4-mapped rule vs v4-mapped client", "host all all ::ffff:192.0.2.1/128 trust", Request{Addr: ip("::ffff:192.0.2.1"), Database: "d", User: "u"}, 1},
		{"v4-mapped rule vs v4 client", "host all all ::ffff:192.0.2.1/128 trust", Request{Addr: ip("192.0.2.1"), Database: "d", User: "u"}, 0},
		{"zone ignored", "host all all fe80::/64 trust", Request{Addr: ip("fe80::1%eth0"), Database: "d", User: "u"}, 1},
		{"samehost (pg15)", "host all all samehost trust", Request{Addr: ip("10.1.2.3"), Database: "d", User: "u"}, 1},
		{"samehost other host", "host all all samehost trust", Request{Addr: ip("10.1.2.4"), Database: "d", User: "u"}, 0},
		{"samehost v6 (pg15)", "host all all samehost trust", Request{Addr: ip("::1"), Database: "d", User: "u"}, 1},
		{"samenet", "host all all samenet trust", Request{Addr: ip("10.1.200.4"), Database: "d", User: "u"}, 1},
		{"samenet outside", "host all all samenet trust", Request{Addr: ip("10.2.0.1"), Database: "d", User: "u"}, 0},
		{"samenet v6", "host all all samenet trust", Request{Addr: ip("2001:db8:1::77"), Database: "d", User: "u"}, 1},

		// host names
		{"hostname case-insensitive (pg15)", "host all all DB1.example.com trust", Request{Addr: ip("192.0.2.10"), Database: "d", User: "u"}, 1},
		{"hostname suffix", "host all all .example.com trust", Request{Addr: ip("192.0.2.10"), Database: "d", User: "u"}, 1},
		{"hostname suffix is compared with its dot (pg15)", "host all all .xample.com trust", Request{Addr: ip("192.0.2.10"), Database: "d", User: "u"}, 0},
		{"hostname suffix partial label", "host all all .ample.com trust\nhost all all .b1.example.com trust", Request{Addr: ip("192.0.2.10"), Database: "d", User: "u"}, 0},
		{"hostname other name", "host all all db2.example.com trust", Request{Addr: ip("192.0.2.10"), Database: "d", User: "u"}, 0},
		{"hostname forward mismatch", "host all all liar.example.com trust", Request{Addr: ip("192.0.2.11"), Database: "d", User: "u"}, 0},
		{"hostname forward mismatch poisons later lines", "host all all .example.com trust\nhost all all liar.example.com trust", Request{Addr: ip("192.0.2.11"), Database: "d", User: "u"}, 0},
		{"hostname no PTR", "host all all db1.example.com trust", Request{Addr: ip("192.0.2.200"), Database: "d", User: "u"}, 0},
		{"hostname v6", "host all all v6.example.com trust", Request{Addr: ip("2001:db8::1"), Database: "d", User: "u"}, 1},
		{"hostname uses first PTR only (pg15)", "host all all other.example.org trust\nhost all all multi.example.com trust", Request{Addr: ip("192.0.2.12"), Database: "d", User: "u"}, 2},
		{"quoted all address is a host name", `host all all "all" trust`, Request{Addr: ip("192.0.2.10"), Database: "d", User: "u"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf := mustParse(t, tc.conf)
			env := testEnv()
			e, err := conf.Match(context.Background(), tc.req, env)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			if e != nil {
				got = e.Line
			}
			if got != tc.want {
				t.Errorf("matched line %d, want %d", got, tc.want)
			}
			// Explain makes the same decision and explains every miss.
			e2, attempts, err := conf.Explain(context.Background(), tc.req, testEnv())
			if err != nil || e2 != e {
				t.Fatalf("Explain = %v, %v; Match = %v", e2, err, e)
			}
			for i, a := range attempts {
				last := i == len(attempts)-1
				if a.Matched != (last && e != nil) || (!a.Matched && a.Reason == "") || (a.Matched && a.Reason != "") {
					t.Errorf("attempt %d inconsistent: %+v", i, a)
				}
			}
			if e == nil && len(attempts) != len(conf.Entries) {
				t.Errorf("Explain tried %d of %d records", len(attempts), len(conf.Entries))
			}
		})
	}
}

func TestExplainReasons(t *testing.T) {
	conf := mustParse(t, strings.Join([]string{
		"local all all trust",
		"hostnossl all all all trust",
		"hostssl all all 10.0.0.0/8 trust",
		"hostssl all all 0.0.0.0/0 trust",
		"hostssl db1,db2 all all trust",
		"hostssl all alice all trust",
		"hostssl replication all all trust",
		"hostssl all +admins all cert",
	}, "\n"))
	env := testEnv()
	_, attempts, err := conf.Explain(context.Background(), Request{Addr: netip.MustParseAddr("2001:db8::5"), SSL: true, Database: "app", User: "bob"}, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`connection type "local" matches only Unix-domain socket connections`,
		"connection type hostnossl does not match an SSL connection",
		"client address 2001:db8::5 is not in 10.0.0.0/8 (address families differ)",
		"client address 2001:db8::5 is not in 0.0.0.0/0 (address families differ)",
		`database "app" not in [db1,db2]`,
		`user "bob" not in [alice]`,
		`database "app" not in [replication] (the replication keyword matches only physical replication connections)`,
		`user "bob" not in [+admins]`,
	}
	if len(attempts) != len(want) {
		t.Fatalf("got %d attempts, want %d", len(attempts), len(want))
	}
	for i, a := range attempts {
		if a.Reason != want[i] {
			t.Errorf("line %d: reason %q, want %q", a.Entry.Line, a.Reason, want[i])
		}
	}
	_, attempts, _ = conf.Explain(context.Background(), Request{Addr: netip.MustParseAddr("10.0.0.1"), SSL: false, Database: "app", User: "bob", Replication: true}, env)
	if got := attempts[1].Reason; got != "a physical replication connection matches only the replication keyword, not [all]" {
		t.Errorf("replication reason: %q", got)
	}
}

func TestMembershipLazyAndErrors(t *testing.T) {
	ctx := context.Background()
	req := Request{Addr: netip.MustParseAddr("192.0.2.1"), Database: "d", User: "member"}

	// Records without membership never call the RoleChecker.
	roles := &fakeRoles{}
	conf := mustParse(t, "host all member all trust\nhost all +grp all trust")
	if _, err := conf.Match(ctx, req, Env{Roles: roles}); err != nil || roles.calls != 0 {
		t.Errorf("calls = %d, err = %v; want no membership lookup", roles.calls, err)
	}
	if conf.Entries[0].UsesMembership() || !conf.Entries[1].UsesMembership() {
		t.Error("UsesMembership wrong")
	}

	// A RoleChecker error is the caller's error, never a match.
	boom := errors.New("catalog down")
	conf = mustParse(t, "host all +grp all trust\nhost all all all trust")
	if e, err := conf.Match(ctx, req, Env{Roles: &fakeRoles{err: boom}}); !errors.Is(err, boom) || e != nil {
		t.Errorf("got %v, %v; want nil, %v", e, err, boom)
	}
	// No RoleChecker at all is an error too (fail closed).
	if _, err := conf.Match(ctx, req, Env{}); err == nil {
		t.Error("nil Roles: no error")
	}
	// Answers are cached within one attempt.
	roles = &fakeRoles{parents: map[string][]string{"member": {"grp"}}}
	conf = mustParse(t, "host all +other all trust\nhost samerole +other all trust\nhost all +grp all trust")
	req.Database = "other"
	if e, _ := conf.Match(ctx, req, Env{Roles: roles}); e == nil || e.Line != 3 || roles.calls != 2 {
		t.Errorf("line %v, calls %d; want line 3 and 2 calls", e, roles.calls)
	}
}

func TestHostnameLookupsOncePerAttempt(t *testing.T) {
	r := &fakeResolver{ptr: map[string][]string{"192.0.2.10": {"db1.example.com"}}, hosts: map[string][]string{"db1.example.com": {"192.0.2.10"}}}
	conf := mustParse(t, "host all all x.example.com trust\nhost all all .example.com reject\nhost all all db1.example.com trust")
	e, err := conf.Match(context.Background(), Request{Addr: netip.MustParseAddr("192.0.2.10"), Database: "d", User: "u"}, Env{Resolver: r})
	if err != nil || e == nil || e.Line != 2 {
		t.Fatalf("got %v, %v", e, err)
	}
	if r.ptrCalls != 1 || r.lookupCalls != 1 {
		t.Errorf("ptr %d, forward %d lookups; want 1 and 1", r.ptrCalls, r.lookupCalls)
	}
	// Without a resolver, host-name records never match.
	e, err = conf.Match(context.Background(), Request{Addr: netip.MustParseAddr("192.0.2.10"), Database: "d", User: "u"}, Env{})
	if err != nil || e != nil {
		t.Errorf("nil resolver: got %v, %v", e, err)
	}
	// A cancelled context is an error, not a non-match.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = conf.Match(ctx, Request{Addr: netip.MustParseAddr("192.0.2.99"), Database: "d", User: "u"}, Env{Resolver: r})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}
