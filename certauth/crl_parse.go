package certauth

import (
	"crypto/x509"
)

// parseCRL parses a DER CertificateList of either version in use, as
// OpenSSL's d2i_X509_CRL reads it for PostgreSQL.
//
// RFC 5280 makes TBSCertList's version OPTIONAL: a v2 CRL says v2 (1), and
// a v1 CRL, the kind `openssl ca -gencrl` writes unless it is given
// crl_extensions or a crlnumber file, has no version field at all (or,
// rarely, an explicit v1, 0). Go's x509.ParseRevocationList reads only v2.
// For a v1 CRL the version field is set to v2 in a copy, which Go then
// parses; Raw and RawTBSRevocationList are put back to the CRL's own
// encoding, so the signature is checked over the bytes the issuer signed.
// Nothing else changes: issuer, times, entries and extensions are read by
// Go's parser as for any v2 CRL, and every later check (issuer name,
// AKID, thisUpdate/nextUpdate, signature, critical extensions, IDP) is
// the same.
//
// A v1 CRL is not allowed extensions by RFC 5280, but OpenSSL reads and
// acts on them whatever the version says: a critical one it does not
// handle makes the CRL unusable, an issuingDistributionPoint scopes it.
// So do we; ignoring them would accept what PostgreSQL refuses. A version
// other than v1 or v2 is refused, as Go refuses it (OpenSSL 3.0 reads it).
func parseCRL(der []byte) (*x509.RevocationList, error) {
	v2, outer, tbs, ok := asV2CRL(der)
	if !ok {
		return x509.ParseRevocationList(der)
	}
	rl, err := x509.ParseRevocationList(v2)
	if err != nil {
		return nil, err
	}
	rl.Raw = outer
	rl.RawTBSRevocationList = tbs
	return rl, nil
}

// asV2CRL returns, for a well-formed v1 CRL, a copy of it whose
// TBSCertList starts with version v2, with the original CertificateList
// and TBSCertList encodings. ok is false for anything else (v2 CRLs, other
// versions, malformed input), which is left to Go's parser and its
// errors.
func asV2CRL(der []byte) (v2, outer, tbs []byte, ok bool) {
	const (
		tagInteger  = 0x02
		tagSequence = 0x30
	)
	cl, _, err := readTLV(der)
	if err != nil || cl.tag != tagSequence {
		return nil, nil, nil, false
	}
	t, afterTBS, err := readTLV(cl.content)
	if err != nil || t.tag != tagSequence {
		return nil, nil, nil, false
	}
	first, afterFirst, err := readTLV(t.content)
	if err != nil {
		return nil, nil, nil, false
	}
	fields := t.content
	if first.tag == tagInteger {
		// An explicit v1 is dropped; any other version is Go's to judge.
		if len(first.content) != 1 || first.content[0] != 0 {
			return nil, nil, nil, false
		}
		fields = afterFirst
	}
	content := make([]byte, 0, 3+len(fields))
	content = append(content, tagInteger, 1, 1)
	content = append(content, fields...)
	newTBS := appendTLV(nil, tagSequence, content)
	return appendTLV(nil, tagSequence, append(newTBS, afterTBS...)), cl.full, t.full, true
}
