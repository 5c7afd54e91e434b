package certauth

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Universal tag numbers of the value types OpenSSL accepts in a name.
const (
	tagBitString       = 3
	tagUTF8String      = 12
	tagSequence        = 16
	tagNumericString   = 18
	tagPrintableString = 19
	tagT61String       = 20
	tagIA5String       = 22
	tagUniversalString = 28
	tagBMPString       = 30
)

// acceptedValueTag reports whether OpenSSL decodes a name value with this
// universal tag number. X509_NAME_ENTRY's value is an ASN1_PRINTABLE
// MSTRING (B_ASN1_PRINTABLE): NumericString, PrintableString, T61String,
// IA5String, BIT STRING, UniversalString, BMPString, UTF8String, SEQUENCE
// and the "unknown" tags of ASN1_tag2bit (7, 8, 9, 11, 13, 14, 15, 29).
// VideotexString, VisibleString, GraphicString, GeneralString, OCTET STRING,
// INTEGER, the time types and so on make d2i fail.
func acceptedValueTag(n byte) bool {
	switch n {
	case 3, 7, 8, 9, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 28, 29, 30:
		return true
	}
	return false
}

// nameEntry is one X509_NAME_ENTRY as OpenSSL holds it after d2i.
type nameEntry struct {
	oid  []byte // OBJECT IDENTIFIER content octets
	tag  byte   // universal tag number of the value
	data []byte // ASN1_STRING data as OpenSSL stores it
	set  int    // index of the RDN the entry belongs to
	bits byte   // BIT STRING unused-bit count
}

const oidCommonName = "\x55\x04\x03" // 2.5.4.3

// parseName decodes a DER Name into OpenSSL's flat entry list
// (x509_name_ex_d2i) and rejects what OpenSSL's decoder rejects, including
// values that its canonicalisation (x509_name_canon) cannot convert: a name
// OpenSSL cannot decode fails the handshake there, so it has no identity.
func parseName(der []byte) ([]nameEntry, error) {
	seq, rest, err := readTLV(der)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errTrailing
	}
	if seq.tag != 0x30 {
		return nil, errors.New("name is not a SEQUENCE")
	}
	var out []nameEntry
	rdns := seq.content
	for set := 0; len(rdns) > 0; set++ {
		var rdn tlv
		rdn, rdns, err = readTLV(rdns)
		if err != nil {
			return nil, err
		}
		if rdn.tag != 0x31 {
			return nil, errors.New("relative distinguished name is not a SET")
		}
		atvs := rdn.content
		for len(atvs) > 0 {
			var atv tlv
			atv, atvs, err = readTLV(atvs)
			if err != nil {
				return nil, err
			}
			if atv.tag != 0x30 {
				return nil, errors.New("attribute is not a SEQUENCE")
			}
			oid, r, err := readTLV(atv.content)
			if err != nil {
				return nil, err
			}
			if oid.tag != 0x06 {
				return nil, errors.New("attribute type is not an OBJECT IDENTIFIER")
			}
			if err := checkOID(oid.content); err != nil {
				return nil, err
			}
			val, r, err := readTLV(r)
			if err != nil {
				return nil, err
			}
			if len(r) != 0 {
				return nil, errors.New("extra data in attribute")
			}
			e, err := decodeValue(val)
			if err != nil {
				return nil, fmt.Errorf("attribute %s: %w", oidText(oid.content), err)
			}
			e.oid = oid.content
			e.set = set
			out = append(out, e)
		}
	}
	return out, nil
}

