package certauth

import (
	"fmt"
	"strconv"
)

// HashedCRLName is the file name OpenSSL's hashed-directory lookup
// (by_dir.c, and so ssl_crl_dir) reads for the n-th CRL of an issuer
// whose NameHash is hash: "<hash>.r<n>", the hash as eight lower-case hex
// digits and n in decimal, from 0. `openssl rehash` names CRLs this way.
func HashedCRLName(hash uint32, n int) string {
	return fmt.Sprintf("%08x.r%d", hash, n)
}

// ParseHashedCRLName is the inverse of HashedCRLName. ok is false for a
// name the lookup never reads, such as one with upper-case hex or a
// leading zero in n.
func ParseHashedCRLName(name string) (hash uint32, n int, ok bool) {
	if len(name) < 11 || name[8:10] != ".r" {
		return 0, 0, false
	}
	for _, c := range name[:8] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, 0, false
		}
	}
	h, err := strconv.ParseUint(name[:8], 16, 32)
	if err != nil {
		return 0, 0, false
	}
	digits := name[10:]
	if digits[0] < '0' || digits[0] > '9' || (digits[0] == '0' && len(digits) > 1) {
		return 0, 0, false
	}
	k, err := strconv.Atoi(digits)
	if err != nil {
		return 0, 0, false
	}
	return uint32(h), k, true
}

// hashedCertName is the name the same lookup reads for the n-th
// certificate with subject hash: "<hash>.<n>".
func hashedCertName(hash uint32, n int) string {
	return fmt.Sprintf("%08x.%d", hash, n)
}
