package config

import (
	"crypto/x509/pkix"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// caDir is a configuration directory with two independent roots, A and
// B, an intermediate under A, and PEM files of each.
type caDir struct {
	dir              string
	a, b, aInter     *testpki.CA
	expired, notCA   []byte
	aPEM, bPEM, both string
}

func newCADir(t *testing.T) *caDir {
	t.Helper()
	d := &caDir{dir: t.TempDir()}
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatal(e)
		}
	}
	d.a, err = testpki.NewRootCA(pkix.Name{CommonName: "CA A"})
	must(err)
	d.b, err = testpki.NewRootCA(pkix.Name{CommonName: "CA B"})
	must(err)
	d.aInter, err = d.a.NewIntermediate(pkix.Name{CommonName: "CA A intermediate"})
	must(err)
	old, err := testpki.NewRootCA(pkix.Name{CommonName: "CA old"}, testpki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))
	must(err)
	d.expired = old.CertPEM
	leaf, err := d.a.NewClient(pkix.Name{CommonName: "alice"})
	must(err)
	d.notCA = leaf.CertPEM
	server, err := d.a.NewServer("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	must(err)
	must(server.WriteFiles(filepath.Join(d.dir, "server.crt"), filepath.Join(d.dir, "server.key")))
	d.aPEM, d.bPEM = string(d.a.CertPEM), string(d.b.CertPEM)
	d.both = d.aPEM + d.bPEM
	d.write(t, "a.crt", d.aPEM)
	d.write(t, "b.crt", d.bPEM)
	return d
}

func (d *caDir) write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(d.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const caBase = `hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
`

const caBackend = `[backend]
dsn = "host=/tmp"
`

// load writes pg_hba.conf, pg_ident.conf and c.toml (caBase, then top,
// then [backend], then tables) and loads them.
func (d *caDir) load(t *testing.T, top, tables, hbaText, identText string) (*Runtime, []string, error) {
	t.Helper()
	d.write(t, "pg_hba.conf", hbaText)
	d.write(t, "pg_ident.conf", identText)
	path := d.write(t, "c.toml", caBase+top+caBackend+tables)
	return LoadFiles(path)
}

func (d *caDir) subst(s string) string {
	return strings.NewReplacer("$C", filepath.Join(d.dir, "c.toml"), "$D", d.dir).Replace(s)
}

func TestInlineCA(t *testing.T) {
	d := newCADir(t)
	b64 := base64.StdEncoding.EncodeToString([]byte(d.both))
	for _, tc := range []struct{ name, value string }{
		{"PEM", "'''\n" + d.both + "'''"},
		{"base64", `"` + b64 + `"`},
		{"base64 unpadded and wrapped", "'''\n" + strings.TrimRight(b64[:40]+"\n"+b64[40:], "=") + "\n'''"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, _, err := d.load(t, "ssl_ca = "+tc.value+"\n", "", "hostssl all all all cert\n", "")
			if err != nil {
				t.Fatal(err)
			}
			roots := rt.Verifier.Roots()
			if len(roots) != 2 || !roots[0].Equal(d.a.Cert) || !roots[1].Equal(d.b.Cert) {
				t.Fatalf("roots: %d", len(roots))
			}
			if rt.ClientCAs == nil || len(rt.ClientCAs.Sets()) != 1 || rt.ClientCAs.Sets()[0].Name != certauth.DefaultSet {
				t.Fatalf("ClientCAs: %+v", rt.ClientCAs)
			}
		})
	}
}

