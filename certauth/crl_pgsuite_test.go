package certauth

import (
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pgsuiteDir holds PostgreSQL's own SSL test suite files
// (src/test/ssl/ssl/), beside the checkout; see its PROVENANCE.txt. They
// are public test credentials and are never copied into this repository.
var pgsuiteDir = filepath.Join("..", "..", "shared", "pgsuite-data")

// pgsuite returns the suite's directory, skipping the test when it is not
// there: a plain clone has only the CRLs the other tests make with
// `openssl ca`.
func pgsuite(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgsuiteDir, "PROVENANCE.txt")); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("PostgreSQL's SSL test files are not at %s", pgsuiteDir)
	} else if err != nil {
		t.Fatal(err)
	}
	return pgsuiteDir
}

// TestPGSuiteCRLsLoad: every CRL of PostgreSQL's SSL test suite (all
// X.509 v1) loads as ssl_crl_file, and every file of its hashed CRL
// directories is named for its issuer as the lookup expects and loads.
func TestPGSuiteCRLsLoad(t *testing.T) {
	dir := pgsuite(t)
	ca := filepath.Join(dir, "root+client_ca.crt")
	files, err := filepath.Glob(filepath.Join(dir, "*.crl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.crl in %s (%v)", dir, err)
	}
	dirs, err := filepath.Glob(filepath.Join(dir, "*-crldir"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no *-crldir in %s (%v)", dir, err)
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			h, _, ok := ParseHashedCRLName(e.Name())
			if !ok {
				t.Errorf("%s: not a hashed CRL name", p)
				continue
			}
			files = append(files, p)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			crls, _, err := parsePEMBundle(data, false)
			if err != nil || len(crls) == 0 {
				t.Errorf("%s: %d CRLs, %v", p, len(crls), err)
				continue
			}
			ents, err := parseName(crls[0].crl.RawIssuer)
			if err != nil {
				t.Fatal(err)
			}
			if got := nameHash(ents); got != h {
				t.Errorf("%s: issuer hash %08x", p, got)
			}
		}
	}
	for _, f := range files {
		name, _ := filepath.Rel(dir, f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crls, _, err := parsePEMBundle(data, false)
		if err != nil || len(crls) == 0 {
			t.Errorf("%s: %d CRLs, %v", name, len(crls), err)
			continue
		}
		i := 0
		for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
			if b.Type != "X509 CRL" || i >= len(crls) {
				continue
			}
			c := crls[i]
			i++
			v, _ := crlShape(t, b.Bytes)
			t.Logf("%s: version field %d, issuer %q, %d revoked, nextUpdate %s", name, v, c.crl.Issuer, len(c.revoked), c.crl.NextUpdate.Format(time.DateOnly))
		}
		if _, err := NewVerifier(Config{CAFile: ca, CRLFile: f}); err != nil {
			t.Errorf("%s as ssl_crl_file: %v", name, err)
		}
	}
}

// pgsuiteReasonDiffers lists the suite's certificates whose refusal
// carries another reason than OpenSSL's, with why. Accepted or refused
// must still agree.
var pgsuiteReasonDiffers = map[string]string{
	// A self-signed certificate with an RSASSA-PSS key: Go does not parse
	// id-RSASSA-PSS public keys, so its key type does not match its
	// signature algorithm and it is not taken as self-signed ("unable to
	// get local issuer certificate" rather than "self-signed
	// certificate"; the client gets the unknown_ca alert either way).
	"server-rsapss.crt": "RSASSA-PSS key not parsed by Go",
}

