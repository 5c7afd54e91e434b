package certauth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzFormatDN feeds arbitrary bytes to the name parser and printer. It
// must never panic, must be deterministic, and whatever it accepts must
// also hash and canonicalise. The seed corpus in testdata/fuzz/FuzzFormatDN
// holds the golden subjects (regenerate with -update).
func FuzzFormatDN(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		dn, err := FormatDN(b)
		dn2, err2 := FormatDN(b)
		if dn != dn2 || (err == nil) != (err2 == nil) {
			t.Fatalf("FormatDN not deterministic: %q/%v vs %q/%v", dn, err, dn2, err2)
		}
		h, herr := NameHash(b)
		if (err == nil) != (herr == nil) {
			t.Fatalf("FormatDN err %v but NameHash err %v", err, herr)
		}
		if err != nil {
			return
		}
		h2, _ := NameHash(b)
		if h != h2 {
			t.Fatal("NameHash not deterministic")
		}
		// Escaping leaves only printable ASCII in the output.
		for i := 0; i < len(dn); i++ {
			if dn[i] < 0x20 || dn[i] > 0x7e {
				t.Fatalf("unescaped byte %#x in %q", dn[i], dn)
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates the FuzzFormatDN seed corpus from the
// golden subjects when run with -update.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzFormatDN")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range dnCases(t) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n[]byte(")
		b.WriteString(fmt.Sprintf("%q", c.der))
		b.WriteString(")\n")
		if err := os.WriteFile(filepath.Join(dir, c.name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
