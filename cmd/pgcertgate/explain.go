package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// explainRequest describes a hypothetical connection.
type explainRequest struct {
	User, Database string
	Addr           netip.Addr
	SSL            bool
	// Replication is "", "true" (physical) or "database" (logical).
	Replication string
	// CertFile is a PEM file with the client certificate (and any
	// intermediates the client would send). Empty means no certificate.
	CertFile string
	// Local is a connection over the Unix-domain socket: Addr and SSL do
	// not apply. OSUser is the OS user peer authentication would find for
	// the socket's peer; empty means none is known, and a peer line
	// refuses.
	Local  bool
	OSUser string
}

// explainUser is the OS user database explain has: the one name given.
type explainUser string

func (u explainUser) LookupUID(uint32) (string, error) { return string(u), nil }

// explain runs the decision a live connection runs (authz, with the
// server's own startup normalisation and snapshot) and prints each step:
// the certificate and its verification, every pg_hba.conf line tried and
// why it did not match, the line that matched, the certificate identity,
// the map lookup, and the verdict with the exact message the client would
// get. It returns whether the connection would be accepted.
func explain(ctx context.Context, rt *config.Runtime, req explainRequest, w io.Writer) (bool, error) {
	ex := pgwire.NewExplainer(rt)
	defer ex.Close()
	sr, err := pgwire.NormalizeStartup(req.User, req.Database, req.Replication)
	if err != nil {
		if _, ok := errors.AsType[*pgerr.Error](err); ok && req.Replication != "" {
			return false, fmt.Errorf("invalid replication value %q (true, false, database)", req.Replication)
		}
		return false, err
	}
	in := &authz.Request{Addr: req.Addr, SSL: req.SSL, User: sr.User, Database: sr.Database, Replication: sr.Physical}
	snap := ex.Snapshot()
	if req.Local {
		if req.CertFile != "" {
			return false, errors.New("--cert with --local: a Unix-domain socket connection has no TLS, so no certificate")
		}
		in.Addr, in.SSL, in.Local = netip.Addr{}, false, true
		// The real uid is the kernel's to give; explain knows only the
		// name the operator names.
		s := *snap
		if req.OSUser != "" {
			s.Users = explainUser(req.OSUser)
		} else {
			in.PeerCredErr = errors.New("no --os-user given")
		}
		snap = &s
	}
	encryption := "no encryption"
	if in.SSL {
		encryption = "SSL encryption"
	}
	host := in.Addr.String()
	if in.Local {
		host = "[local]"
	}
	fmt.Fprintf(w, "connection: host=%s user=%q database=%q %s replication=%s\n", host, in.User, in.Database, encryption, sr.Mode)
	if in.Local {
		if req.OSUser != "" {
			fmt.Fprintf(w, "OS user: %q\n", req.OSUser)
		} else {
			fmt.Fprintln(w, "OS user: not given (--os-user): a peer line refuses")
		}
	} else if req.CertFile == "" {
		fmt.Fprintln(w, "certificate: none")
	} else {
		if !req.SSL {
			return false, errors.New("--cert needs an SSL connection: a plaintext client cannot present a certificate")
		}
		raw, err := readPEMCerts(req.CertFile)
		if err != nil {
			return false, err
		}
		peer, ok, err := explainCert(w, rt, req.CertFile, raw)
		if err != nil || !ok {
			return false, err
		}
		in.Peer = peer
	}

	// explain makes no network request: a chain that the matched line's
	// CA set builds anew passes, with a note that the server asks OCSP
	// and the fetched CRLs about it at connect time.
	var unasked []string
	in.Revocation = func(_ context.Context, _ []*x509.Certificate, set *certauth.CASet) error {
		unasked = append(unasked, set.Name)
		return nil
	}
	d, err := authz.Authorize(ctx, snap, in, true)
	fmt.Fprintln(w, "pg_hba.conf:")
	for _, a := range d.Attempts {
		mark := "no:    " + a.Reason
		if a.Matched {
			mark = "MATCH"
		}
		fmt.Fprintf(w, "  %s  %s\n      %s\n", a.Entry.Location(), a.Entry.Raw, mark)
	}
	if d.Entry == nil && err == nil {
		return false, errors.New("internal: no entry and no error")
	}
	clientErr, isClientErr := errors.AsType[*pgerr.Error](err)
	if d.Entry != nil {
		fmt.Fprintf(w, "matched: %s: %s\n", d.Entry.Location(), d.Entry.Raw)
	} else if isClientErr && clientErr.Reason == "no_hba_match" {
		fmt.Fprintln(w, "matched: no line (an implicit reject, as in PostgreSQL)")
	}
	printCertChecks(w, d)
	for _, set := range unasked {
		fmt.Fprintf(w, "note: CA set %s builds a chain the handshake did not check; OCSP and fetched CRLs, when configured, are asked about it at connect time\n", set)
	}
	for _, id := range d.Identities {
		fmt.Fprintf(w, "identity (clientname=%s): %q\n", d.Entry.ClientName, id)
	}
	if d.OSUser != "" {
		fmt.Fprintf(w, "identity (peer): OS user %q\n", d.OSUser)
	}
	if d.Entry != nil && d.Entry.Map != "" && (len(d.Identities) > 0 || d.OSUser != "") {
		if d.MapLine != "" {
			fmt.Fprintf(w, "map %q: accepted by %s\n", d.Entry.Map, d.MapLine)
		} else {
			fmt.Fprintf(w, "map %q: %s\n", d.Entry.Map, d.MapLog)
		}
	}
	if err != nil {
		switch {
		case isClientErr && clientErr.Code != "":
			fmt.Fprintf(w, "verdict: REJECT: the client gets %s %s: %s\n", clientErr.Severity, clientErr.Code, clientErr.Message)
		default:
			fmt.Fprintf(w, "verdict: REJECT: %v\n", err)
		}
		if isClientErr {
			fmt.Fprintf(w, "reason: %s\n", clientErr.Reason)
			if clientErr.LogDetail != "" {
				fmt.Fprintf(w, "server log: %s\n", clientErr.LogDetail)
			}
		}
		return false, nil
	}
	fmt.Fprintf(w, "verdict: ACCEPT: connect to the backend as user %q, database %q\n", in.User, in.Database)
	return true, nil
}

// readPEMCerts reads every CERTIFICATE block of a PEM file, in order.
func readPEMCerts(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, b.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificate found", path)
	}
	return out, nil
}
