package certauth

import "crypto/x509"

// SANKind selects a subjectAltName type for SANs.
type SANKind int

// Identity sources of the pgcertgate clientname=SAN-* extension.
const (
	SANEmail SANKind = iota + 1 // rfc822Name ([1])
	SANDNS                      // dNSName ([2])
	SANURI                      // uniformResourceIdentifier ([6]); SPIFFE IDs are these
)

// String returns the clientname= spelling of the kind.
func (k SANKind) String() string {
	switch k {
	case SANEmail:
		return "SAN-email"
	case SANDNS:
		return "SAN-DNS"
	case SANURI:
		return "SAN-URI"
	}
	return "SAN-unknown"
}

// SANs returns the subjectAltName entries of one kind, raw (the IA5String
// bytes, not normalised or URL-parsed), in certificate order. PostgreSQL
// has no such identity source; this is a pgcertgate extension.
func SANs(cert *x509.Certificate, kind SANKind) []string {
	var tag byte
	switch kind {
	case SANEmail:
		tag = 0x81
	case SANDNS:
		tag = 0x82
	case SANURI:
		tag = 0x86
	default:
		return nil
	}
	v, _, ok := hasExt(cert, extSubjectAltName)
	if !ok {
		return nil
	}
	seq, _, err := readTLV(v)
	if err != nil || seq.tag != 0x30 {
		return nil
	}
	var out []string
	for rest := seq.content; len(rest) > 0; {
		var gn tlv
		gn, rest, err = readTLV(rest)
		if err != nil {
			return out
		}
		if gn.tag == tag {
			out = append(out, string(gn.content))
		}
	}
	return out
}
