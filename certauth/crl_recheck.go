package certauth

import (
	"crypto/x509"
	"math/big"
)

// ConfiguredCRLs is what a verifier's configured CRLs say about the
// certificates of one issuer: the CRLs loaded with it (ssl_ca_file,
// ssl_crl_file, or a CA set's file and crl_file) and those its CRL
// directory (ssl_crl_dir, or a set's crl_dir) holds for that issuer,
// which ConfiguredCRLsFor reads from the directory on every call, as a
// login does. For re-checking running sessions, whose chains were
// verified at login and are no longer at hand.
type ConfiguredCRLs struct {
	crls []*crlInfo
}

// ConfiguredCRLsFor returns the configured CRLs that issuer signed:
// those whose issuer name is issuer's subject and whose signature
// issuer's key verifies. A CRL that OpenSSL would not use for lack of
// extended CRL support (indirect, reason-partitioned, an invalid issuing
// distribution point), or that covers attribute certificates only, is
// left out. Nil when the verifier checks no CRL (neither ssl_crl_file nor
// ssl_crl_dir is set, as PostgreSQL then sets no CRL flag).
func (v *Verifier) ConfiguredCRLsFor(issuer *x509.Certificate) *ConfiguredCRLs {
	if v == nil || !v.crlCheck || issuer == nil {
		return nil
	}
	ents, err := parseName(issuer.RawSubject)
	if err != nil {
		return nil
	}
	var out ConfiguredCRLs
	for _, c := range v.crls.lookupCRLs(canonicalName(ents), nameHash(ents)) {
		if c.idpFlags&(idpInvalid|idpIndirect|idpReasons|idpOnlyAttr) != 0 {
			continue
		}
		rl := c.crl
		if issuer.CheckSignature(rl.SignatureAlgorithm, rl.RawTBSRevocationList, rl.Signature) != nil {
			continue
		}
		out.crls = append(out.crls, c)
	}
	return &out
}

// Revoked reports whether one of the CRLs lists serial (a removeFromCRL
// entry excepted, as at login). A CRL past its nextUpdate still counts:
// revocation is final.
func (c *ConfiguredCRLs) Revoked(serial *big.Int) bool {
	if c == nil {
		return false
	}
	for _, crl := range c.crls {
		if crl.isRevoked(serial) {
			return true
		}
	}
	return false
}
