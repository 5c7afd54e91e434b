package hba

import (
	"context"
	"net/netip"
	"testing"
)

// TestMatchLocal: a Unix-domain socket connection is matched by local
// records only, by database and role, whatever its (absent) address and
// encryption. The rows marked pg15 were tried against PostgreSQL 15 over
// its socket.
func TestMatchLocal(t *testing.T) {
	tests := []struct {
		name string
		conf string
		req  Request
		want int
	}{
		{"local matches socket (pg15)", "local all all trust", Request{Local: true, Database: "d", User: "u"}, 1},
		{"host never matches socket", "host all all all trust\nlocal all all reject", Request{Local: true, Database: "d", User: "u"}, 2},
		{"hostnossl never matches socket", "hostnossl all all all trust", Request{Local: true, Database: "d", User: "u"}, 0},
		{"hostssl never matches socket", "hostssl all all all trust", Request{Local: true, SSL: true, Database: "d", User: "u"}, 0},
		{"hostnogssenc never matches socket", "hostnogssenc all all all trust", Request{Local: true, Database: "d", User: "u"}, 0},
		{"samehost never matches socket", "host all all samehost trust", Request{Local: true, Database: "d", User: "u"}, 0},
		{"local database list (pg15)", "local db1,db2 all trust", Request{Local: true, Database: "db2", User: "u"}, 1},
		{"local database list miss (pg15)", "local db1,db2 all trust", Request{Local: true, Database: "db3", User: "u"}, 0},
		{"local user (pg15)", "local all postgres trust\nlocal all all peer", Request{Local: true, Database: "d", User: "root"}, 2},
		{"local +role", "local all +grp peer", Request{Local: true, Database: "d", User: "member"}, 1},
		{"local replication", "local all all trust\nlocal replication all peer", Request{Local: true, Database: "", User: "u", Replication: true}, 2},
		{"local never matches tcp", "local all all trust", Request{Addr: netip.MustParseAddr("127.0.0.1"), Database: "d", User: "u"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf := mustParse(t, tc.conf)
			e, err := conf.Match(context.Background(), tc.req, testEnv())
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
		})
	}
	_, attempts, err := mustParse(t, "host all all all trust\nlocal all all trust").Explain(context.Background(), Request{Local: true, Database: "d", User: "u"}, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if want := "connection type host does not match a Unix-domain socket connection"; len(attempts) != 2 || attempts[0].Reason != want || !attempts[1].Matched {
		t.Errorf("explain: got %+v, want the host line refused with %q and the local line matched", attempts, want)
	}
}
