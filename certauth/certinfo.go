package certauth

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
)

// Extension OIDs, as DER content octets' dotted text.
const (
	extKeyUsage       = "2.5.29.15"
	extSubjectAltName = "2.5.29.17"
	extBasicConstr    = "2.5.29.19"
	extNameConstr     = "2.5.29.30"
	extCRLDP          = "2.5.29.31"
	extCertPolicies   = "2.5.29.32"
	extPolicyMappings = "2.5.29.33"
	extAuthKeyID      = "2.5.29.35"
	extPolicyConstr   = "2.5.29.36"
	extExtKeyUsage    = "2.5.29.37"
	extDeltaCRL       = "2.5.29.27"
	extIDP            = "2.5.29.28"
	extCertIssuer     = "2.5.29.29"
	extInhibitAny     = "2.5.29.54"
	extNSCertType     = "2.16.840.1.113730.1.1"
	extIPAddrBlock    = "1.3.6.1.5.5.7.1.7"
	extASNum          = "1.3.6.1.5.5.7.1.8"
	extProxyCertInfo  = "1.3.6.1.5.5.7.1.14"
)

// supportedCritical is OpenSSL 3.0's X509_supported_extension list: a
// critical extension outside it fails verification
// (X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION).
var supportedCritical = map[string]bool{
	extNSCertType: true, extKeyUsage: true, extSubjectAltName: true,
	extBasicConstr: true, extCertPolicies: true, extCRLDP: true,
	extExtKeyUsage: true, extIPAddrBlock: true, extASNum: true,
	extPolicyConstr: true, extProxyCertInfo: true, extNameConstr: true,
	extPolicyMappings: true, extInhibitAny: true,
}

// OpenSSL keyUsage bits (first octet of the BIT STRING; KU_* in x509v3.h).
const (
	kuDigitalSignature = 0x80
	kuKeyAgreement     = 0x08
	kuKeyCertSign      = 0x04
	kuCRLSign          = 0x02
)

// Netscape cert type bits (NS_* in x509v3.h).
const (
	nsSSLClient = 0x80
	nsSSLCA     = 0x04
	nsAnyCA     = 0x07
)

// akid is a parsed AuthorityKeyIdentifier.
type akid struct {
	keyID  []byte
	issuer []byte // canonical encoding of the first directoryName, nil if none
	serial *big.Int
}

// distPoint is one DistributionPoint of a CRLDistributionPoints extension
// or the distributionPoint of an IssuingDistributionPoint.
type distPoint struct {
	hasName   bool     // distributionPoint field present
	fullNames [][]byte // DER of each GeneralName of a fullName
	hasIssuer bool     // cRLIssuer present
	reasons   uint32   // CRLDP_ALL_REASONS when absent
}

const crldpAllReasons = 0x807f

// certInfo is what OpenSSL's ossl_x509v3_cache_extensions derives from a
// certificate, computed once.
type certInfo struct {
	cert       *x509.Certificate
	subject    []byte // canonical names (X509_NAME_cmp compares these)
	issuer     []byte
	selfIssued bool // EXFLAG_SI
	selfSigned bool // EXFLAG_SS: self-issued, AKID matches, key type fits
	v1         bool
	critical   bool // an unsupported critical extension (EXFLAG_CRITICAL)
	proxy      bool
	hasKU      bool
	ku         uint16
	hasXKU     bool
	xkuClient  bool
	hasBC      bool
	ca         bool
	pathLen    int // -1 when absent
	hasNS      bool
	ns         byte
	skid       []byte
	akid       *akid
	crldp      []distPoint
	nameConstr bool
}

func hasExt(c *x509.Certificate, oid string) (ext []byte, critical, ok bool) {
	for _, e := range c.Extensions {
		if e.Id.String() == oid {
			return e.Value, e.Critical, true
		}
	}
	return nil, false, false
}

