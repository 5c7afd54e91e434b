package authz

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
)

// The checks a matched pg_hba.conf line makes of the verified client
// certificate beyond PostgreSQL's, all pgcertgate extensions: the CA set
// the line requires (clientca=, or ssl_ca_file when the handshake trusted
// more than that) and the line's key-usage policy (clientkeyusage=). Each
// is one entry of lineChecks with a name, a verdict and a reason code,
// run in order where it applies; the first refusal ends the attempt.
// Certificate pins are the name check's (clientname=SHA256, refused as
// pin_mismatch).

// CertCheck is one check's outcome, for the audit log and explain.
type CertCheck struct {
	// Name is the pg_hba.conf option the check enforces.
	Name string
	OK   bool
	// Reason is the audit reason (and metric label) of a refusal.
	Reason string
	// Detail says what the check found.
	Detail string
}

type lineCheck struct {
	name    string
	applies func(*Snapshot, *hba.Entry) bool
	run     func(context.Context, *Snapshot, *Request, *Decision) CertCheck
}

var lineChecks = []lineCheck{
	{name: "clientca", applies: needsCASetCheck, run: checkCASet},
	{name: "clientkeyusage", applies: func(_ *Snapshot, e *hba.Entry) bool { return e.ClientKeyUsageRequire }, run: checkLineKeyUsage},
}

// needsCASetCheck: the line requires a set of its own, or the handshake
// trusted more sets than ssl_ca_file, which the line requires.
func needsCASetCheck(snap *Snapshot, e *hba.Entry) bool {
	return e.ClientCA != "" || (snap.Trust != nil && len(snap.Trust.Sets()) > 1)
}

// requiredSet names the CA set a line requires.
func requiredSet(e *hba.Entry) string {
	if s := e.ClientCASet(); s != "" {
		return s
	}
	return certauth.DefaultSet
}

// caAvailable is PostgreSQL's "root certificate store is available" for
// the line: ssl_ca_file's, or the line's own set.
func caAvailable(snap *Snapshot, e *hba.Entry) bool {
	if e.ClientCA == "" {
		return snap.CAConfigured
	}
	return snap.Trust != nil && snap.Trust.Set(e.ClientCASet()) != nil
}

// runLineChecks runs the checks that apply to the matched line, recording
// each in d. A refusal is the error the line gives for a certificate that
// fails its check in PostgreSQL: "certificate authentication failed" on a
// cert line, "connection requires a valid client certificate" where
// clientcert= asks for one. It never falls through to a later line.
func runLineChecks(ctx context.Context, snap *Snapshot, req *Request, d *Decision) error {
	for _, lc := range lineChecks {
		if !lc.applies(snap, d.Entry) {
			continue
		}
		c := lc.run(ctx, snap, req, d)
		c.Name = lc.name
		d.Checks = append(d.Checks, c)
		if !c.OK {
			var e *pgerr.Error
			if d.Entry.Method == hba.MethodCert {
				e = authFailed(req, d.Entry)
			} else {
				e = noClientCert()
			}
			e.Reason = c.Reason
			e.LogDetail = fmt.Sprintf("%s: %s", c.Name, c.Detail)
			return e
		}
	}
	return nil
}

// RevocationCheck asks OCSP and the fetched CRLs (ssl_ocsp,
// ssl_crl_fetch) about chain, which set has just verified: a
// *certauth.VerifyError refuses it. The server's check makes network
// requests, bounded by ctx (Authorize's, which the server cancels when it
// shuts down) and the connection's authentication deadline; it is a
// no-op when neither setting is on.
type RevocationCheck func(ctx context.Context, chain []*x509.Certificate, set *certauth.CASet) error

// checkCASet: the chain must verify to the line's set. The handshake
// recorded the first set of the union that verified it; when that is
// another, the chain as presented is verified again against the line's
// set alone, with that set's CRLs. That set may complete the chain with
// certificates of its own (an intermediate it holds, cross-certified by
// its root), which the handshake's OCSP and fetched-CRL checks never saw:
// such a chain is checked again before it admits anyone, and the Peer
// then records it, since it is the chain the session stands on.
func checkCASet(ctx context.Context, snap *Snapshot, req *Request, d *Decision) CertCheck {
	want := requiredSet(d.Entry)
	d.CASetRequired = want
	p := req.Peer
	if p.CASet == want {
		d.CASetVerified = want
		return CertCheck{OK: true, Detail: fmt.Sprintf("the chain verifies to CA set %s, which the line requires", want)}
	}
	var set *certauth.CASet
	if snap.Trust != nil {
		set = snap.Trust.Set(want)
	}
	if set == nil {
		d.CASetVerified = p.CASet
		return CertCheck{Reason: "ca_not_allowed", Detail: fmt.Sprintf("CA set %s is not loaded", want)}
	}
	chain, err := set.Verify(p.Presented, snap.now())
	if err != nil {
		d.CASetVerified = p.CASet
		return CertCheck{Reason: verifyReason(err), Detail: fmt.Sprintf("the line requires CA set %s, but the chain verifies to %s: against %s, %v", want, orNone(p.CASet), want, err)}
	}
	detail := fmt.Sprintf("the chain verifies to CA set %s, which the line requires (the handshake's first match was %s)", want, orNone(p.CASet))
	if !sameChain(chain, p.Chain) {
		// A chain no revocation check has seen admits no one: a caller
		// that checks none says so with a check of its own (explain's
		// records that the server asks at connect time).
		if req.Revocation == nil {
			d.CASetVerified = p.CASet
			return CertCheck{Reason: "cert_invalid", Detail: fmt.Sprintf("the chain verifies to CA set %s, which the line requires, but no revocation check of that chain was asked: revocation check unavailable", want)}
		}
		if err := req.Revocation(ctx, chain, set); err != nil {
			d.CASetVerified = p.CASet
			return CertCheck{Reason: certauth.AuditReason(err), Detail: fmt.Sprintf("the chain verifies to CA set %s, which the line requires, but the revocation check of that chain refused it: %v", want, err)}
		}
	}
	p.VerifiedIn(chain, want)
	d.CASetVerified = want
	return CertCheck{OK: true, Detail: detail}
}

// sameChain reports whether two chains hold the same certificates in the
// same order.
func sameChain(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y *x509.Certificate) bool { return x.Equal(y) })
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// verifyReason is the audit reason of a chain that the line's own set
// refuses: ca_not_allowed when the set knows none of the chain's issuers,
// else the refusal the set's checks make (a revoked or expired
// certificate, a missing CRL) as the handshake would log it.
func verifyReason(err error) string {
	if _, ok := errors.AsType[*certauth.VerifyError](err); !ok || certauth.UnknownIssuer(err) {
		return "ca_not_allowed"
	}
	return certauth.AuditReason(err)
}

func checkLineKeyUsage(_ context.Context, _ *Snapshot, req *Request, _ *Decision) CertCheck {
	if err := certauth.CheckKeyUsage(certauth.KeyUsageRequire, req.Peer.Leaf()); err != nil {
		detail := err.Error()
		if ve, ok := errors.AsType[*certauth.VerifyError](err); ok && ve.Err != nil {
			detail = ve.Err.Error()
		}
		return CertCheck{Reason: "key_usage", Detail: detail + " (clientkeyusage=require)"}
	}
	return CertCheck{OK: true, Detail: "extendedKeyUsage includes clientAuth, and keyUsage (if any) digitalSignature"}
}

func (s *Snapshot) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
