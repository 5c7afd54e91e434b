package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
)

// explainCert prints the client certificate and what the TLS handshake
// makes of it: its fingerprint (the clientname=SHA256 pin), the
// verification against the union of CA sets and the set that verified
// it, and the handshake's own policies. ok is false when the handshake
// refuses the certificate (the verdict is printed); peer is nil when no
// certificate would be requested at all.
func explainCert(w io.Writer, rt *config.Runtime, file string, raw [][]byte) (peer *certauth.Peer, ok bool, err error) {
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		if certs[i], err = x509.ParseCertificate(r); err != nil {
			return nil, false, fmt.Errorf("%s: %w", file, err)
		}
	}
	leaf := certs[0]
	peer = certauth.NewPeer(certs)
	fmt.Fprintf(w, "certificate: subject %q, CN %q, issuer %q, serial %s, not after %s\n", peer.Subject, peer.CN, leaf.Issuer.String(), leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(w, "  fingerprint: %s%s\n", certauth.PinPrefix, peer.Fingerprint())
	trust := rt.ClientCAs
	if trust == nil {
		fmt.Fprintln(w, "  ssl_ca_file is empty: pgcertgate does not request client certificates, so the client sends none")
		return nil, true, nil
	}
	chain, set, err := trust.Verify(certs, time.Now())
	if err != nil {
		fmt.Fprintf(w, "  verification FAILED: %v\n", err)
		if len(trust.Sets()) > 1 {
			fmt.Fprintf(w, "  CA sets tried: %s\n", setNames(trust))
		}
		fmt.Fprintln(w, "verdict: REJECT during the TLS handshake (the client sees a TLS alert, whatever pg_hba.conf says)")
		fmt.Fprintf(w, "reason: %s\n", handshakeReason(err))
		return nil, false, nil
	}
	peer.VerifiedIn(chain, set.Name)
	fmt.Fprintf(w, "  verification: ok (chain of %d to %q)\n", len(chain), chain[len(chain)-1].Subject.String())
	if len(trust.Sets()) > 1 || set.Name != certauth.DefaultSet {
		fmt.Fprintf(w, "  CA set: %s (the handshake tries %s in turn; the matched line requires its own)\n", set.Name, setNames(trust))
	}
	if trust.KeyUsage() == certauth.KeyUsageRequire {
		fmt.Fprintln(w, "  key usage: ok (ssl_client_key_usage = require: extendedKeyUsage includes clientAuth, keyUsage allows digitalSignature)")
	}
	if d := rt.Config.SSLVerifyDepth; d != certauth.DefaultVerifyDepth {
		fmt.Fprintf(w, "  chain depth: %d intermediate(s), at most %d (ssl_verify_depth)\n", len(chain)-2, d)
	}
	if err := authz.CommonNameError(peer); err != nil {
		fmt.Fprintf(w, "verdict: REJECT after the TLS handshake: %v (the connection is dropped without a message)\n", peer.CNErr)
		return nil, false, nil
	}
	return peer, true, nil
}

func setNames(t *certauth.Trust) string {
	var names []string
	for _, s := range t.Sets() {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

// handshakeReason is the audit reason the server logs for a certificate
// the handshake refuses.
func handshakeReason(err error) string {
	if ve, ok := errors.AsType[*certauth.VerifyError](err); ok {
		if code := ve.Reason.RevocationCode(); code != "" {
			return code
		}
		if code := ve.Reason.PolicyCode(); code != "" {
			return code
		}
	}
	return "cert_invalid"
}

// printCertChecks prints the matched line's certificate checks (CA set,
// key usage), each with its verdict and, for a refusal, its reason.
func printCertChecks(w io.Writer, d *authz.Decision) {
	for _, c := range d.Checks {
		if c.OK {
			fmt.Fprintf(w, "check %s: ok: %s\n", c.Name, c.Detail)
		} else {
			fmt.Fprintf(w, "check %s: REFUSED (%s): %s\n", c.Name, c.Reason, c.Detail)
		}
	}
}