// newCertInfo derives certInfo. It fails when the certificate's names
// cannot be decoded by OpenSSL.
func newCertInfo(c *x509.Certificate) (*certInfo, error) {
	subj, err := parseName(c.RawSubject)
	if err != nil {
		return nil, err
	}
	iss, err := parseName(c.RawIssuer)
	if err != nil {
		return nil, err
	}
	ci := &certInfo{
		cert:    c,
		subject: canonicalName(subj),
		issuer:  canonicalName(iss),
		v1:      c.Version == 1,
		pathLen: -1,
		skid:    c.SubjectKeyId,
	}
	for _, e := range c.Extensions {
		if e.Critical && !supportedCritical[e.Id.String()] {
			ci.critical = true
		}
	}
	if v, _, ok := hasExt(c, extKeyUsage); ok {
		ci.hasKU = true
		var bs asn1.BitString
		if _, err := asn1.Unmarshal(v, &bs); err == nil {
			if len(bs.Bytes) > 0 {
				ci.ku = uint16(bs.Bytes[0])
			}
			if len(bs.Bytes) > 1 {
				ci.ku |= uint16(bs.Bytes[1]) << 8
			}
		}
	}
	if _, _, ok := hasExt(c, extExtKeyUsage); ok {
		ci.hasXKU = true
		for _, u := range c.ExtKeyUsage {
			if u == x509.ExtKeyUsageClientAuth {
				ci.xkuClient = true
			}
		}
	}
	if _, _, ok := hasExt(c, extBasicConstr); ok {
		ci.hasBC = true
		ci.ca = c.IsCA
		if c.IsCA && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
			ci.pathLen = c.MaxPathLen
		}
	}
	if v, _, ok := hasExt(c, extNSCertType); ok {
		ci.hasNS = true
		var bs asn1.BitString
		if _, err := asn1.Unmarshal(v, &bs); err == nil && len(bs.Bytes) > 0 {
			ci.ns = bs.Bytes[0]
		}
	}
	if _, _, ok := hasExt(c, extProxyCertInfo); ok {
		ci.proxy = true
	}
	if _, _, ok := hasExt(c, extNameConstr); ok {
		ci.nameConstr = true
	}
	if v, _, ok := hasExt(c, extAuthKeyID); ok {
		ci.akid = parseAKID(v)
	}
	if v, _, ok := hasExt(c, extCRLDP); ok {
		ci.crldp = parseCRLDP(v)
	}
	ci.selfIssued = bytes.Equal(ci.subject, ci.issuer)
	ci.selfSigned = ci.selfIssued && akidMatches(ci, ci.akid) && sigAlgMatches(c, c)
	return ci, nil
}

// parseAKID decodes an AuthorityKeyIdentifier; a malformed one yields nil,
// which matches everything (Go's parser has already vetted the keyid).
func parseAKID(v []byte) *akid {
	seq, _, err := readTLV(v)
	if err != nil || seq.tag != 0x30 {
		return nil
	}
	out := &akid{}
	for rest := seq.content; len(rest) > 0; {
		var f tlv
		f, rest, err = readTLV(rest)
		if err != nil {
			return nil
		}
		switch f.tag {
		case 0x80:
			out.keyID = f.content
		case 0xa1:
			// GeneralNames: take the first directoryName ([4] EXPLICIT Name).
			for gns := f.content; len(gns) > 0 && out.issuer == nil; {
				var gn tlv
				gn, gns, err = readTLV(gns)
				if err != nil {
					return nil
				}
				if gn.tag == 0xa4 {
					if ents, err := parseName(gn.content); err == nil {
						out.issuer = canonicalName(ents)
						if out.issuer == nil {
							out.issuer = []byte{}
						}
					}
				}
			}
		case 0x82:
			out.serial = new(big.Int).SetBytes(f.content)
			if len(f.content) > 0 && f.content[0]&0x80 != 0 {
				out.serial.Sub(out.serial, new(big.Int).Lsh(big.NewInt(1), uint(8*len(f.content))))
			}
		}
	}
	return out
}

// akidMatches is X509_check_akid(issuer, akid) == X509_V_OK.
func akidMatches(issuer *certInfo, k *akid) bool {
	if k == nil {
		return true
	}
	if k.keyID != nil && issuer.skid != nil && !bytes.Equal(k.keyID, issuer.skid) {
		return false
	}
	if k.serial != nil && k.serial.Cmp(issuer.cert.SerialNumber) != 0 {
		return false
	}
	if k.issuer != nil && !bytes.Equal(k.issuer, issuer.issuer) {
		return false
	}
	return true
}