// decodeValue mirrors the MSTRING branch of asn1_item_embed_d2i and
// ASN1_ex_c2i for a name value.
func decodeValue(v tlv) (nameEntry, error) {
	if v.tag&0xc0 != 0 {
		return nameEntry{}, errors.New("value is not of universal class")
	}
	n := v.tag & 0x1f
	constructed := v.tag&0x20 != 0
	if !acceptedValueTag(n) {
		return nameEntry{}, fmt.Errorf("value type %d is not accepted by OpenSSL", n)
	}
	e := nameEntry{tag: n}
	switch {
	case n == tagSequence:
		if !constructed {
			return nameEntry{}, errors.New("SEQUENCE value is not constructed")
		}
		// OpenSSL keeps the whole encoding of a SEQUENCE value.
		e.data = v.full
		return e, nil
	case constructed:
		// BER constructed strings: OpenSSL would join them; DER forbids them.
		return nameEntry{}, errors.New("constructed string value")
	}
	c := v.content
	switch n {
	case tagBitString:
		if len(c) < 1 || c[0] > 7 {
			return nameEntry{}, errors.New("invalid BIT STRING")
		}
		e.bits = c[0]
		d := append([]byte(nil), c[1:]...)
		if len(d) > 0 {
			d[len(d)-1] &= 0xff << e.bits
		}
		e.data = d
		return e, nil
	case tagBMPString:
		if len(c)%2 != 0 {
			return nameEntry{}, errors.New("BMPString has odd length")
		}
	case tagUniversalString:
		if len(c)%4 != 0 {
			return nameEntry{}, errors.New("UniversalString length is not a multiple of 4")
		}
	}
	e.data = c
	// x509_name_canon converts these types to UTF-8 at decode time; a value
	// it cannot convert makes the whole name fail to decode.
	if _, ok := canonValue(e); !ok {
		return nameEntry{}, errors.New("string value cannot be converted to UTF-8")
	}
	return e, nil
}

// toUTF8 converts a string value to UTF-8 as ASN1_STRING_to_UTF8 does,
// reporting false where OpenSSL fails. ok is false for types it does not
// convert at all.
func toUTF8(e nameEntry) (out []byte, convertible, ok bool) {
	switch e.tag {
	case tagUTF8String:
		if !utf8.Valid(e.data) {
			return nil, true, false
		}
		return e.data, true, true
	case tagNumericString, tagPrintableString, tagT61String, tagIA5String:
		// One byte per character, taken as Latin-1 (MBSTRING_ASC).
		out = make([]byte, 0, len(e.data))
		for _, b := range e.data {
			out = utf8.AppendRune(out, rune(b))
		}
		return out, true, true
	case tagBMPString, tagUniversalString:
		w := 2
		if e.tag == tagUniversalString {
			w = 4
		}
		for i := 0; i+w <= len(e.data); i += w {
			var r uint32
			for _, b := range e.data[i : i+w] {
				r = r<<8 | uint32(b)
			}
			if r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff) {
				return nil, true, false
			}
			out = utf8.AppendRune(out, rune(r))
		}
		return out, true, true
	}
	return nil, false, true
}

// canonValue returns the DER encoding of the canonical form of a value, as
// asn1_string_canon produces it: UTF-8, leading and trailing ASCII white
// space removed, inner runs collapsed to one space, ASCII lower-cased.
// NumericString is not in ASN1_MASK_CANON and is kept as it is.
func canonValue(e nameEntry) ([]byte, bool) {
	if e.tag == tagNumericString {
		return appendTLV(nil, tagNumericString, e.data), true
	}
	u, convertible, ok := toUTF8(e)
	if !ok {
		return nil, false
	}
	if !convertible {
		return reencodeValue(e), true
	}
	isSpace := func(b byte) bool {
		return b == ' ' || (b >= '\t' && b <= '\r')
	}
	for len(u) > 0 && isSpace(u[0]) {
		u = u[1:]
	}
	for len(u) > 0 && isSpace(u[len(u)-1]) {
		u = u[:len(u)-1]
	}
	c := make([]byte, 0, len(u))
	for i := 0; i < len(u); {
		b := u[i]
		switch {
		case b >= 0x80:
			c = append(c, b)
			i++
		case isSpace(b):
			c = append(c, ' ')
			for i < len(u) && isSpace(u[i]) {
				i++
			}
		default:
			if b >= 'A' && b <= 'Z' {
				b += 'a' - 'A'
			}
			c = append(c, b)
			i++
		}
	}
	return appendTLV(nil, tagUTF8String, c), true
}

// reencodeValue is i2d_ASN1_TYPE of a decoded value: the DER OpenSSL
// writes back, used by the #hex dump and by the canonical encoding.
func reencodeValue(e nameEntry) []byte {
	switch e.tag {
	case tagSequence:
		return e.data
	case tagBitString:
		bits := e.bits
		if len(e.data) == 0 {
			bits = 0
		}
		return appendTLV(nil, tagBitString, append([]byte{bits}, e.data...))
	}
	return appendTLV(nil, e.tag, e.data)
}

