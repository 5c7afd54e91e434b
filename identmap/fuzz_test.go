package identmap

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// FuzzParse: whatever the file, Load never panics; when it succeeds, the
// canonical String() parses back to the same String() (parse → print →
// parse → print is stable), with the same compiled regexes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"m alice bob\n",
		"m \"/^(.*)@example\\.com$\" \\1\n",
		"\"m x\" \"all\" all\nm +g \"+g\"\n",
		"m /^jos..$ \"jos\xc3\xa9\" extra\n",
		"m a,b c\nm a\n",
		"m \"/(\" u\n",
		"m x \\\n y\n",
		"m \"a\"\"b\" \"\"\n",
		"@x y z\n",
		"m /(?i)x \"/^y\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		m, err := loadString(content)
		if err != nil {
			return
		}
		first := m.String()
		m2, err := loadString(first)
		if err != nil {
			t.Fatalf("canonical form does not load: %v\ninput:  %q\nprinted: %q", err, content, first)
		}
		if second := m2.String(); second != first {
			t.Fatalf("not stable:\n%q\n%q", first, second)
		}
		if len(m.Entries) != len(m2.Entries) {
			t.Fatalf("entry count changed: %d vs %d", len(m.Entries), len(m2.Entries))
		}
		for i, e := range m.Entries {
			e2 := m2.Entries[i]
			if e.MapName != e2.MapName || e.System != e2.System || e.User.Value != e2.User.Value ||
				isMemberCheck(e.User) != isMemberCheck(e2.User) || e.User.IsKeyword("all") != e2.User.IsKeyword("all") {
				t.Fatalf("entry %d changed meaning: %#v vs %#v", i, e, e2)
			}
			if (e.systemRE == nil) != (e2.systemRE == nil) || e.systemRE != nil && e.systemRE.String() != e2.systemRE.String() {
				t.Fatalf("entry %d: system regex changed", i)
			}
			// Check never panics on the loaded map.
			_, _ = m.Check(context.Background(), e.MapName, e.User.Value, e.System.Value, fakeRoles{})
		}
	})
}

func loadString(content string) (*Map, error) {
	fsys := fstest.MapFS{"etc/pg_ident.conf": &fstest.MapFile{Data: []byte(content)}}
	return Load("/etc/pg_ident.conf", authfile.ReadOptions{FS: authfile.NewFS(fsys)})
}
