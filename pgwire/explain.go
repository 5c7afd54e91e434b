package pgwire

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
)

// ExplainRequest describes a hypothetical connection for Explain.
type ExplainRequest struct {
	User, Database string
	Addr           netip.Addr
	SSL            bool
	// Replication is "", "true" (physical) or "database" (logical).
	Replication string
	// CertFile is a PEM file with the client certificate (and any
	// intermediates the client would send). Empty means no certificate.
	CertFile string
}

// Explain runs the same authorization code a live connection runs and
// prints each step: the certificate and its verification, every pg_hba.conf
// line tried and why it did not match, the line that matched, the
// certificate identity, the map lookup, and the verdict with the exact
// message the client would get. It returns whether the connection would be
// accepted.
func Explain(ctx context.Context, rt *config.Runtime, req ExplainRequest, w io.Writer) (bool, error) {
	st := newState(rt)
	if st.roles != nil {
		defer st.roles.close()
	}
	si := &startupInfo{user: req.User, database: req.Database}
	if req.Replication != "" {
		mode, err := parseReplication(req.Replication)
		if err != nil {
			return false, fmt.Errorf("invalid replication value %q (true, false, database)", req.Replication)
		}
		si.replication = mode
	}
	if err := si.normalize(); err != nil {
		return false, err
	}
	in := authInput{addr: req.Addr, ssl: req.SSL, user: si.user, database: si.database, replication: si.replication}

	fmt.Fprintf(w, "connection: host=%s user=%q database=%q %s replication=%s\n", in.addr, in.user, in.database, encryptionState(in), si.replication)
	if req.CertFile == "" {
		fmt.Fprintln(w, "certificate: none")
	} else {
		if !req.SSL {
			return false, errors.New("--cert needs an SSL connection: a plaintext client cannot present a certificate")
		}
		raw, err := readPEMCerts(req.CertFile)
		if err != nil {
			return false, err
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return false, fmt.Errorf("%s: %w", req.CertFile, err)
		}
		dn, _ := certauth.DistinguishedName(leaf)
		cn, _, cnErr := certauth.CommonName(leaf)
		fmt.Fprintf(w, "certificate: subject %q, CN %q, issuer %q, serial %s, not after %s\n", dn, cn, leaf.Issuer.String(), leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339))
		switch {
		case rt.Verifier == nil:
			fmt.Fprintln(w, "  ssl_ca_file is empty: pgcertgate does not request client certificates, so the client sends none")
		default:
			chain, err := rt.Verifier.Verify(raw, time.Now())
			if err != nil {
				fmt.Fprintf(w, "  verification FAILED: %v\n", err)
				fmt.Fprintln(w, "verdict: REJECT during the TLS handshake (the client sees a TLS alert, whatever pg_hba.conf says)")
				return false, nil
			}
			fmt.Fprintf(w, "  verification: ok (chain of %d to %q)\n", len(chain), chain[len(chain)-1].Subject.String())
			if cnErr != nil {
				fmt.Fprintf(w, "verdict: REJECT after the TLS handshake: %v (the connection is dropped without a message)\n", cnErr)
				return false, nil
			}
			in.chain = chain
		}
	}

	rec := &authRecord{}
	err := st.authorize(ctx, in, rec, true)
	fmt.Fprintln(w, "pg_hba.conf:")
	for _, a := range rec.attempts {
		mark := "no:    " + a.Reason
		if a.Matched {
			mark = "MATCH"
		}
		fmt.Fprintf(w, "  %s:%d  %s\n      %s\n", a.Entry.File, a.Entry.Line, a.Entry.Raw, mark)
	}
	if rec.entry == nil && err == nil {
		return false, errors.New("internal: no entry and no error")
	}
	if rec.entry != nil {
		fmt.Fprintf(w, "matched: %s:%d: %s\n", rec.entry.File, rec.entry.Line, rec.entry.Raw)
	} else if e, ok := errors.AsType[*Error](err); ok && e.Reason == "no_hba_match" {
		fmt.Fprintln(w, "matched: no line (an implicit reject, as in PostgreSQL)")
	}
	for _, id := range rec.identities {
		fmt.Fprintf(w, "identity (clientname=%s): %q\n", rec.entry.ClientName, id)
	}
	if rec.entry != nil && rec.entry.Map != "" && len(rec.identities) > 0 {
		if rec.mapLine != "" {
			fmt.Fprintf(w, "map %q: accepted by %s\n", rec.entry.Map, rec.mapLine)
		} else {
			fmt.Fprintf(w, "map %q: %s\n", rec.entry.Map, rec.mapLog)
		}
	}
	if err != nil {
		if owesReply(err) {
			msg := toErrorResponse(err)
			fmt.Fprintf(w, "verdict: REJECT: the client gets %s %s: %s\n", msg.Severity, msg.Code, msg.Message)
		} else {
			fmt.Fprintf(w, "verdict: REJECT: %v\n", err)
		}
		if e, ok := errors.AsType[*Error](err); ok {
			fmt.Fprintf(w, "reason: %s\n", e.Reason)
			if e.LogDetail != "" {
				fmt.Fprintf(w, "server log: %s\n", e.LogDetail)
			}
		}
		return false, nil
	}
	fmt.Fprintf(w, "verdict: ACCEPT: connect to the backend as user %q, database %q\n", in.user, in.database)
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
