package certauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file builds DER by hand so that tests control every byte OpenSSL and
// Go see: string types, RDN grouping, element order, serial signs.

// der concatenates the encodings of parts under one tag.
func der(tag byte, parts ...[]byte) []byte {
	return appendTLV(nil, tag, joinBytes(parts...))
}

func joinBytes(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// oidDER encodes a dotted OID.
func oidDER(t testing.TB, dotted string) []byte {
	t.Helper()
	c, err := encodeOIDText(dotted)
	if err != nil {
		t.Fatal(err)
	}
	return appendTLV(nil, 0x06, c)
}

// attr is one AttributeTypeAndValue: the OID and the value's full DER.
type attr struct {
	oid   string
	value []byte
}

func str(tag byte, s string) []byte { return appendTLV(nil, tag, []byte(s)) }

func utf8s(s string) []byte       { return str(tagUTF8String, s) }
func printable(s string) []byte   { return str(tagPrintableString, s) }
func ia5(s string) []byte         { return str(tagIA5String, s) }
func t61(s string) []byte         { return str(tagT61String, s) }
func numeric(s string) []byte     { return str(tagNumericString, s) }
func bmp(runes ...rune) []byte    { return str(tagBMPString, ucs(2, runes)) }
func univ(runes ...rune) []byte   { return str(tagUniversalString, ucs(4, runes)) }
func bmpStr(s string) []byte      { return bmp([]rune(s)...) }
func univStr(s string) []byte     { return univ([]rune(s)...) }
func rawValue(h string) []byte    { b, _ := hex.DecodeString(strings.ReplaceAll(h, " ", "")); return b }
func a(oid string, v []byte) attr { return attr{oid, v} }

func ucs(w int, runes []rune) string {
	var b []byte
	for _, r := range runes {
		for i := w - 1; i >= 0; i-- {
			b = append(b, byte(uint32(r)>>(8*i)))
		}
	}
	return string(b)
}

// rdnSeq builds a Name from RDNs given in encoded order; each RDN's
// attributes are written in the order given (not DER-sorted), exactly as a
// careless CA might.
func rdnSeq(t testing.TB, rdns ...[]attr) []byte {
	t.Helper()
	var seq []byte
	for _, r := range rdns {
		var set []byte
		for _, at := range r {
			set = append(set, der(0x30, oidDER(t, at.oid), at.value)...)
		}
		seq = append(seq, appendTLV(nil, 0x31, set)...)
	}
	return appendTLV(nil, 0x30, seq)
}

// rdn is shorthand for one RDN.
func rdn(attrs ...attr) []attr { return attrs }

var (
	testKeyOnce sync.Once
	testKey     *ecdsa.PrivateKey
)

// sharedKey returns one P-256 key for hand-built certificates; generating a
// key per certificate would only slow the tests.
func sharedKey() *ecdsa.PrivateKey {
	testKeyOnce.Do(func() {
		var err error
		testKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
	})
	return testKey
}

// rawCertOpts controls the fields of a hand-built certificate.
type rawCertOpts struct {
	serial     []byte            // INTEGER content; default 01
	subject    []byte            // DER Name
	issuer     []byte            // DER Name; default CN=golden-issuer
	extensions []byte            // DER of the Extensions SEQUENCE contents, nil for none
	signer     *ecdsa.PrivateKey // signing key; default the shared key
}

// rawCert builds and signs (ECDSA-SHA256) a v3 certificate from opts
// without going through crypto/x509, so Go's encoder rejects nothing.
func rawCert(t testing.TB, o rawCertOpts) []byte {
	t.Helper()
	key := sharedKey()
	if o.serial == nil {
		o.serial = []byte{1}
	}
	if o.issuer == nil {
		o.issuer = rdnSeq(t, rdn(a("2.5.4.3", utf8s("golden-issuer"))))
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sigAlg := der(0x30, oidDER(t, "1.2.840.10045.4.3.2"))
	utc := func(tm time.Time) []byte { return str(0x17, tm.UTC().Format("060102150405Z")) }
	now := time.Now()
	tbs := joinBytes(
		der(0xa0, appendTLV(nil, 0x02, []byte{2})),
		appendTLV(nil, 0x02, o.serial),
		sigAlg,
		o.issuer,
		der(0x30, utc(now.Add(-time.Hour)), utc(now.Add(24*time.Hour))),
		o.subject,
		spki,
	)
	if o.extensions != nil {
		tbs = append(tbs, der(0xa3, der(0x30, o.extensions))...)
	}
	tbsDER := appendTLV(nil, 0x30, tbs)
	h := sha256.Sum256(tbsDER)
	signer := key
	if o.signer != nil {
		signer = o.signer
	}
	sig, err := ecdsa.SignASN1(rand.Reader, signer, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return der(0x30, tbsDER, sigAlg, appendTLV(nil, 0x03, append([]byte{0}, sig...)))
}

// encodeOIDText encodes a dotted OID's content octets (arcs of any size).
func encodeOIDText(s string) ([]byte, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("bad OID %q", s)
	}
	arcs := make([]*big.Int, len(parts))
	for i, p := range parts {
		n, ok := new(big.Int).SetString(p, 10)
		if !ok || n.Sign() < 0 {
			return nil, fmt.Errorf("bad OID %q", s)
		}
		arcs[i] = n
	}
	first := new(big.Int).Mul(arcs[0], big.NewInt(40))
	first.Add(first, arcs[1])
	var out []byte
	for _, a := range append([]*big.Int{first}, arcs[2:]...) {
		var groups []byte
		x := new(big.Int).Set(a)
		for {
			groups = append(groups, byte(new(big.Int).And(x, big.NewInt(0x7f)).Int64()))
			x.Rsh(x, 7)
			if x.Sign() == 0 {
				break
			}
		}
		for i := len(groups) - 1; i >= 0; i-- {
			b := groups[i]
			if i > 0 {
				b |= 0x80
			}
			out = append(out, b)
		}
	}
	return out, nil
}
