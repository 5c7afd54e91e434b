package certauth

import (
	"errors"
	"math/big"
	"strconv"
	"strings"
)

// tlv is one DER element: its identifier octet, its content and the whole
// encoding (header plus content).
type tlv struct {
	tag     byte // identifier octet as encoded (class | constructed | number)
	content []byte
	full    []byte
}

var errTrailing = errors.New("trailing data after ASN.1 element")

// readTLV reads one DER element from b. Only the low-tag-number form and
// definite, minimally encoded lengths are accepted: everything we read has
// already passed Go's DER parser, and accepting more would let a name we
// print differ from the one that was verified.
func readTLV(b []byte) (tlv, []byte, error) {
	if len(b) < 2 {
		return tlv{}, nil, errors.New("truncated ASN.1 element")
	}
	tag := b[0]
	if tag&0x1f == 0x1f {
		return tlv{}, nil, errors.New("high-tag-number ASN.1 form is not supported")
	}
	l := int(b[1])
	hdr := 2
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 {
			return tlv{}, nil, errors.New("indefinite ASN.1 length")
		}
		if n > 4 || len(b) < 2+n {
			return tlv{}, nil, errors.New("bad ASN.1 length")
		}
		if b[2] == 0 {
			return tlv{}, nil, errors.New("non-minimal ASN.1 length")
		}
		l = 0
		for _, c := range b[2 : 2+n] {
			l = l<<8 | int(c)
		}
		if l < 0x80 {
			return tlv{}, nil, errors.New("non-minimal ASN.1 length")
		}
		hdr += n
	}
	if l < 0 || len(b)-hdr < l {
		return tlv{}, nil, errors.New("truncated ASN.1 element")
	}
	return tlv{tag: tag, content: b[hdr : hdr+l], full: b[:hdr+l]}, b[hdr+l:], nil
}

// appendTLV appends a DER encoding of tag and content.
func appendTLV(dst []byte, tag byte, content []byte) []byte {
	dst = append(dst, tag)
	n := len(content)
	switch {
	case n < 0x80:
		dst = append(dst, byte(n))
	case n < 0x100:
		dst = append(dst, 0x81, byte(n))
	case n < 0x10000:
		dst = append(dst, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		dst = append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, content...)
}

// checkOID applies OpenSSL's c2i_ASN1_OBJECT rules to the content octets of
// an OBJECT IDENTIFIER: not empty, the last octet ends a sub-identifier, and
// no sub-identifier starts with the padding octet 0x80.
func checkOID(c []byte) error {
	if len(c) == 0 || c[len(c)-1]&0x80 != 0 {
		return errors.New("invalid object identifier")
	}
	for i, b := range c {
		if b == 0x80 && (i == 0 || c[i-1]&0x80 == 0) {
			return errors.New("invalid object identifier")
		}
	}
	return nil
}

// oidText renders OID content octets in dotted form the way OpenSSL's
// OBJ_obj2txt(..., 1) does, arcs of any size included.
func oidText(c []byte) string {
	var sb strings.Builder
	first := true
	var v big.Int
	small := uint64(0)
	useBig := false
	for _, b := range c {
		if useBig {
			v.Lsh(&v, 7)
			v.Or(&v, big.NewInt(int64(b&0x7f)))
		} else {
			if small > (1<<56)-1 {
				useBig = true
				v.SetUint64(small)
				v.Lsh(&v, 7)
				v.Or(&v, big.NewInt(int64(b&0x7f)))
			} else {
				small = small<<7 | uint64(b&0x7f)
			}
		}
		if b&0x80 != 0 {
			continue
		}
		// End of a sub-identifier.
		if first {
			first = false
			if useBig {
				// Any arc this large is in the 2.x branch.
				v.Sub(&v, big.NewInt(80))
				sb.WriteString("2.")
				sb.WriteString(v.String())
			} else {
				switch {
				case small >= 80:
					sb.WriteString("2.")
					sb.WriteString(strconv.FormatUint(small-80, 10))
				default:
					sb.WriteString(strconv.FormatUint(small/40, 10))
					sb.WriteByte('.')
					sb.WriteString(strconv.FormatUint(small%40, 10))
				}
			}
		} else {
			sb.WriteByte('.')
			if useBig {
				sb.WriteString(v.String())
			} else {
				sb.WriteString(strconv.FormatUint(small, 10))
			}
		}
		small, useBig = 0, false
		v.SetInt64(0)
	}
	return sb.String()
}