// TestPGSuiteVerdicts: every certificate file of the suite, as a client's
// chain (the first certificate the leaf, the others sent with it), under
// each CA and CRL setting the suite uses, gets the verdict `openssl
// verify` gives with PostgreSQL's flags; and the suite's own expectations
// hold (client.crt accepted, the revoked ones refused as revoked).
func TestPGSuiteVerdicts(t *testing.T) {
	dir := pgsuite(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	clientCA, serverCA := p("root+client_ca.crt"), p("root+server_ca.crt")
	configs := map[string]Config{
		"client-crl-file":      {CAFile: clientCA, CRLFile: p("root+client.crl")},
		"client-crl-dir":       {CAFile: clientCA, CRLDir: p("root+client-crldir")},
		"client-crl-file-only": {CAFile: clientCA, CRLFile: p("client.crl")},
		"client-crl-dir-only":  {CAFile: clientCA, CRLDir: p("client-crldir")},
		"client-file-and-dir":  {CAFile: clientCA, CRLFile: p("root.crl"), CRLDir: p("client-crldir")},
		"server-crl-file":      {CAFile: serverCA, CRLFile: p("root+server.crl")},
		"server-crl-dir":       {CAFile: serverCA, CRLDir: p("root+server-crldir")},
		"server-file-and-dir":  {CAFile: serverCA, CRLFile: p("root.crl"), CRLDir: p("server-crldir")},
		"root-only":            {CAFile: p("root_ca.crt"), CRLFile: p("root.crl")},
	}
	// The suite's own expectations (src/test/ssl/t/001_ssltests.pl).
	expect := map[[2]string]Reason{
		{"client-crl-file", "client.crt"}:                  0,
		{"client-crl-dir", "client.crt"}:                   0,
		{"client-crl-file", "client+client_ca.crt"}:        0,
		{"client-crl-file", "client-revoked.crt"}:          CertRevoked,
		{"client-crl-dir", "client-revoked.crt"}:           CertRevoked,
		{"client-crl-file", "client-revoked-utf8.crt"}:     CertRevoked,
		{"server-crl-file", "server-revoked.crt"}:          CertRevoked,
		{"server-crl-dir", "server-revoked.crt"}:           CertRevoked,
		{"server-crl-file", "server-cn-only.crt"}:          0,
		{"server-crl-dir", "server-cn-only+server_ca.crt"}: 0,
	}
	certs, err := filepath.Glob(p("*.crt"))
	if err != nil || len(certs) == 0 {
		t.Fatalf("no *.crt in %s (%v)", dir, err)
	}
	now := time.Now()
	work := t.TempDir()
	checked := map[[2]string]bool{}
	for cname, cfg := range configs {
		v, err := NewVerifier(cfg)
		if err != nil {
			t.Fatalf("%s: %v", cname, err)
		}
		for _, certFile := range certs {
			base := filepath.Base(certFile)
			t.Run(cname+"/"+strings.TrimSuffix(base, ".crt"), func(t *testing.T) {
				data, err := os.ReadFile(certFile)
				if err != nil {
					t.Fatal(err)
				}
				var ders [][]byte
				for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
					ders = append(ders, b.Bytes)
				}
				leaf := filepath.Join(work, base+".leaf")
				untrusted := ""
				if err := os.WriteFile(leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ders[0]}), 0o600); err != nil {
					t.Fatal(err)
				}
				if len(ders) > 1 {
					untrusted = filepath.Join(work, base+".untrusted")
					var rest []byte
					for _, d := range ders[1:] {
						rest = append(rest, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
					}
					if err := os.WriteFile(untrusted, rest, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				wantR, wantD, _, out := opensslVerify(t, cfg, leaf, untrusted, now)
				_, err = v.Verify(ders, now)
				r, d := outcome(err)
				if why, ok := pgsuiteReasonDiffers[base]; ok {
					// Refused on both sides; only the logged reason differs.
					if (r == 0) != (wantR == 0) {
						t.Fatalf("Verify: %v at depth %d (%v)\n%s", r, d, err, out)
					}
					t.Logf("%v at depth %d, openssl %v at depth %d: %s", r, d, wantR, wantD, why)
				} else if r != wantR || d != wantD {
					t.Fatalf("Verify: %v at depth %d (%v)\n%s", r, d, err, out)
				}
				if want, ok := expect[[2]string{cname, base}]; ok {
					checked[[2]string{cname, base}] = true
					if r != want {
						t.Errorf("%v, the suite expects %v", r, want)
					}
				}
			})
		}
	}
	for k := range expect {
		if !checked[k] {
			t.Errorf("%s %s: not checked (file missing?)", k[0], k[1])
		}
	}
}
