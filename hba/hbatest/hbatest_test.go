package hbatest

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadInvalidCases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cases.txt")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	write(`# header

case one
file include inc.conf
aux inc.conf host all all all bogus
line inc.conf:1
error invalid authentication method "bogus"
pg15 <skip>
flag pg15-differs
end
case two
file hots all all all trust
line 1
error invalid connection type "hots"
pg15 invalid connection type "hots"
end
`)
	got, err := ReadInvalidCases(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Case{{
		Name:    "one",
		File:    []string{"include inc.conf"},
		Aux:     map[string][]string{"inc.conf": {"host all all all bogus"}},
		ErrFile: "inc.conf",
		Line:    1,
		Err:     `invalid authentication method "bogus"`,
		PG15:    "<skip>",
		Flags:   []string{"pg15-differs"},
	}, {
		Name:    "two",
		File:    []string{"hots all all all trust"},
		Aux:     map[string][]string{},
		ErrFile: "pg_hba.conf",
		Line:    1,
		Err:     `invalid connection type "hots"`,
		PG15:    `invalid connection type "hots"`,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
	if !got[0].Has("pg15-differs") || got[1].Has("pg15-differs") {
		t.Errorf("Has disagrees with Flags")
	}
}

// TestReadInvalidCasesErrors checks that every malformed file is refused
// with its file:line, never read past.
func TestReadInvalidCasesErrors(t *testing.T) {
	const complete = "file host\nline 1\nerror e\npg15 e\n"
	for _, tc := range []struct{ text, want string }{
		{"case a\n" + complete + "erorr typo\nend\n", `:6: unknown directive "erorr"`},
		{"case a\n" + complete + "flag pg15-differ\nend\n", `:6: unknown flag "pg15-differ"`},
		{"file host\n", `:1: "file" outside a case`},
		{"case a\n" + complete + "end\nerror e\n", `:7: "error" outside a case`},
		{"case a\nfile host\nline 1\nerror e\nend\n", `:5: case "a" is incomplete`},
		{"case a\n" + complete, `:1: case "a" has no end`},
		{"case a\n" + complete + "case b\n", `:6: case "a" (line 1) has no end`},
		{"case a\nline x\n", `:2: bad line "x"`},
		{"case a\nline inc.conf:0\n", `:2: bad line "inc.conf:0"`},
	} {
		path := filepath.Join(t.TempDir(), "cases.txt")
		if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		cases, err := ReadInvalidCases(path)
		if want := path + tc.want; err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", tc.text, err, want)
		}
		if cases != nil {
			t.Errorf("%q: cases returned together with an error", tc.text)
		}
	}
	if _, err := ReadInvalidCases(filepath.Join(t.TempDir(), "missing.txt")); err == nil {
		t.Errorf("a missing file was read without error")
	}
}