// canonicalName returns OpenSSL's canonical encoding of a name (the
// canon_enc of x509_name_canon): the concatenated DER of each RDN's SET OF
// canonical attribute values, with no outer SEQUENCE. X509_NAME_cmp and
// X509_NAME_hash both work on it.
func canonicalName(entries []nameEntry) []byte {
	var out []byte
	for i := 0; i < len(entries); {
		j := i
		var encs [][]byte
		for ; j < len(entries) && entries[j].set == entries[i].set; j++ {
			v, _ := canonValue(entries[j]) // parseName checked convertibility
			atv := appendTLV(nil, 0x06, entries[j].oid)
			atv = append(atv, v...)
			encs = append(encs, appendTLV(nil, 0x30, atv))
		}
		// DER SET OF: elements sorted by their encodings (OpenSSL der_cmp).
		sort.SliceStable(encs, func(a, b int) bool {
			x, y := encs[a], encs[b]
			n := min(len(x), len(y))
			if c := bytes.Compare(x[:n], y[:n]); c != 0 {
				return c < 0
			}
			return len(x) < len(y)
		})
		out = appendTLV(out, 0x31, bytes.Join(encs, nil))
		i = j
	}
	return out
}

// NameHash returns OpenSSL's X509_NAME_hash of a DER Name: the first four
// bytes of the SHA-1 of the canonical encoding, little-endian. It is the
// <hash> in the c_rehash / "openssl rehash" file names (<hash>.0 for
// certificates, <hash>.r0 for CRLs) that OpenSSL's hashed-directory lookup,
// and so ssl_crl_dir, uses.
func NameHash(rawName []byte) (uint32, error) {
	entries, err := parseName(rawName)
	if err != nil {
		return 0, err
	}
	return nameHash(entries), nil
}

func nameHash(entries []nameEntry) uint32 {
	sum := sha1.Sum(canonicalName(entries))
	return binary.LittleEndian.Uint32(sum[:4])
}

// CommonName returns the certificate subject's common name as PostgreSQL
// takes it in be_tls_open_server: X509_NAME_get_text_by_NID(NID_commonName)
// copies the raw bytes of the FIRST commonName attribute in encoded order,
// whatever its string type (a BMPString "abc" is "\x00a\x00b\x00c"; a
// T61String is Latin-1 bytes). Go's Subject.CommonName is the last one,
// decoded, and is not what PostgreSQL compares.
//
// ok is false when the subject has no commonName. err is set when the name
// cannot be decoded by OpenSSL, or when the common name contains a NUL byte:
// PostgreSQL then drops the connection with "SSL certificate's common name
// contains embedded null" (CVE-2009-4034), whatever pg_hba.conf says.
func CommonName(cert *x509.Certificate) (cn string, ok bool, err error) {
	entries, err := parseName(cert.RawSubject)
	if err != nil {
		return "", false, fmt.Errorf("certificate subject: %w", err)
	}
	for _, e := range entries {
		if string(e.oid) != oidCommonName {
			continue
		}
		if bytes.IndexByte(e.data, 0) >= 0 {
			return "", true, ErrCommonNameNull
		}
		return string(e.data), true, nil
	}
	return "", false, nil
}

// ErrCommonNameNull carries PostgreSQL's message for a common name with an
// embedded NUL byte.
var ErrCommonNameNull = errors.New("SSL certificate's common name contains embedded null")

// ErrDistinguishedNameNull carries PostgreSQL's message for a DN whose text
// contains a NUL byte. With XN_FLAG_RFC2253 OpenSSL escapes NUL as \00, so
// this cannot happen for a name that decodes; the check is kept because
// be_tls_open_server makes it.
var ErrDistinguishedNameNull = errors.New("SSL certificate's distinguished name contains embedded null")

// DistinguishedName returns the certificate subject as PostgreSQL sees it
// for clientname=DN: the text of OpenSSL's
// X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) (be_tls_open_server).
func DistinguishedName(cert *x509.Certificate) (string, error) {
	dn, err := FormatDN(cert.RawSubject)
	if err != nil {
		return "", fmt.Errorf("certificate subject: %w", err)
	}
	if strings.IndexByte(dn, 0) >= 0 {
		return "", ErrDistinguishedNameNull
	}
	return dn, nil
}

