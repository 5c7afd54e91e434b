package testpki

import (
	"encoding/asn1"
	"fmt"
	"unicode/utf16"
)

// ASN.1 universal string tags that encoding/asn1 does not name. Use them
// (or asn1.TagUTF8String, TagPrintableString, TagT61String, TagIA5String)
// as [ATV.Tag].
const (
	TagUniversalString = 28 // UCS-4 big-endian; see [UCS4]
	TagBMPString       = 30 // UCS-2 big-endian; see [BMP]
)

// Attribute type OIDs commonly found in subject names. OpenSSL prints them
// as CN, O, OU, C, L, ST, emailAddress, UID and DC.
var (
	OIDCommonName         = asn1.ObjectIdentifier{2, 5, 4, 3}
	OIDCountry            = asn1.ObjectIdentifier{2, 5, 4, 6}
	OIDLocality           = asn1.ObjectIdentifier{2, 5, 4, 7}
	OIDProvince           = asn1.ObjectIdentifier{2, 5, 4, 8}
	OIDOrganization       = asn1.ObjectIdentifier{2, 5, 4, 10}
	OIDOrganizationalUnit = asn1.ObjectIdentifier{2, 5, 4, 11}
	OIDEmailAddress       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	OIDUserID             = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	OIDDomainComponent    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
)

// ATV is one AttributeTypeAndValue of a distinguished name. Value is the
// string's content octets, written as given with no validation, so a test
// can embed a NUL in a PrintableString or invalid UTF-8 in a UTF8String.
type ATV struct {
	OID   asn1.ObjectIdentifier
	Tag   int // ASN.1 universal tag of the value, e.g. asn1.TagUTF8String
	Value []byte
}

// RDN is one RelativeDistinguishedName: usually a single ATV, several for a
// multi-valued RDN such as CN=a+UID=b.
type RDN []ATV

// RDNs is shorthand for a name whose RDNs each hold one ATV.
func RDNs(atvs ...ATV) []RDN {
	out := make([]RDN, len(atvs))
	for i, a := range atvs {
		out[i] = RDN{a}
	}
	return out
}

// UTF8 returns an ATV holding s as a UTF8String.
func UTF8(oid asn1.ObjectIdentifier, s string) ATV {
	return ATV{OID: oid, Tag: asn1.TagUTF8String, Value: []byte(s)}
}

// RawName returns the DER encoding of the Name made of rdns, in the given
// order (the first RDN is the most significant, e.g. C=…; OpenSSL's RFC 2253
// output prints it last). The ATVs of a multi-valued RDN are encoded in the
// given order, not sorted as DER's SET OF strictly requires, so that tests
// control exactly which attribute comes first; give them sorted when strict
// DER matters. Pass the result to [WithRawSubject].
func RawName(rdns ...RDN) ([]byte, error) {
	var seq []byte
	for i, rdn := range rdns {
		if len(rdn) == 0 {
			return nil, fmt.Errorf("testpki: RawName: RDN %d is empty", i)
		}
		var set []byte
		for _, a := range rdn {
			if len(a.OID) < 2 {
				return nil, fmt.Errorf("testpki: RawName: RDN %d: invalid OID %v", i, a.OID)
			}
			if a.Tag <= 0 || a.Tag > 30 {
				return nil, fmt.Errorf("testpki: RawName: RDN %d: tag %d is outside the universal range 1..30", i, a.Tag)
			}
			b, err := asn1.Marshal(struct {
				Type  asn1.ObjectIdentifier
				Value asn1.RawValue
			}{a.OID, asn1.RawValue{Class: asn1.ClassUniversal, Tag: a.Tag, Bytes: a.Value}})
			if err != nil {
				return nil, fmt.Errorf("testpki: RawName: RDN %d: %w", i, err)
			}
			set = append(set, b...)
		}
		b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: set})
		if err != nil {
			return nil, fmt.Errorf("testpki: RawName: %w", err)
		}
		seq = append(seq, b...)
	}
	b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: seq})
	if err != nil {
		return nil, fmt.Errorf("testpki: RawName: %w", err)
	}
	return b, nil
}

// BMP encodes s as BMPString content octets (UTF-16 big-endian; characters
// outside the BMP become surrogate pairs, which strict UCS-2 forbids but
// OpenSSL decodes).
func BMP(s string) []byte {
	u := utf16.Encode([]rune(s))
	out := make([]byte, 0, 2*len(u))
	for _, c := range u {
		out = append(out, byte(c>>8), byte(c))
	}
	return out
}

// UCS4 encodes s as UniversalString content octets (UCS-4 big-endian).
func UCS4(s string) []byte {
	out := make([]byte, 0, 4*len(s))
	for _, r := range s {
		out = append(out, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
	}
	return out
}
