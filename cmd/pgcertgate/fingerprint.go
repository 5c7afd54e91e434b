package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// cmdFingerprint prints, for each PEM file's first certificate (the leaf
// of a chain file), the pg_ident.conf line that pins it to a role for a
// clientname=SHA256 line: a comment naming the certificate, then
// "MAP sha256:<hex> ROLE". The role defaults to the certificate's CN.
func cmdFingerprint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fingerprint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mapName := fs.String("map", "pins", "pg_ident.conf map name to print")
	role := fs.String("user", "", "database role to bind the certificate to (default: its CN)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "pgcertgate fingerprint: name at least one certificate file")
		return 2
	}
	code := 0
	for _, file := range fs.Args() {
		raw, err := readPEMCerts(file)
		if err != nil {
			fmt.Fprintln(stderr, "pgcertgate fingerprint:", err)
			code = 1
			continue
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			fmt.Fprintf(stderr, "pgcertgate fingerprint: %s: %v\n", file, err)
			code = 1
			continue
		}
		p := certauth.NewPeer([]*x509.Certificate{leaf})
		user := *role
		if user == "" {
			user = "ROLE"
			if p.HasCN && p.CNErr == nil && p.CN != "" {
				user = p.CN
			}
		}
		fmt.Fprintf(stdout, "# %s: subject %q, issuer %q, serial %s, not after %s\n", file, p.Subject, p.Issuer, leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339))
		// The role is a name: quoted where bare it would be a keyword or a
		// group (all, +role), as the map name is where it needs quotes.
		mapTok := authfile.String{Value: *mapName, Quoted: !authfile.IsPlain(*mapName)}
		roleTok := authfile.String{Value: user, Quoted: !authfile.IsPlain(user) || user == "all" || strings.HasPrefix(user, "+")}
		fmt.Fprintf(stdout, "%s  %s%s  %s\n", mapTok, certauth.PinPrefix, p.Fingerprint(), roleTok)
	}
	return code
}
