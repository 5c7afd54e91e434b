package authz_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cockroachdb/datadriven"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/identmap"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// members is a role-membership oracle for the tests: "user role" pairs
// (every role is a member of itself), or a failure for every question.
type members struct {
	pairs map[[2]string]bool
	fail  error
}

func (m *members) IsMember(_ context.Context, user, role string) (bool, error) {
	if m.fail != nil {
		return false, m.fail
	}
	return user == role || m.pairs[[2]string{user, role}], nil
}

// users is the OS user database for peer authentication: uid to name.
type users map[uint32]string

func (u users) LookupUID(uid uint32) (string, error) {
	if name, ok := u[uid]; ok {
		return name, nil
	}
	return "", authz.ErrUnknownUser
}

// TestAuthorize runs the files under testdata: each sets up pg_hba.conf and
// pg_ident.conf ("file name=…"), optionally role memberships ("members",
// one "user role" pair per line, or "members fail") and OS users ("users",
// one "uid name" pair per line), then decides connection attempts:
//
//	authorize user=U db=D [addr=A] [nossl] [repl] [noca] [cert=KIND:VALUE[,KIND:VALUE…]] [trace]
//	authorize local user=U db=D [uid=N | nocred] [repl] [trace]
//
// A local attempt is a Unix-domain socket connection whose peer has uid N
// (default 0), or whose credentials could not be read (nocred).
// KIND is cn, o (organization), email, dns or uri. The output is the
// decision (the matched line, identities, map line) and the client's error
// with its audit reason and server-log detail.
func TestAuthorize(t *testing.T) {
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "root"})
	if err != nil {
		t.Fatal(err)
	}
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		files := fstest.MapFS{}
		roles := &members{pairs: map[[2]string]bool{}}
		osUsers := users{}
		cw := newCertWorld(t, root)
		var snap *authz.Snapshot
		load := func(t *testing.T) *authz.Snapshot {
			if snap != nil {
				return snap
			}
			opts := authfile.ReadOptions{FS: authfile.NewFS(files)}
			conf, err := hba.Load("pg_hba.conf", opts)
			if err != nil {
				t.Fatalf("pg_hba.conf: %v", err)
			}
			m := &identmap.Map{}
			if _, ok := files["pg_ident.conf"]; ok {
				if m, err = identmap.Load("pg_ident.conf", opts); err != nil {
					t.Fatalf("pg_ident.conf: %v", err)
				}
			}
			snap = &authz.Snapshot{HBA: conf, Ident: m, CAConfigured: true, Env: hba.Env{Roles: roles}, Users: osUsers}
			cw.apply(snap)
			return snap
		}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "file":
				var name string
				d.ScanArgs(t, "name", &name)
				files[name] = &fstest.MapFile{Data: []byte(d.Input)}
				snap = nil
				return ""
			case "members":
				if d.HasArg("fail") {
					roles.fail = &authz.CatalogError{Op: "query", Err: errors.New(`role "pgcertgate_catalog" does not exist`)}
					return ""
				}
				for _, l := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					f := strings.Fields(l)
					if len(f) != 2 {
						t.Fatalf("members: want \"user role\", got %q", l)
					}
					roles.pairs[[2]string{f[0], f[1]}] = true
				}
				return ""
			case "users":
				for _, l := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					var uid uint32
					var name string
					if _, err := fmt.Sscanf(l, "%d %s", &uid, &name); err != nil {
						t.Fatalf("users: want \"uid name\", got %q", l)
					}
					osUsers[uid] = name
				}
				return ""
			case "ca", "cert", "trust", "revoked":
				snap = nil
				return cw.directive(t, d)
			case "authorize":
				return authorize(t, d, load(t), cw)
			default:
				t.Fatalf("unknown directive %q", d.Cmd)
				return ""
			}
		})
	})
}

