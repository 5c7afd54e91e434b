package certauth

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"unicode/utf8"
)

// What logs, metrics and any other record of a connection attempt keep of
// a certificate's names. A certificate's subject or SAN can be tens of
// kilobytes, and it is the client who chose it: written whole into every
// event it would let one client fill the log. The first kilobyte tells an
// operator whose certificate it was; the hash tells two long names apart
// and finds the certificate again.
const (
	// LogTextMax is the most bytes of one name a record keeps.
	LogTextMax = 1024
	// LogListMax is the most names (SAN entries) a record lists.
	LogListMax = 16
)

// LogText returns name as a record keeps it: unchanged when it is at most
// LogTextMax bytes; otherwise its first LogTextMax bytes (fewer, so as not
// to split a UTF-8 sequence), then "…", the full length and the SHA-256 of
// the whole name in hex:
//
//	CN=aaaa…aaa… [60012 bytes, sha256 5f1c…]
func LogText(name string) string {
	if len(name) <= LogTextMax {
		return name
	}
	cut := LogTextMax
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(name[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(name[cut]) {
		cut = LogTextMax // not UTF-8 there anyway: cut at the byte
	}
	sum := sha256.Sum256([]byte(name))
	return name[:cut] + "… [" + strconv.Itoa(len(name)) + " bytes, sha256 " + hex.EncodeToString(sum[:]) + "]"
}
