package certauth

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestHashedCRLName(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash uint32
		n    int
		ok   bool
	}{
		{"9bb9e3c3.r0", 0x9bb9e3c3, 0, true},
		{"0000000a.r12", 0xa, 12, true},
		{"ffffffff.r1", 0xffffffff, 1, true},
		{"9BB9E3C3.r0", 0, 0, false}, // by_dir prints lower case
		{"9bb9e3c3.r01", 0, 0, false},
		{"9bb9e3c3.r", 0, 0, false},
		{"9bb9e3c3.r+1", 0, 0, false},
		{"9bb9e3c3.r-1", 0, 0, false},
		{"9bb9e3c3.0", 0, 0, false}, // a certificate, not a CRL
		{"9bb9e3c.r0", 0, 0, false},
		{"9bb9e3c3x.r0", 0, 0, false},
		{"9bb9e3c3.r0.pem", 0, 0, false},
		{"9bb9e3c3.r99999999999999999999", 0, 0, false},
		{"", 0, 0, false},
	} {
		h, n, ok := ParseHashedCRLName(tc.name)
		if ok != tc.ok || h != tc.hash || n != tc.n {
			t.Errorf("ParseHashedCRLName(%q) = %08x, %d, %v; want %08x, %d, %v", tc.name, h, n, ok, tc.hash, tc.n, tc.ok)
		}
		if tc.ok && HashedCRLName(tc.hash, tc.n) != tc.name {
			t.Errorf("HashedCRLName(%08x, %d) = %q, want %q", tc.hash, tc.n, HashedCRLName(tc.hash, tc.n), tc.name)
		}
	}
}

// TestHashedCRLNameOpenSSLRehash: `openssl rehash` names a CRL in a
// directory as HashedCRLName says, so a directory prepared the usual way
// is read.
func TestHashedCRLNameOpenSSLRehash(t *testing.T) {
	root := issue(t, "root", nil, nil, true)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "root.crl.pem"), pemCRL(opensslV1CRL(t, root, nil, time.Time{}, time.Time{})), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("openssl", "rehash", dir).CombinedOutput(); err != nil {
		t.Fatalf("openssl rehash: %v\n%s", err, out)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	h, err := NameHash(root.cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	if want := HashedCRLName(h, 0); !slices.Contains(names, want) {
		t.Fatalf("openssl rehash wrote %v, no %s", names, want)
	}
}
