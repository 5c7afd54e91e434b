package hba

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// fuzzFS serves the fuzzed text as pg_hba.conf next to a few small files
// that @file and include records can reach.
func fuzzFS(data []byte) authfile.FileSystem {
	return authfile.NewFS(fstest.MapFS{
		"etc/pg/pg_hba.conf": {Data: data},
		"etc/pg/users":       {Data: []byte("alice, \"bob x\"\n@groups\n")},
		"etc/pg/groups":      {Data: []byte("+admins # c\n")},
		"etc/pg/inc.conf":    {Data: []byte("hostssl all all all cert\n")},
		"etc/pg/d/a.conf":    {Data: []byte("host a a all trust\n")},
	})
}

func addSeeds(f *testing.F) {
	for _, s := range []string{
		"host all all all trust",
		"host a\"ll\" \"all\" \"\" trust\n",
		"hostssl db1, \"db 2\" +grp,@users 10/8 cert map=m clientname=DN\n",
		"host all all 10.0.0.0 255.0.255.0 ldap ldapbasedn=\"dc=a, dc=b\" ldapscheme=x\n",
		"host all \\\n all ::ffff:1.2.3.4/128 trust # c\r\n",
		"include inc.conf\ninclude_dir d\ninclude_if_exists none\n",
		"local all all ident\nhost /^a(b|c)$ \"/x,y\" .example.com reject\n",
		"host all all all radius radiusservers=\"a, b\" radiussecrets=s\n",
		"host all all fe80::1%eth0/64 oauth scope=a issuer=b\n",
		"host @ @users samehost trust\nhost \"@x\" @\"users\" samenet md5\n",
	} {
		f.Add([]byte(s))
	}
}

// checkErrors requires every error to be a located *authfile.Error.
func checkErrors(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, e := range unjoin(err) {
		var he *authfile.Error
		if !errors.As(e, &he) || he.File == "" || he.Msg == "" {
			t.Fatalf("unlocated error %T %v", e, e)
		}
	}
}

// FuzzParse checks the parser never panics, that errors are located, and
// the round trip: parse → String → parse → String is stable. It also runs
// the matcher over every loaded file.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		conf, err := Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: fuzzFS(data)})
		checkErrors(t, err)
		if err != nil {
			if conf != nil {
				t.Fatal("Conf returned with an error")
			}
			return
		}
		text := conf.String()
		again, err := Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: fuzzFS([]byte(text))})
		if err != nil {
			t.Fatalf("canonical text does not load: %v\n%s", err, text)
		}
		if again.String() != text {
			t.Fatalf("round trip not stable:\n%s\nvs\n%s", text, again.String())
		}
		for i, e := range conf.Entries {
			a := again.Entries[i]
			if e.Method != a.Method || e.ConnType != a.ConnType || e.ClientCert != a.ClientCert ||
				e.ClientName != a.ClientName || e.Map != a.Map || e.Address != a.Address || e.UsesMembership() != a.UsesMembership() {
				t.Fatalf("entry %d differs after round trip:\n%+v\n%+v", i, e, a)
			}
		}
		env := testEnv()
		for _, req := range []Request{
			{Addr: netip.MustParseAddr("192.0.2.10"), Database: "db1", User: "alice"},
			{Addr: netip.MustParseAddr("2001:db8::1"), SSL: true, Database: "x", User: "member", Replication: true},
		} {
			e1, err1 := conf.Match(context.Background(), req, env)
			e2, _, err2 := conf.Explain(context.Background(), req, testEnv())
			if e1 != e2 || (err1 == nil) != (err2 == nil) {
				t.Fatalf("Match and Explain disagree: %v %v / %v %v", e1, err1, e2, err2)
			}
		}
	})
}
