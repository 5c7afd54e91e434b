package hba

import (
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

func loadText(t *testing.T, text string) (*Conf, error) {
	t.Helper()
	m := fstest.MapFS{"etc/pg/pg_hba.conf": &fstest.MapFile{Data: []byte(text)}}
	return Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
}

// TestCertExtensionOptions covers pgcertgate's certificate options:
// what each line accepts, and the error (file:line) for each misuse.
func TestCertExtensionOptions(t *testing.T) {
	for _, tc := range []struct {
		line string
		err  string // "" when the line loads
		set  string // ClientCASet
		ku   bool   // ClientKeyUsageRequire
		name ClientName
	}{
		{line: "hostssl all all all cert clientca=@corp", set: "@corp"},
		{line: "hostssl all all all cert clientca=a.pem", set: "/etc/pg/a.pem"},
		{line: "hostssl all all all cert clientca=../ca/../ca/b.pem", set: "/etc/ca/b.pem"},
		{line: "hostssl all all all cert clientca=/abs/c.pem", set: "/abs/c.pem"},
		{line: "hostssl all all all trust clientcert=verify-ca clientca=@x-1_2", set: "@x-1_2"},
		// The option may come before the clientcert that allows it.
		{line: "hostssl all all all trust clientca=@b clientcert=verify-full", set: "@b"},
		{line: "hostssl all all all cert clientkeyusage=require", ku: true},
		{line: "hostssl all all all cert clientkeyusage=openssl"},
		{line: "hostssl all all all trust clientkeyusage=require clientcert=verify-ca", ku: true},
		{line: "hostssl all all all cert clientname=SHA256 map=pins", name: ClientNameSHA256},

		{line: "host all all all cert clientca=@corp", err: "cert authentication is only supported on hostssl connections"},
		{line: "host all all all trust clientca=@corp", err: `clientca can only be configured for "hostssl" rows`},
		{line: "hostnossl all all all trust clientkeyusage=require", err: `clientkeyusage can only be configured for "hostssl" rows`},
		{line: "hostssl all all all trust clientca=@corp", err: `clientca can only be configured where the client certificate is checked: method "cert", or clientcert=verify-ca or verify-full (method "trust" checks none)`},
		{line: "hostssl all all all reject clientca=a.pem", err: `clientca can only be configured where the client certificate is checked: method "cert", or clientcert=verify-ca or verify-full (method "reject" checks none)`},
		{line: "hostssl all all all scram-sha-256 clientkeyusage=require", err: `clientkeyusage can only be configured where the client certificate is checked: method "cert", or clientcert=verify-ca or verify-full (method "scram-sha-256" checks none)`},
		{line: "hostssl all all all cert clientca=", err: `invalid value for clientca: ""`},
		{line: "hostssl all all all cert clientca=@", err: `invalid value for clientca: "@" (a CA set name has only letters, digits, "_" and "-")`},
		{line: "hostssl all all all cert clientca=@a.b", err: `invalid value for clientca: "@a.b" (a CA set name has only letters, digits, "_" and "-")`},
		{line: "hostssl all all all cert clientkeyusage=yes", err: `invalid value for clientkeyusage: "yes"`},
		{line: "hostssl all all all cert clientname=SHA256", err: "clientname=SHA256 needs map=: a certificate fingerprint never equals a user name, so pg_ident.conf must bind it to roles"},
		// trust takes no map (PostgreSQL), so it can never pin.
		{line: "hostssl all all all trust clientcert=verify-full clientname=SHA256", err: "clientname=SHA256 needs map=: a certificate fingerprint never equals a user name, so pg_ident.conf must bind it to roles"},
		{line: "hostssl all all all cert clientname=sha256 map=pins", err: `invalid value for clientname: "sha256"`},
	} {
		t.Run(tc.line, func(t *testing.T) {
			conf, err := loadText(t, "# comment\n"+tc.line+"\n")
			if tc.err != "" {
				want := "/etc/pg/pg_hba.conf:2: " + tc.err
				if err == nil || err.Error() != want {
					t.Fatalf("error %v\nwant    %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e := conf.Entries[0]
			if got := e.ClientCASet(); got != tc.set {
				t.Errorf("ClientCASet() = %q, want %q", got, tc.set)
			}
			if e.ClientKeyUsageRequire != tc.ku {
				t.Errorf("ClientKeyUsageRequire = %v", e.ClientKeyUsageRequire)
			}
			if e.ClientName != tc.name {
				t.Errorf("ClientName = %v, want %v", e.ClientName, tc.name)
			}
			if tc.name == ClientNameSHA256 && !e.ClientName.Extension() {
				t.Errorf("SHA256 is not flagged as an extension")
			}
			// The canonical form parses back to the same options.
			again, err := loadText(t, e.String()+"\n")
			if err != nil || again.Entries[0].ClientCA != e.ClientCA || again.Entries[0].ClientKeyUsageRequire != e.ClientKeyUsageRequire {
				t.Errorf("String() %q does not round-trip: %v", e.String(), err)
			}
		})
	}
}

func TestCertExtensionsListed(t *testing.T) {
	conf, err := loadText(t, "hostssl all all all cert map=m clientca=@a clientname=SHA256 clientkeyusage=require\nhostssl all all all cert\n")
	if err != nil {
		t.Fatal(err)
	}
	got := conf.Entries[0].CertExtensions()
	if len(got) != 2 || got[0].String() != `clientca="@a"` || got[1].String() != "clientkeyusage=require" {
		t.Errorf("CertExtensions() = %v", got)
	}
	if got := conf.Entries[1].CertExtensions(); len(got) != 0 {
		t.Errorf("stock line: CertExtensions() = %v", got)
	}
}
