package hba

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

var update = flag.Bool("update", false, "rewrite golden files")

// describe renders an entry like a pg_hba_file_rules row followed by its
// canonical String().
func describe(e *Entry) string {
	addr, mask := "-", "-"
	switch e.Address.Kind {
	case AddressIP:
		addr, mask = e.Address.IP.String(), e.Address.Mask.String()
	case AddressHostName:
		addr = e.Address.Host
	case AddressAll, AddressSameHost, AddressSameNet:
		addr = e.Address.String()
	}
	opts := make([]string, len(e.Options))
	for i, o := range e.Options {
		opts[i] = o.String()
	}
	return fmt.Sprintf("line %d rule %d | %s | {%s} | {%s} | %s | %s | %s | {%s} | clientcert=%s clientname=%s map=%q membership=%v\n    %s\n",
		e.Line, e.RuleNumber, e.ConnType, authfile.Field(e.Database), authfile.Field(e.User), addr, mask, e.Method,
		strings.Join(opts, ","), e.ClientCert, e.ClientName, e.Map, e.UsesMembership(), e.String())
}

// TestValidGolden loads testdata/valid.conf and compares the interpreted
// records with testdata/valid.golden (go test -update rewrites it).
func TestValidGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.conf")
	if err != nil {
		t.Fatal(err)
	}
	m := fstest.MapFS{"etc/pg/pg_hba.conf": {Data: data}}
	conf, err := Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range conf.Entries {
		b.WriteString(describe(e))
	}
	b.WriteString("warnings:\n")
	for _, w := range conf.Warnings {
		b.WriteString("    " + w.Error() + "\n")
	}
	for _, e := range conf.Entries {
		for _, w := range e.Warnings {
			fmt.Fprintf(&b, "    %s:%d: %s\n", e.File, e.Line, w)
		}
	}
	got := b.String()
	if *update {
		if err := os.WriteFile("testdata/valid.golden", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/valid.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("golden mismatch; run go test -update and review the diff\ngot:\n%s", got)
	}

	// The canonical text is itself a valid file that reads back the same.
	again, err := Load("/c", authfile.ReadOptions{FS: authfile.NewFS(fstest.MapFS{"c": {Data: []byte(conf.String())}})})
	if err != nil {
		t.Fatalf("canonical text does not load: %v\n%s", err, conf)
	}
	if again.String() != conf.String() {
		t.Errorf("canonical text is not stable:\n%s\nvs\n%s", conf, again)
	}
}