// FormatDN renders a DER Name (for example Certificate.RawSubject) byte for
// byte as OpenSSL's X509_NAME_print_ex with XN_FLAG_RFC2253 does
// (crypto/x509/a_strex.c do_name_ex): entries in reverse order, ',' between
// RDNs and '+' inside a multi-valued RDN with no spaces, OpenSSL's short
// attribute names, unknown attribute types as a dotted OID with the value's
// DER as #hex, and RFC 2253 escaping with control characters and every byte
// of the UTF-8 form >= 0x80 written as \XX. It fails for names OpenSSL
// itself could not decode.
func FormatDN(rawSubject []byte) (string, error) {
	entries, err := parseName(rawSubject)
	if err != nil {
		return "", err
	}
	return formatEntries(entries), nil
}

func formatEntries(entries []nameEntry) string {
	var sb strings.Builder
	prev := -1
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if prev != -1 {
			if prev == e.set {
				sb.WriteByte('+')
			} else {
				sb.WriteByte(',')
			}
		}
		prev = e.set
		sn, known := oidShortName(e.oid)
		if known {
			sb.WriteString(sn)
		} else {
			// OBJ_obj2txt into an 80-byte buffer: at most 79 characters.
			t := oidText(e.oid)
			if len(t) > 79 {
				t = t[:79]
			}
			sb.WriteString(t)
		}
		sb.WriteByte('=')
		writeValue(&sb, e, !known)
	}
	return sb.String()
}

// Character classes of OpenSSL's charmap.h that matter under
// ASN1_STRFLGS_RFC2253.
const (
	escCtrl  = 1 << iota // ASN1_STRFLGS_ESC_CTRL
	esc2253              // ASN1_STRFLGS_ESC_2253
	escFirst             // CHARTYPE_FIRST_ESC_2253
	escLast              // CHARTYPE_LAST_ESC_2253
)

func charType(b byte) int {
	t := 0
	if b < 32 || b > 126 {
		t |= escCtrl
	}
	switch b {
	case ',', '+', '"', '\\', '<', '>', ';':
		t |= esc2253
	case ' ':
		t |= escFirst | escLast
	case '#':
		t |= escFirst
	}
	return t
}

const hexDigits = "0123456789ABCDEF"

// writeValue is do_print_ex with the RFC 2253 flags.
func writeValue(sb *strings.Builder, e nameEntry, dumpAll bool) {
	width := -1
	switch e.tag {
	case tagUTF8String:
		// With ASN1_STRFLGS_UTF8_CONVERT a UTF8String is printed byte by
		// byte, without decoding.
		width = 1
	case tagNumericString, tagPrintableString, tagT61String, tagIA5String:
		width = 1
	case tagUniversalString:
		width = 4
	case tagBMPString:
		width = 2
	}
	if dumpAll || width == -1 {
		// do_dump with ASN1_STRFLGS_DUMP_DER: '#' and the DER in upper-case hex.
		sb.WriteByte('#')
		for _, b := range reencodeValue(e) {
			sb.WriteByte(hexDigits[b>>4])
			sb.WriteByte(hexDigits[b&15])
		}
		return
	}
	convert := e.tag != tagUTF8String
	d := e.data
	var buf [4]byte
	for p := 0; p < len(d); {
		flags := 0
		if p == 0 {
			flags = escFirst
		}
		var c rune
		for k := 0; k < width; k++ {
			c = c<<8 | rune(d[p])
			p++
		}
		if p == len(d) {
			// For a one-character value this replaces the "first" flag.
			flags = escLast
		}
		if !convert {
			writeEscaped(sb, byte(c), flags)
			continue
		}
		if c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) {
			// UTF8_putc fails and the character is dropped; parseName
			// already refuses such names.
			continue
		}
		n := utf8.EncodeRune(buf[:], c)
		for _, b := range buf[:n] {
			writeEscaped(sb, b, flags)
		}
	}
}

// writeEscaped is do_esc_char with ESC_2253 | ESC_CTRL | ESC_MSB.
func writeEscaped(sb *strings.Builder, b byte, pos int) {
	if b > 0x7f {
		sb.WriteByte('\\')
		sb.WriteByte(hexDigits[b>>4])
		sb.WriteByte(hexDigits[b&15])
		return
	}
	t := charType(b) & (escCtrl | esc2253 | pos)
	switch {
	case t&(esc2253|escFirst|escLast) != 0:
		sb.WriteByte('\\')
		sb.WriteByte(b)
	case t&escCtrl != 0:
		sb.WriteByte('\\')
		sb.WriteByte(hexDigits[b>>4])
		sb.WriteByte(hexDigits[b&15])
	default:
		sb.WriteByte(b)
	}
}