// sigAlgMatches is OpenSSL 3.0's check_sig_alg_match: the issuer's key type
// fits the subject's signature algorithm.
func sigAlgMatches(issuer, subject *x509.Certificate) bool {
	want := x509.UnknownPublicKeyAlgorithm
	switch subject.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.SHA256WithRSA,
		x509.SHA384WithRSA, x509.SHA512WithRSA, x509.SHA256WithRSAPSS,
		x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
		want = x509.RSA
	case x509.DSAWithSHA1, x509.DSAWithSHA256:
		want = x509.DSA
	case x509.ECDSAWithSHA1, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
		want = x509.ECDSA
	case x509.PureEd25519:
		want = x509.Ed25519
	}
	return want != x509.UnknownPublicKeyAlgorithm && issuer.PublicKeyAlgorithm == want
}

// likelyIssued is ossl_x509_likely_issued(issuer, subject) == X509_V_OK,
// which OpenSSL 3.0's chain builder uses to pick issuers: names, AKID and
// key type; the signature itself is checked later.
func likelyIssued(issuer, subject *certInfo) bool {
	return bytes.Equal(issuer.subject, subject.issuer) &&
		akidMatches(issuer, subject.akid) &&
		sigAlgMatches(issuer.cert, subject.cert)
}

// checkCA is OpenSSL's check_ca (v3_purp.c): 0 not a CA, 1 basicConstraints
// CA, 3 version 1 self-signed root, 4 keyUsage with keyCertSign and no
// basicConstraints, 5 Netscape CA type.
func checkCA(ci *certInfo) int {
	if ci.hasKU && ci.ku&kuKeyCertSign == 0 {
		return 0
	}
	if ci.hasBC {
		if ci.ca {
			return 1
		}
		return 0
	}
	switch {
	case ci.v1 && ci.selfSigned:
		return 3
	case ci.hasKU:
		return 4
	case ci.hasNS && ci.ns&nsAnyCA != 0:
		return 5
	}
	return 0
}

// sslClientPurpose is check_purpose_ssl_client: the "sslclient" purpose
// OpenSSL applies to a client chain on the server side
// (X509_STORE_CTX_set_default(ctx, "ssl_client")).
func sslClientPurpose(ci *certInfo, ca bool) bool {
	// An EKU without id-kp-clientAuth rejects the certificate, at any depth;
	// anyExtendedKeyUsage does not count as clientAuth.
	if ci.hasXKU && !ci.xkuClient {
		return false
	}
	if ca {
		r := checkCA(ci)
		if r == 0 {
			return false
		}
		return r != 5 || ci.ns&nsSSLCA != 0
	}
	if ci.hasKU && ci.ku&(kuDigitalSignature|kuKeyAgreement) == 0 {
		return false
	}
	if ci.hasNS && ci.ns&nsSSLClient == 0 {
		return false
	}
	return true
}

// parseCRLDP decodes CRLDistributionPoints.
func parseCRLDP(v []byte) []distPoint {
	seq, _, err := readTLV(v)
	if err != nil || seq.tag != 0x30 {
		return nil
	}
	var out []distPoint
	for rest := seq.content; len(rest) > 0; {
		var dp tlv
		dp, rest, err = readTLV(rest)
		if err != nil || dp.tag != 0x30 {
			return out
		}
		d := distPoint{reasons: crldpAllReasons}
		for f := dp.content; len(f) > 0; {
			var e tlv
			e, f, err = readTLV(f)
			if err != nil {
				break
			}
			switch e.tag {
			case 0xa0:
				d.hasName = true
				d.fullNames = parseDPName(e.content)
			case 0x81:
				d.reasons = reasonBits(e.content)
			case 0xa2:
				d.hasIssuer = true
			}
		}
		out = append(out, d)
	}
	return out
}

// parseDPName returns the GeneralNames of a DistributionPointName's
// fullName; nameRelativeToCRLIssuer yields none (and so never matches).
func parseDPName(c []byte) [][]byte {
	n, _, err := readTLV(c)
	if err != nil || n.tag != 0xa0 {
		return nil
	}
	var out [][]byte
	for rest := n.content; len(rest) > 0; {
		var gn tlv
		gn, rest, err = readTLV(rest)
		if err != nil {
			return out
		}
		out = append(out, gn.full)
	}
	return out
}

// reasonBits converts ReasonFlags BIT STRING content to OpenSSL's mask.
func reasonBits(c []byte) uint32 {
	var r uint32
	if len(c) > 1 {
		r = uint32(c[1])
	}
	if len(c) > 2 {
		r |= uint32(c[2]) << 8
	}
	return r & crldpAllReasons
}
