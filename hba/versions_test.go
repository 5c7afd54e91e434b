package hba

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// versionDifferences is the list of known differences between PostgreSQL
// 15 (installed here, used for the differential tests) and PostgreSQL 18
// (whose grammar and messages this package follows). The pg15 texts were
// observed on PostgreSQL 15.18; the pg18 texts come from the 18 source of
// hba.c and conffiles.c. A file is the pg_hba.conf content; "" as pg18
// means the file loads.
var versionDifferences = []struct {
	what  string
	file  string
	pg15  string
	pg18  string
	files map[string]string
}{
	{
		what: "include, include_if_exists and include_dir records (16+); 15 reads them as a connection type",
		file: "include other.conf",
		pg15: `invalid connection type "include"`,
		pg18: `could not open file "/etc/pg/other.conf": No such file or directory`,
	},
	{
		what: "include_if_exists of a missing file is only a warning (16+)",
		file: "include_if_exists other.conf\nhost all all all trust",
		pg15: `invalid connection type "include_if_exists"`,
		pg18: "",
	},
	{
		what: "/regex in the database and user fields (16+); 15 compares /^x$ as a literal name",
		file: "host /^(a|b)$ /^u all trust",
		pg15: "",
		pg18: "",
	},
	{
		what: "an invalid /regex is refused (16+); 15 accepts it as a literal name",
		file: "host /( all all trust",
		pg15: "",
		pg18: `invalid regular expression "(": parentheses () not balanced`,
	},
	{
		what: "token length: 15 limits a token to 10239 bytes (view: \"authentication file token too long\"); 16+ has no limit (authfile.ReadOptions.MaxTokenLen: 10239 reproduces 15)",
		file: "host all " + strings.Repeat("x", 10240) + " all trust",
		pg15: `authentication file token too long, skipping: "` + strings.Repeat("x", 10239) + `"`,
		pg18: "",
	},
	{
		what: "a missing @file: new wording (open_auth_file)",
		file: "host all @nofile all trust",
		pg15: `could not open secondary authentication file "@nofile" as "/etc/pg/nofile": No such file or directory`,
		pg18: `could not open file "/etc/pg/nofile": No such file or directory`,
	},
	{
		what:  "@file and include nesting is limited to depth 10 (16+); 15 recurses without a limit",
		file:  "host all @loop all trust",
		files: map[string]string{"loop": "@loop"},
		pg15:  "(recursion until the stack depth limit; not tested)",
		pg18:  `could not open file "/etc/pg/loop": maximum nesting depth exceeded`,
	},
	{
		what: "the oauth method (18)",
		file: "host all all all oauth issuer=https://i.example scope=openid",
		pg15: `invalid authentication method "oauth"`,
		pg18: "",
	},
	{
		what: "the oauth options issuer, scope, validator, delegate_ident_mapping (18)",
		file: "host all all all trust scope=openid",
		pg15: `unrecognized authentication option name: "scope"`,
		pg18: `authentication option "scope" is only valid for authentication methods oauth`,
	},
	{
		what: "map is also valid for oauth, and the message lists it (18)",
		file: "host all all all md5 map=m",
		pg15: `authentication option "map" is only valid for authentication methods ident, peer, gssapi, sspi, and cert`,
		pg18: `authentication option "map" is only valid for authentication methods ident, peer, gssapi, sspi, cert, and oauth`,
	},
	{
		what: "LDAP simple bind mixed with search+bind: new wording (17+)",
		file: "host all all all ldap ldapprefix=cn= ldapbasedn=dc=x",
		pg15: "cannot use ldapbasedn, ldapbinddn, ldapbindpasswd, ldapsearchattribute, ldapsearchfilter, or ldapurl together with ldapprefix",
		pg18: "cannot mix options for simple bind and search+bind modes",
	},
}

// otherDeviations lists where pgcertgate knowingly differs from a real
// server whatever its version. They are documented, not tested against a
// server.
var otherDeviations = []string{
	`sspi and bsd: Linux builds of PostgreSQL refuse them ("invalid authentication method \"sspi\": not supported by this build", seen on 15); pgcertgate accepts them, since it never performs them anyway`,
	`clientname=SAN-email, SAN-DNS and SAN-URI are pgcertgate extensions; PostgreSQL refuses them with invalid value for clientname: "SAN-DNS"`,
	`regular expressions whose meaning Go's RE2 cannot reproduce (back-references, lookaround, \m \M \y \Y [[:<:]] [[:>:]], (?b) and (?e), nested counts multiplying beyond 1000) are refused with "regular expression \"…\" is not supported by pgcertgate: …"; PostgreSQL accepts them (package internal/are, shared with pg_ident.conf, has the full table)`,
	`a few pathological regular expressions that PostgreSQL refuses with "regular expression is too complex" (limits of its NFA optimizer) are accepted, and matched as PostgreSQL's semantics would match them`,
	`radiusservers: PostgreSQL resolves every server name at load time ("could not translate RADIUS server name ..."); pgcertgate does no DNS while parsing`,
	`oauth: PostgreSQL 18 checks validator= against oauth_validator_libraries at load time; pgcertgate does not know that setting and skips the check`,
	`hostssl records when the server runs with ssl=off: PostgreSQL shows "hostssl record cannot match because SSL is disabled" in pg_hba_file_rules (the file still loads); pgcertgate has no such setting`,
	`an IPv6 address with a zone naming an interface that does not exist: PostgreSQL (glibc getaddrinfo) treats it as a host name, so "fe80::1%bogus/64" is "specifying both host name and CIDR mask is invalid"; pgcertgate accepts any zone (it cannot see the interfaces)`,
	`ldapurl is parsed by a small mirror of OpenLDAP's ldap_url_parse (scheme, port, scope); rarer URL errors may be accepted`,
	`"invalid value for clientcert", "invalid value for clientname", "invalid RADIUS port number" and "could not parse RADIUS ... list" refuse the line in every version, but hba.c sets no err_msg for them, so pg_hba_file_rules shows a NULL error; the message is only in the server log`,
	`clientcert=verify-ca with cert: the server log says "clientcert only accepts \"verify-full\" when using \"cert\" authentication" while pg_hba_file_rules says "clientcert can only be set to \"verify-full\" when using \"cert\" authentication"; pgcertgate uses the latter`,
}

// TestVersionDifferences checks pgcertgate's side (PostgreSQL 18's) of
// every known difference.
func TestVersionDifferences(t *testing.T) {
	for _, d := range versionDifferences {
		m := fstest.MapFS{"etc/pg/pg_hba.conf": {Data: []byte(d.file + "\n")}}
		for n, c := range d.files {
			m["etc/pg/"+n] = &fstest.MapFile{Data: []byte(c)}
		}
		_, err := Load("/etc/pg/pg_hba.conf", authfile.ReadOptions{FS: authfile.NewFS(m)})
		var got string
		if err != nil {
			errs := unjoin(err)
			got = errs[0].(*authfile.Error).Msg
			if len(errs) > 1 {
				t.Errorf("%s: %d errors", d.what, len(errs))
			}
		}
		if got != d.pg18 {
			t.Errorf("%s:\n got %q\nwant %q", d.what, got, d.pg18)
		}
	}
	if len(otherDeviations) == 0 {
		t.Fatal("deviation list lost")
	}
}
