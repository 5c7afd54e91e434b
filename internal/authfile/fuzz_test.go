package authfile

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

// fuzzFS serves the fuzzed text as pg_hba.conf next to a few small files
// that @file and include records can reach.
func fuzzFS(data []byte) FileSystem {
	return NewFS(fstest.MapFS{
		"etc/pg/pg_hba.conf": {Data: data},
		"etc/pg/users":       {Data: []byte("alice, \"bob x\"\n@groups\n")},
		"etc/pg/groups":      {Data: []byte("+admins # c\n")},
		"etc/pg/inc.conf":    {Data: []byte("hostssl all all all cert\n")},
		"etc/pg/d/a.conf":    {Data: []byte("host a a all trust\n")},
	})
}

// FuzzTokenize checks that the tokenizer never panics and that the
// tokens it returns, written back with String(), read back identically.
// Its seeds are pg_hba.conf records, the same as hba's FuzzParse.
func FuzzTokenize(f *testing.F) {
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
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, _, err := ReadFile("/etc/pg/pg_hba.conf", ReadOptions{FS: fuzzFS(data), MaxTokenLen: 300})
		checkErrors(t, err)
		for _, l := range lines {
			if len(l.Fields) == 0 || l.Line < 1 {
				t.Fatalf("bad line %+v", l)
			}
			parts := make([]string, len(l.Fields))
			for i, f := range l.Fields {
				if len(f) == 0 {
					t.Fatalf("empty field in %+v", l)
				}
				parts[i] = f.String()
			}
			text := strings.Join(parts, " ")
			again, _, err := ReadFile("/etc/pg/pg_hba.conf", ReadOptions{FS: fuzzFS([]byte(text))})
			if err != nil || len(again) != 1 {
				t.Fatalf("%q re-reads as %v, %v", text, again, err)
			}
			if !sameFields(l.Fields, again[0].Fields) {
				t.Fatalf("%q re-reads differently:\n%s%s", text, render([]Line{l}), render(again))
			}
		}
	})
}

func sameFields(a, b []Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

// checkErrors requires every error to be a located *Error.
func checkErrors(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, e := range unjoin(err) {
		var he *Error
		if !errors.As(e, &he) || he.File == "" || he.Msg == "" {
			t.Fatalf("unlocated error %T %v", e, e)
		}
	}
}

// unjoin flattens an errors.Join tree.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}