func authorize(t *testing.T, d *datadriven.TestData, snap *authz.Snapshot, cw *certWorld) string {
	req := &authz.Request{Addr: netip.MustParseAddr("127.0.0.1"), SSL: true}
	s := *snap
	trace, norev := false, false
	for _, arg := range d.CmdArgs {
		val := ""
		if len(arg.Vals) > 0 {
			val = arg.Vals[0]
		}
		switch arg.Key {
		case "user":
			req.User = val
		case "db":
			req.Database = val
		case "addr":
			req.Addr = netip.MustParseAddr(val)
		case "nossl":
			req.SSL = false
		case "repl":
			req.Replication = true
		case "noca":
			s.CAConfigured = false
		case "trace":
			trace = true
		case "cert":
			var refused string
			if req.Peer, refused = cw.peer(t, arg.Vals, &s); refused != "" {
				return refused
			}
		case "local":
			req.Local, req.SSL, req.Addr = true, false, netip.Addr{}
		case "uid":
			var uid uint32
			if _, err := fmt.Sscan(val, &uid); err != nil {
				t.Fatalf("authorize: uid=%q: %v", val, err)
			}
			req.PeerUID = uid
		case "nocred":
			req.PeerCredErr = errors.New("getsockopt: bad file descriptor")
		case "norevocation":
			// A caller that passes no revocation check.
			norev = true
		default:
			t.Fatalf("authorize: unknown argument %q", arg.Key)
		}
	}
	if !norev {
		req.Revocation = cw.revocation
	}
	dec, err := authz.Authorize(context.Background(), &s, req, trace)
	var b strings.Builder
	for _, a := range dec.Attempts {
		if a.Matched {
			fmt.Fprintf(&b, "try %s: match\n", a.Entry.Location())
		} else {
			fmt.Fprintf(&b, "try %s: %s\n", a.Entry.Location(), a.Reason)
		}
	}
	if dec.Entry != nil {
		fmt.Fprintf(&b, "line %s\n", dec.Entry.Location())
	}
	for _, id := range dec.Identities {
		fmt.Fprintf(&b, "identity %q\n", id)
	}
	if dec.OSUser != "" {
		fmt.Fprintf(&b, "os user %q\n", dec.OSUser)
	}
	if dec.MapLine != "" {
		fmt.Fprintf(&b, "map %s\n", dec.MapLine)
	}
	b.WriteString(cw.checks(dec))
	if err == nil {
		b.WriteString("accept\n")
		return b.String()
	}
	e, ok := errors.AsType[*pgerr.Error](err)
	if !ok {
		t.Fatalf("not a client error: %v", err)
	}
	fmt.Fprintf(&b, "refuse %s %s %s\nreason %s\n", e.Severity, e.Code, e.Message, e.Reason)
	if e.LogDetail != "" {
		fmt.Fprintf(&b, "log %s\n", e.LogDetail)
	}
	return b.String()
}

// peer issues a certificate from root with the named subject and SANs.
func peer(t *testing.T, root *testpki.CA, specs []string) *certauth.Peer {
	var subject pkix.Name
	var opts []testpki.Option
	for _, spec := range specs {
		kind, v, ok := strings.Cut(spec, ":")
		if !ok {
			t.Fatalf("cert: want KIND:VALUE, got %q", spec)
		}
		switch kind {
		case "cn":
			subject.CommonName = v
		case "o":
			subject.Organization = append(subject.Organization, v)
		case "email":
			opts = append(opts, testpki.WithEmailSANs(v))
		case "dns":
			opts = append(opts, testpki.WithDNSSANs(v))
		case "uri":
			u, err := url.Parse(v)
			if err != nil {
				t.Fatal(err)
			}
			opts = append(opts, testpki.WithURISANs(u))
		default:
			t.Fatalf("cert: unknown kind %q", kind)
		}
	}
	leaf, err := root.NewClient(subject, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p := certauth.NewPeer([]*x509.Certificate{leaf.Cert})
	p.VerifiedBy([]*x509.Certificate{leaf.Cert, root.Cert})
	return p
}
