package certauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// Peer is one client certificate as the rest of pgcertgate sees it, built
// once, during the TLS handshake, from the chain the client presented.
// Every later step (the audit log, pg_hba.conf's certificate checks, the
// identity handed to pg_ident.conf, the backend's identity parameters,
// explain) reads this value instead of parsing the certificate again.
//
// A Peer describes the leaf whether or not the chain verified, so that a
// refused certificate's log event still says whose it was; Verified says
// whether Chain is a chain that verified.
type Peer struct {
	// Chain is the verified chain, leaf first and root last, once
	// verification succeeded; before that, the chain as presented.
	Chain []*x509.Certificate
	// Verified is true once Chain has been verified.
	Verified bool
	// Presented is the chain as the client sent it, leaf first: a
	// pg_hba.conf line with a CA set of its own (clientca=) verifies it
	// again against that set.
	Presented []*x509.Certificate
	// CASet names the CA set that verified Chain (CASet.Name); "" until
	// then, or when the caller verified without sets.
	CASet string

	// Subject and Issuer are OpenSSL's RFC 2253 text of the leaf's names
	// (what PostgreSQL logs and matches for clientname=DN); SubjectErr is
	// set when the subject cannot be decoded or holds a NUL byte, and
	// clientname=DN then has no identity.
	Subject    string
	SubjectErr error
	Issuer     string
	// CN is the first commonName, raw, as be_tls_open_server copies it.
	// HasCN is false without one. CNErr is set for a name OpenSSL cannot
	// decode or a CN holding a NUL byte (PostgreSQL then drops the
	// connection, whatever pg_hba.conf says).
	CN    string
	HasCN bool
	CNErr error
	// SANEmail, SANDNS and SANURI are the leaf's subjectAltName entries
	// of each kind, in certificate order (clientname=SAN-*).
	SANEmail, SANDNS, SANURI []string
	// UnknownAttribute is set when the subject or issuer has an attribute
	// type OpenSSL has no NID for: PostgreSQL's backend then refuses the
	// session after authentication ("could not get NID for ASN1_OBJECT
	// object").
	UnknownAttribute bool
	// SHA256 is the digest of the leaf's DER.
	SHA256 [sha256.Size]byte
}

// NewPeer describes chain[0], the leaf, and keeps chain as presented. It
// returns nil for an empty chain: no certificate, no Peer.
func NewPeer(chain []*x509.Certificate) *Peer {
	if len(chain) == 0 {
		return nil
	}
	leaf := chain[0]
	p := &Peer{Chain: chain, Presented: chain, SHA256: sha256.Sum256(leaf.Raw)}
	p.Subject, p.SubjectErr = DistinguishedName(leaf)
	p.Issuer, _ = FormatDN(leaf.RawIssuer)
	p.CN, p.HasCN, p.CNErr = CommonName(leaf)
	p.SANEmail = SANs(leaf, SANEmail)
	p.SANDNS = SANs(leaf, SANDNS)
	p.SANURI = SANs(leaf, SANURI)
	for _, raw := range [][]byte{leaf.RawSubject, leaf.RawIssuer} {
		if entries, err := parseName(raw); err == nil && hasUnknownEntry(entries) {
			p.UnknownAttribute = true
		}
	}
	return p
}

// hasUnknownEntry reports whether a name has an attribute type missing
// from OpenSSL's object table, which FormatDN prints as a dotted OID.
func hasUnknownEntry(entries []nameEntry) bool {
	for _, e := range entries {
		if _, known := oidShortName(e.oid); !known {
			return true
		}
	}
	return false
}

// VerifiedBy records the verified chain: from here on Chain is the chain
// from the leaf to the trust anchor.
func (p *Peer) VerifiedBy(chain []*x509.Certificate) {
	p.Chain = chain
	p.Verified = true
}

// VerifiedIn is VerifiedBy for a chain that the CA set named set verified.
func (p *Peer) VerifiedIn(chain []*x509.Certificate, set string) {
	p.VerifiedBy(chain)
	p.CASet = set
}

// Leaf is the client's own certificate.
func (p *Peer) Leaf() *x509.Certificate { return p.Chain[0] }

// Fingerprint is the lowercase hex SHA-256 of the leaf's DER.
func (p *Peer) Fingerprint() string { return hex.EncodeToString(p.SHA256[:]) }

// IdentitySource names the certificate field a pg_hba.conf line compares
// with the user name (clientname=).
type IdentitySource int

// The identity sources: PostgreSQL's CN and DN, then pgcertgate's SAN
// extensions.
const (
	IdentityCN IdentitySource = iota
	IdentityDN
	IdentitySANEmail
	IdentitySANDNS
	IdentitySANURI
	// IdentitySHA256 is a pgcertgate extension: the leaf's fingerprint,
	// "sha256:" and the lowercase hex SHA-256 of its DER, a pin that
	// pg_ident.conf binds to roles.
	IdentitySHA256
)

// PinPrefix starts a certificate pin (IdentitySHA256) in pg_ident.conf.
const PinPrefix = "sha256:"

// String returns the clientname= spelling.
func (s IdentitySource) String() string {
	switch s {
	case IdentityCN:
		return "CN"
	case IdentityDN:
		return "DN"
	case IdentitySANEmail:
		return SANEmail.String()
	case IdentitySANDNS:
		return SANDNS.String()
	case IdentitySANURI:
		return SANURI.String()
	case IdentitySHA256:
		return "SHA256"
	}
	return fmt.Sprintf("IdentitySource(%d)", int(s))
}

// Identities returns the names the certificate offers for a source, in the
// order they are tried: one CN or DN (none when the subject has none, or
// it cannot be decoded), or every SAN of the kind. err is the reason a CN
// or DN could not be read.
func (p *Peer) Identities(src IdentitySource) ([]string, error) {
	switch src {
	case IdentityDN:
		if p.SubjectErr != nil || p.Subject == "" {
			return nil, p.SubjectErr
		}
		return []string{p.Subject}, nil
	case IdentitySANEmail:
		return p.SANEmail, nil
	case IdentitySANDNS:
		return p.SANDNS, nil
	case IdentitySANURI:
		return p.SANURI, nil
	case IdentitySHA256:
		return []string{PinPrefix + p.Fingerprint()}, nil
	default:
		if p.CNErr != nil || !p.HasCN || p.CN == "" {
			return nil, p.CNErr
		}
		return []string{p.CN}, nil
	}
}

// String is a one-line description for logs and explain: subject, issuer,
// serial and fingerprint.
func (p *Peer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "subject %q issuer %q serial %s sha256 %s", p.Subject, p.Issuer, p.Leaf().SerialNumber, p.Fingerprint())
	if p.Verified {
		fmt.Fprintf(&b, " verified (chain of %d)", len(p.Chain))
	}
	return b.String()
}