// TestClientCAKeyErrors: every misuse of the TOML keys, at its line.
func TestClientCAKeyErrors(t *testing.T) {
	d := newCADir(t)
	for _, tc := range []struct{ name, top, tables, want string }{
		{"ssl_ca with ssl_ca_file", "ssl_ca_file = \"a.crt\"\nssl_ca = \"x\"\n", "",
			`$C:6: ssl_ca: set together with ssl_ca_file: use one of them`},
		{"ssl_ca neither PEM nor base64", "ssl_ca = \"not base64!\"\n", "",
			`$C:5: ssl_ca: neither PEM text nor base64: illegal base64 data at input byte 9`},
		{"ssl_ca base64 of something else", "ssl_ca = \"" + base64.StdEncoding.EncodeToString([]byte("hello")) + "\"\n", "",
			`$C:5: ssl_ca: the base64 text does not decode to PEM: encode the PEM file itself (base64 -w0 ca.crt)`},
		{"ssl_ca PEM without a certificate", "ssl_ca = '''\n-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n'''\n", "",
			// A multi-line string is placed at its last line.
			`$C:9: ssl_ca: holds no PEM certificate`},
		{"ssl_client_key_usage", "ssl_client_key_usage = \"strict\"\n", "",
			`$C:5: ssl_client_key_usage: "strict" (openssl or require)`},
		{"ssl_verify_depth negative", "ssl_verify_depth = -1\n", "",
			`$C:5: ssl_verify_depth: -1 is outside the valid range 0..100`},
		{"ssl_verify_depth too large", "ssl_verify_depth = 101\n", "",
			`$C:5: ssl_verify_depth: 101 is outside the valid range 0..100`},
		{"file and pem", "", "[client_ca.a]\nfile = \"a.crt\"\npem = \"x\"\n",
			`$C:9: client_ca.a.pem: set together with file: use one of them`},
		{"neither file nor pem", "", "[client_ca.a]\ncrl_file = \"a.crl\"\n",
			`$C:7: client_ca.a: needs file or pem: the CA certificates of the set`},
		{"bad set name", "", "[client_ca.\"a.b\"]\nfile = \"a.crt\"\n",
			`$C:7: client_ca."a.b": "a.b" is not a CA set name: use letters, digits, "_" and "-" (pg_hba.conf names it clientca=@NAME)`},
		{"pem without a certificate", "", "[client_ca.a]\npem = \"\"\"\nno cert\n\"\"\"\n",
			`$C:10: client_ca.a.pem: the base64 text does not decode to PEM: encode the PEM file itself (base64 -w0 ca.crt)`},
		{"unknown key in a set", "", "[client_ca.a]\nfile = \"a.crt\"\ncrl = \"x\"\n",
			`$C:9: client_ca.a.crl: unrecognized configuration parameter`},
		{"client_ca not a table", "client_ca = \"a.crt\"\n", "",
			`$C:5: client_ca: must be a table of CA sets ([client_ca.NAME]), not string`},
		{"set not a table", "", "[client_ca]\na = \"a.crt\"\n",
			`$C:8: client_ca.a: must be a table, not a string`},
		{"set key of the wrong type beside another error", "port = \"x\"\n", "[client_ca.a]\nfile = 3\n",
			"$C:5: port: must be an integer, not a string\n$C:9: client_ca.a.file: must be a string, not an integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := d.load(t, tc.top, tc.tables, "hostssl all all all cert clientca=@a\n", "")
			if got, want := errorLines(err), d.subst(tc.want); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestClientCABuildErrors: what only loading the files finds, each at the
// pg_hba.conf line, pg_ident.conf line or TOML key at fault, and no
// Runtime (a reload keeps the one in force).
func TestClientCABuildErrors(t *testing.T) {
	d := newCADir(t)
	d.write(t, "empty.crt", "")
	d.write(t, "text.crt", "just text\n")
	d.write(t, "dup.crt", d.aPEM+d.bPEM+d.aPEM)
	d.write(t, "leaf.crt", d.aPEM+string(d.notCA))
	d.write(t, "bad.crl", "not a CRL\n")
	pin := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ name, tables, hba, ident, want string }{
		{"unknown set", "", "hostssl all all all cert\nhostssl all all all cert clientca=@nope\n", "",
			`$D/pg_hba.conf:2: clientca=@nope: no [client_ca.nope] table in $C`},
		{"missing file", "", "hostssl all all all cert clientca=missing.crt\n", "",
			`$D/pg_hba.conf:1: clientca: could not load root certificate file "$D/missing.crt": No such file or directory`},
		{"empty file", "", "hostssl all all all cert clientca=empty.crt\n", "",
			`$D/pg_hba.conf:1: clientca: could not load root certificate file "$D/empty.crt": no certificate or crl found`},
		{"text without a certificate", "", "hostssl all all all cert clientca=text.crt\n", "",
			`$D/pg_hba.conf:1: clientca: could not load root certificate file "$D/text.crt": no certificate or crl found`},
		{"duplicate certificate", "", "hostssl all all all cert clientca=dup.crt\n", "",
			`$D/pg_hba.conf:1: clientca file "$D/dup.crt": certificate 3 (subject "CN=CA A") duplicates certificate 1`},
		{"non-CA certificate", "", "hostssl all all all cert clientca=leaf.crt\n", "",
			`$D/pg_hba.conf:1: clientca file "$D/leaf.crt": certificate 2 (subject "CN=alice") is not a CA certificate (it needs basicConstraints CA:TRUE); a client certificate is pinned with clientname=SHA256 instead`},
		{"non-CA certificate in a table", "[client_ca.a]\nfile = \"leaf.crt\"\n", "hostssl all all all cert clientca=@a\n", "",
			`$C:9: client_ca.a.file: certificate 2 (subject "CN=alice") is not a CA certificate (it needs basicConstraints CA:TRUE); a client certificate is pinned with clientname=SHA256 instead`},
		{"missing table file", "[client_ca.a]\nfile = \"nope.crt\"\n", "hostssl all all all cert clientca=@a\n", "",
			`$C:9: client_ca.a.file: could not load root certificate file "$D/nope.crt": No such file or directory`},
		{"bad table CRL", "[client_ca.a]\nfile = \"a.crt\"\ncrl_file = \"bad.crl\"\n", "hostssl all all all cert clientca=@a\n", "",
			`$C:10: client_ca.a.crl_file: could not load SSL certificate revocation list file "$D/bad.crl": no certificate or crl found`},
		{"uppercase pin", "", "hostssl all all all cert clientname=SHA256 map=pins\n", "pins " + strings.ToUpper(pin[7:9]) + "x alice\npins sha256:" + strings.Repeat("AB", 32) + " alice\n",
			"$D/pg_ident.conf:1: map \"pins\" holds certificate pins (clientname=SHA256 at $D/pg_hba.conf:1): \"ABx\" is not a certificate pin: write \"sha256:\" and the 64 lowercase hex digits of the certificate's SHA-256 (pgcertgate fingerprint prints the line)\n" +
				"$D/pg_ident.conf:2: map \"pins\" holds certificate pins (clientname=SHA256 at $D/pg_hba.conf:1): malformed certificate pin \"sha256:" + strings.Repeat("AB", 32) + "\": uppercase hex digits; pins are lowercase, as pgcertgate fingerprint prints them"},
		{"malformed pins", "", "hostssl all all all cert clientname=SHA256 map=pins\n",
			"pins SHA256:" + pin[7:] + " alice\npins sha256:abc alice\npins sha256:" + strings.Repeat("g", 64) + " alice\n",
			"$D/pg_ident.conf:1: map \"pins\" holds certificate pins (clientname=SHA256 at $D/pg_hba.conf:1): malformed certificate pin \"SHA256:" + pin[7:] + "\": the prefix is lowercase \"sha256:\"\n" +
				"$D/pg_ident.conf:2: map \"pins\" holds certificate pins (clientname=SHA256 at $D/pg_hba.conf:1): malformed certificate pin \"sha256:abc\": 3 hex digits, want 64\n" +
				"$D/pg_ident.conf:3: map \"pins\" holds certificate pins (clientname=SHA256 at $D/pg_hba.conf:1): malformed certificate pin \"sha256:" + strings.Repeat("g", 64) + "\": 'g' is not a hex digit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, _, err := d.load(t, "ssl_ca_file = \"a.crt\"\n", tc.tables, tc.hba, tc.ident)
			if rt != nil {
				t.Errorf("a Runtime came with the errors")
			}
			if got, want := errorLines(err), d.subst(tc.want); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func warningLines(rt *Runtime) string {
	var out []string
	for _, w := range rt.Warnings {
		out = append(out, w.Error())
	}
	return strings.Join(out, "\n")
}

// TestClientCAWarnings: what `check` warns about without refusing.
func TestClientCAWarnings(t *testing.T) {
	d := newCADir(t)
	d.write(t, "old.crt", d.aPEM+string(d.expired))
	pin := "sha256:" + strings.Repeat("0f", 32)
	rt, _, err := d.load(t, "ssl_ca_file = \"a.crt\"\n",
		"[client_ca.b]\nfile = \"b.crt\"\n[client_ca.unused]\npem = '''\n"+d.bPEM+"'''\n",
		"hostssl a all all cert clientca=@b clientkeyusage=require\n"+
			"hostssl old all all trust clientcert=verify-ca clientca=old.crt\n"+
			"hostssl p all all cert clientname=SHA256 map=pins\n"+
			"hostssl q all all cert clientname=SHA256 map=shared\n"+
			"hostssl r all all cert map=shared\n",
		"pins "+pin+" alice\npins "+pin+" alice\npins "+pin+" bob\nshared carol carol\n")
	if err != nil {
		t.Fatal(err)
	}
	want := d.subst(`$D/pg_hba.conf:1: clientca=@b is a pgcertgate extension that PostgreSQL refuses
$D/pg_hba.conf:1: clientkeyusage=require is a pgcertgate extension that PostgreSQL refuses
$D/pg_hba.conf:2: clientca=old.crt is a pgcertgate extension that PostgreSQL refuses
$D/pg_ident.conf:3: certificate pin ` + pin + ` is bound to role bob here and to role alice at $D/pg_ident.conf:1: a certificate should belong to one user
$D/pg_ident.conf:4: "carol" never matches on the clientname=SHA256 line $D/pg_hba.conf:4, which uses map "shared": "carol" is not a certificate pin: write "sha256:" and the 64 lowercase hex digits of the certificate's SHA-256 (pgcertgate fingerprint prints the line)
$C:10: client_ca.unused: no pg_hba.conf line requires clientca=@unused: the set is not loaded and does not widen the handshake
$D/pg_hba.conf:2: clientca file "$D/old.crt": certificate 2 (subject "CN=CA old") expired at `)
	got := warningLines(rt)
	// The clientname=SHA256 warnings come from the existing check.
	var mine []string
	for _, l := range strings.Split(got, "\n") {
		if !strings.Contains(l, "clientname=SHA256 is a pgcertgate extension") {
			mine = append(mine, l)
		}
	}
	if g := strings.Join(mine, "\n"); !strings.HasPrefix(g, want) {
		t.Errorf("warnings:\n%s\nwant (prefix):\n%s", g, want)
	}
	if n := strings.Count(got, "clientname=SHA256 is a pgcertgate extension that PostgreSQL refuses"); n != 2 {
		t.Errorf("%d clientname=SHA256 warnings, want 2:\n%s", n, got)
	}
	// The expired CA loads: OpenSSL's verdict comes at connect time.
	if rt.ClientCAs.Set(filepath.Join(d.dir, "old.crt")) == nil {
		t.Errorf("the set with an expired CA was not loaded")
	}
}

// TestClientCAUnion: the handshake's union holds ssl_ca_file's set then
// the sets lines require, in pg_hba.conf order, each once; an unused set
// does not widen it, and the files are watched.
func TestClientCAUnion(t *testing.T) {
	d := newCADir(t)
	d.write(t, "sub/inter.crt", string(d.aInter.CertPEM)+d.aPEM)
	crl, err := d.b.CRL(nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	d.write(t, "b.crl", string(crl))
	d.write(t, "sub/pg_hba.conf", "hostssl x all all cert clientca=inter.crt\n")
	rt, files, err := d.load(t, "ssl_ca_file = \"a.crt\"\nssl_verify_depth = 3\nssl_client_key_usage = \"require\"\n",
		"[client_ca.b]\nfile = \"b.crt\"\ncrl_file = \"b.crl\"\n[client_ca.unused]\nfile = \"a.crt\"\n",
		"hostssl a all all cert clientca=@b\nhostssl b all all cert clientca=@b\ninclude sub/pg_hba.conf\nhostssl c all all cert\n", "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rt.ClientCAs.Sets() {
		names = append(names, s.Name)
	}
	if want := []string{"ssl_ca_file", "@b", filepath.Join(d.dir, "sub/inter.crt")}; !slices.Equal(names, want) {
		t.Errorf("sets %q, want %q", names, want)
	}
	if rt.ClientCAs.KeyUsage() != certauth.KeyUsageRequire {
		t.Errorf("key usage policy %v", rt.ClientCAs.KeyUsage())
	}
	for _, f := range []string{"sub/inter.crt", "b.crt", "b.crl", "a.crt"} {
		if !slices.Contains(files, filepath.Join(d.dir, f)) {
			t.Errorf("%s is not watched: %q", f, files)
		}
	}
	if !slices.Equal(files, rt.Files) {
		t.Errorf("LoadFiles' list differs from Runtime.Files")
	}
	// The CertificateRequest names every set's certificates; the unused
	// set's are not extra (they are A's, already there).
	subjects := rt.ClientCAs.Names().Subjects()
	if len(subjects) != 3 {
		t.Errorf("%d CA names, want 3 (A, B, A's intermediate)", len(subjects))
	}

	// A failing clientca file is still watched, so fixing it reloads.
	d.write(t, "pg_hba.conf", "hostssl a all all cert clientca=later.crt\n")
	rt, files, err = LoadFiles(filepath.Join(d.dir, "c.toml"))
	if err == nil || rt != nil || !slices.Contains(files, filepath.Join(d.dir, "later.crt")) {
		t.Errorf("missing clientca file: err %v, files %q", err, files)
	}
}

// TestStockConfigUnchanged: without any extension the handshake trusts
// exactly ssl_ca_file's set, with OpenSSL's depth and key usage.
func TestStockConfigUnchanged(t *testing.T) {
	d := newCADir(t)
	rt, _, err := d.load(t, "ssl_ca_file = \"a.crt\"\n", "", "hostssl all all all cert\n", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Warnings) != 0 {
		t.Errorf("warnings: %v", rt.Warnings)
	}
	sets := rt.ClientCAs.Sets()
	if len(sets) != 1 || sets[0].Verifier() != rt.Verifier || rt.ClientCAs.KeyUsage() != certauth.KeyUsageOpenSSL || rt.Config.SSLVerifyDepth != 100 {
		t.Errorf("stock trust: %d sets, key usage %v, depth %d", len(sets), rt.ClientCAs.KeyUsage(), rt.Config.SSLVerifyDepth)
	}
	rt, _, err = d.load(t, "", "", "hostssl all all all trust\n", "")
	if err != nil || rt.ClientCAs != nil {
		t.Errorf("no CA: ClientCAs %v, err %v", rt.ClientCAs, err)
	}
}

// TestInlineCAStandsForTheFile: the keys that need ssl_ca_file take
// ssl_ca as well.
func TestInlineCAStandsForTheFile(t *testing.T) {
	d := newCADir(t)
	crl, err := d.a.CRL(nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	d.write(t, "a.crl", string(crl))
	top := "ssl_ca = '''\n" + d.aPEM + "'''\nssl_crl_file = \"a.crl\"\nssl_ocsp = \"prefer\"\nssl_crl_fetch = true\nauthentication_timeout = \"10s\"\n"
	rt, _, err := d.load(t, top, "", "hostssl all all all cert\n", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Verifier.CRLNextUpdates()) != 1 {
		t.Errorf("the CRL file was not loaded with the inline CA")
	}
	for _, key := range []string{"ssl_ocsp = \"prefer\"\n", "ssl_crl_fetch = true\n", "ssl_crl_file = \"a.crl\"\n"} {
		if _, _, err := d.load(t, key+"authentication_timeout = \"10s\"\n", "", "hostssl all all all cert\n", ""); err == nil {
			t.Errorf("%s without any CA was accepted", strings.TrimSpace(key))
		}
	}
}

// TestCASetLoadErrorPlacement: the one CA loader places a load error at
// the key whose file it could not load: the CA certificates' key, or the
// CRL file's when the certificates loaded, whether they are a file or
// inline text.
func TestCASetLoadErrorPlacement(t *testing.T) {
	d := newCADir(t)
	d.write(t, "bad.crl", "not a CRL\n")
	b64 := base64.StdEncoding.EncodeToString([]byte(d.both))
	for _, tc := range []struct{ name, top, tables, hba, want string }{
		{"ssl_ca with a bad ssl_crl_file", "ssl_ca = \"" + b64 + "\"\nssl_crl_file = \"bad.crl\"\n", "", "hostssl all all all cert\n",
			`$C:6: ssl_crl_file: could not load SSL certificate revocation list file "$D/bad.crl": no certificate or crl found`},
		{"missing ssl_ca_file with a bad ssl_crl_file", "ssl_ca_file = \"nope.crt\"\nssl_crl_file = \"bad.crl\"\n", "", "hostssl all all all cert\n",
			`$C:5: ssl_ca_file: could not load root certificate file "$D/nope.crt": No such file or directory`},
		{"ssl_crl_file and ssl_crl_dir", "ssl_ca_file = \"a.crt\"\nssl_crl_file = \"bad.crl\"\nssl_crl_dir = \"crl\"\n", "", "hostssl all all all cert\n",
			`$C:6: ssl_crl_file: could not load SSL certificate revocation list file "$D/bad.crl" or directory "$D/crl": no certificate or crl found`},
		{"table pem with a bad crl_file", "ssl_ca_file = \"a.crt\"\n", "[client_ca.a]\npem = \"" + b64 + "\"\ncrl_file = \"bad.crl\"\n", "hostssl all all all cert clientca=@a\n",
			`$C:10: client_ca.a.crl_file: could not load SSL certificate revocation list file "$D/bad.crl": no certificate or crl found`},
		{"missing table file with a bad crl_file", "ssl_ca_file = \"a.crt\"\n", "[client_ca.a]\nfile = \"nope.crt\"\ncrl_file = \"bad.crl\"\n", "hostssl all all all cert clientca=@a\n",
			`$C:9: client_ca.a.file: could not load root certificate file "$D/nope.crt": No such file or directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, _, err := d.load(t, tc.top, tc.tables, tc.hba, "")
			if rt != nil {
				t.Errorf("a Runtime came with the errors")
			}
			if got, want := errorLines(err), d.subst(tc.want); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestCASetCRLCoverageWarning: a chain is held to the CRLs of the set
// that verified it only, so a set without CRLs that holds a CA of a set
// with CRLs lets what those CRLs revoke pass its lines: `check` warns,
// at the line or key that gives the set.
func TestCASetCRLCoverageWarning(t *testing.T) {
	d := newCADir(t)
	crl, err := d.a.CRL(nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	d.write(t, "a.crl", string(crl))
	d.write(t, "a-copy.crt", d.aPEM)
	rt, _, err := d.load(t, "ssl_ca_file = \"a.crt\"\nssl_crl_file = \"a.crl\"\n",
		"[client_ca.x]\nfile = \"a.crt\"\ncrl_file = \"a.crl\"\n[client_ca.y]\nfile = \"b.crt\"\n[client_ca.z]\npem = \""+base64.StdEncoding.EncodeToString([]byte(d.both))+"\"\n",
		"hostssl a all all cert clientca=a-copy.crt\n"+
			"hostssl x all all cert clientca=@x\n"+
			"hostssl y all all cert clientca=@y\n"+
			"hostssl z all all cert clientca=@z\n", "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(warningLines(rt), "\n") {
		if !strings.Contains(l, "is a pgcertgate extension") {
			got = append(got, l)
		}
	}
	want := d.subst(`$D/pg_hba.conf:1: clientca file "$D/a-copy.crt": CA certificate (subject "CN=CA A") is also in CA set ssl_ca_file, whose CRLs do not apply to this set: a certificate they revoke still passes the lines that require this set; give it CRLs of its own (a [client_ca.NAME] table with crl_file or crl_dir)
$C:15: client_ca.z.pem: CA certificate (subject "CN=CA A") is also in CA set ssl_ca_file, whose CRLs do not apply to this set: a certificate they revoke still passes the lines that require this set; give it CRLs of its own (crl_file or crl_dir in its table)`)
	if g := strings.Join(got, "\n"); g != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", g, want)
	}
}
