package integration

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// identV1CRL has `openssl ca -gencrl` write an X.509 v1 CRL for ca (no
// version field, no extensions), current for a day unless told otherwise.
func identV1CRL(t *testing.T, ca *testpki.CA, revoked []*x509.Certificate, thisUpdate, nextUpdate time.Time) []byte {
	t.Helper()
	if thisUpdate.IsZero() {
		thisUpdate = time.Now().Add(-time.Hour)
	}
	if nextUpdate.IsZero() {
		nextUpdate = time.Now().Add(24 * time.Hour)
	}
	pem, err := ca.OpenSSLCRL(revoked, thisUpdate, nextUpdate)
	if err != nil {
		t.Fatal(err)
	}
	return pem
}

// TestIdentCRLv1File: ssl_crl_file holding only v1 CRLs, as `openssl ca`
// writes them by default. PostgreSQL uses them; pgcertgate must start
// with them and give the same verdicts.
func TestIdentCRLv1File(t *testing.T) {
	p, inter2, inter3 := identCRLPKI(t)
	var crls []byte
	crls = append(crls, identV1CRL(t, p.root, p.revoked, time.Time{}, time.Time{})...)
	crls = append(crls, identV1CRL(t, p.inter, nil, time.Time{}, time.Time{})...)
	crls = append(crls, identV1CRL(t, inter3, nil, time.Time{}, time.Time{})...)
	// inter2's only CRL expired yesterday.
	crls = append(crls, identV1CRL(t, inter2, nil, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))...)
	w := newWorld(t, p, worldOptions{
		hba:   "hostssl all all 127.0.0.1/32 cert\n",
		files: map[string]string{"root.crt": identCAFile(p, inter2, inter3), "root.crl": string(crls)},
	})
	identSetup(t, w, []string{"alice"}, nil)
	c := func(cert string) conn { return conn{user: "alice", database: "postgres", cert: cert} }
	n := identRun(t, w, []identCase{
		{"not revoked", c("alice"), "ok as alice", nil},
		{"revoked leaf", c("revoked"), "TLS failure", nil},
		{"intermediate with a CRL", c("inter-alice"), "ok as alice", nil},
		{"intermediate with an expired CRL", c("inter2-alice"), "TLS failure", nil},
		{"revoked intermediate", c("inter3-alice"), "TLS failure", nil},
	})
	t.Logf("differential: %d cases agree with PostgreSQL", n)
}

