package pgwire

import (
	"slices"
	"testing"
)

func TestOptionSettingNames(t *testing.T) {
	for in, want := range map[string][]string{
		"-c search_path=x":                {"search_path"},
		"-csearch_path=x -c work_mem=1MB": {"search_path", "work_mem"},
		"--search-path=x":                 {"search_path"},
		`-c pgcertgate\.identity=CN=x`:    {"pgcertgate.identity"},
		`-c a=b\ c -c d=e`:                {"a", "d"},
		"-ec pgcertgate.x=1":              {"pgcertgate.x"},
		"-B 100 -c x=1":                   {"x"},
		"  -c   x=1  ":                    {"x"},
		"plain words":                     nil,
		"-c":                              {""},
		`--p\gcertgate.hba-line=x`:        {"pgcertgate.hba_line"},
	} {
		if got := optionSettingNames(in); !slices.Equal(got, want) {
			t.Errorf("optionSettingNames(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRefuseForgedIdentity(t *testing.T) {
	for _, tc := range []struct {
		params [][2]string
		refuse bool
	}{
		{[][2]string{{"application_name", "pgcertgate.x"}}, false},
		{[][2]string{{"options", "-c application_name=pgcertgate.x"}}, false},
		{[][2]string{{"PgCertGate.identity", "x"}}, true},
		{[][2]string{{"options", `-c pgcertgate\.identity=x`}}, true},
		{[][2]string{{"options", "--PGCERTGATE.client-addr=1"}}, true},
		{[][2]string{{"options", "\xff\xffpgcertgate."}}, false},
		{[][2]string{{"options", "-c \xff\xffpgcertgate.x=1"}}, false},
	} {
		err := refuseForgedIdentity(&startupInfo{params: tc.params})
		if (err != nil) != tc.refuse {
			t.Errorf("%q: refused=%v, want %v", tc.params, err != nil, tc.refuse)
		}
	}
}

// FuzzRefuseForgedIdentity: no startup parameter may panic the check.
func FuzzRefuseForgedIdentity(f *testing.F) {
	f.Add("options", `-c pgcertgate\.identity=x`)
	f.Add("options", "\xff\xffpgcertgate.")
	f.Add("PgCertGate.x", "y")
	f.Fuzz(func(t *testing.T, name, value string) {
		_ = refuseForgedIdentity(&startupInfo{params: [][2]string{{name, value}}})
		_ = optionSettingNames(value)
	})
}