// TestIdentCRLv1Dir: ssl_crl_dir with v1 CRLs, and v1 and v2 CRLs side
// by side, dropped in while both servers run.
func TestIdentCRLv1Dir(t *testing.T) {
	p, inter2, _ := identCRLPKI(t)
	w := newWorld(t, p, worldOptions{
		hba:     "hostssl all all 127.0.0.1/32 cert\n",
		noCRL:   true,
		files:   map[string]string{"root.crt": identCAFile(p, inter2)},
		conf:    map[string]string{"ssl_crl_dir": "crl"},
		crlTOML: `ssl_crl_dir = "crl"`,
	})
	identSetup(t, w, []string{"alice"}, nil)
	c := func(cert string) conn { return conn{user: "alice", database: "postgres", cert: cert} }
	identDropCRL(t, w, identCRLName(t, p.root, 0), identV1CRL(t, p.root, p.revoked, time.Time{}, time.Time{}))
	identDropCRL(t, w, identCRLName(t, p.inter, 0), identV1CRL(t, p.inter, nil, time.Time{}, time.Time{}))
	n := identRun(t, w, []identCase{
		{"v1 CRLs: not revoked", c("alice"), "ok as alice", nil},
		{"v1 CRLs: revoked", c("revoked"), "TLS failure", nil},
		{"v1 CRLs: intermediate", c("inter-alice"), "ok as alice", nil},
		{"no CRL for inter2", c("inter2-alice"), "TLS failure", nil},
	})

	// A newer v2 CRL as .r1 next to the v1 .r0: the later thisUpdate wins.
	v2, err := p.inter.CRL([]*x509.Certificate{p.clients["inter-alice"].Cert}, time.Now().Add(-30*time.Minute), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	identDropCRL(t, w, identCRLName(t, p.inter, 1), v2)
	// inter2's CRL has expired.
	identDropCRL(t, w, identCRLName(t, inter2, 0), identV1CRL(t, inter2, nil, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	n += identRun(t, w, []identCase{
		{"newer v2 CRL revokes inter-alice", c("inter-alice"), "TLS failure", nil},
		{"expired v1 CRL for inter2", c("inter2-alice"), "TLS failure", nil},
		{"v1 root CRL still applies", c("alice"), "ok as alice", nil},
	})

	// And the other way round: a newer v1 .r2 that no longer revokes
	// inter-alice.
	identDropCRL(t, w, identCRLName(t, p.inter, 2), identV1CRL(t, p.inter, nil, time.Now().Add(-10*time.Minute), time.Time{}))
	n += identRun(t, w, []identCase{
		{"newer v1 CRL lifts the revocation", c("inter-alice"), "ok as alice", nil},
	})
	t.Logf("differential: %d cases agree with PostgreSQL", n)
}

// identPGSuiteDir holds PostgreSQL's own SSL test suite files
// (src/test/ssl/ssl/), beside the checkout; see its PROVENANCE.txt. Their
// CRLs are all X.509 v1. They are read from there, and only their keys
// are copied (into the test's directory, to get mode 0600); none is ever
// added to this repository.
var identPGSuiteDir = filepath.Join("..", "..", "shared", "pgsuite-data")

// identPGSuite loads the suite's client certificates into p.clients as
// "suite-<file>", and returns its directory; it skips the test when the
// suite is not there, as in a plain clone.
func identPGSuite(t *testing.T, p *pki) string {
	t.Helper()
	dir := identPGSuiteDir
	if _, err := os.Stat(filepath.Join(dir, "PROVENANCE.txt")); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("PostgreSQL's SSL test files are not at %s", dir)
	} else if err != nil {
		t.Fatal(err)
	}
	readCerts := func(name string) []*x509.Certificate {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var out []*x509.Certificate
		for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out = append(out, c)
		}
		return out
	}
	root := readCerts("root_ca.crt")[0]
	for _, name := range []string{"client", "client+client_ca", "client-revoked", "client-revoked-utf8", "client-dn", "client_ext"} {
		certs := readCerts(name + ".crt")
		keyName := name + ".key"
		if name == "client+client_ca" {
			keyName = "client.key"
		}
		key, err := os.ReadFile(filepath.Join(dir, keyName))
		if err != nil {
			t.Fatal(err)
		}
		p.clients["suite-"+name] = &testpki.Leaf{
			Cert:    certs[0],
			DER:     certs[0].Raw,
			CertPEM: testpki.CertsPEM(certs[0]),
			KeyPEM:  key,
			// Intermediates() drops the last: the root, never sent.
			Chain: append(certs[1:], root),
		}
	}
	return dir
}

// TestIdentCRLPGSuite runs PostgreSQL's own SSL test suite certificates
// and v1 CRLs through both servers, as ssl_crl_file and as ssl_crl_dir:
// ssl_ca_file is the suite's root+client_ca.crt (the servers keep this
// test's own server certificate, and the clients trust its root).
func TestIdentCRLPGSuite(t *testing.T) {
	p := newPKI(t)
	dir := identPGSuite(t, p)
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	cases := func(extra string) []identCase {
		c := func(user, cert string) conn {
			return conn{user: user, database: "postgres", cert: cert, extra: extra}
		}
		return []identCase{
			{"client.crt", c("ssltestuser", "suite-client"), "ok as ssltestuser", nil},
			{"client+client_ca.crt", c("ssltestuser", "suite-client+client_ca"), "ok as ssltestuser", nil},
			{"client_ext.crt", c("ssltestuser", "suite-client_ext"), "ok as ssltestuser", nil},
			{"client-dn.crt", c("ssltestuser-dn", "suite-client-dn"), "ok as ssltestuser-dn", nil},
			{"client-revoked.crt", c("ssltestuser", "suite-client-revoked"), "TLS failure", nil},
			{"client-revoked-utf8.crt", c("ssltestuser", "suite-client-revoked-utf8"), "TLS failure", nil},
		}
	}
	total := 0
	for _, mode := range []string{"ssl_crl_file", "ssl_crl_dir"} {
		t.Run(mode, func(t *testing.T) {
			files := map[string]string{
				"root.crt":        read("root+client_ca.crt"),
				"server-root.crt": string(p.root.CertPEM),
			}
			o := worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n", files: files}
			if mode == "ssl_crl_file" {
				files["root.crl"] = read("root+client.crl")
			} else {
				ents, err := os.ReadDir(filepath.Join(dir, "root+client-crldir"))
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range ents {
					if _, _, ok := certauth.ParseHashedCRLName(e.Name()); !ok {
						t.Fatalf("root+client-crldir/%s: not a hashed CRL name", e.Name())
					}
					files["crl/"+e.Name()] = read(filepath.Join("root+client-crldir", e.Name()))
				}
				o.noCRL = true
				o.conf = map[string]string{"ssl_crl_dir": "crl"}
				o.crlTOML = `ssl_crl_dir = "crl"`
			}
			w := newWorld(t, p, o)
			identSetup(t, w, []string{"ssltestuser", "ssltestuser-dn"}, nil)
			total += identRun(t, w, cases("sslrootcert="+filepath.Join(w.dir, "server-root.crt")))
		})
	}
	t.Logf("differential: %d cases agree with PostgreSQL", total)
}
