package pgwire

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// maxCertList is OpenSSL's default max_cert_list (SSL_CTX_set_max_cert_list),
// which PostgreSQL does not change: a client Certificate message larger than
// 100 KiB fails the handshake there. crypto/tls allows 256 KiB, so
// pgcertgate applies OpenSSL's limit itself.
const maxCertList = 100 * 1024

// certMessageSize is the body length of the client's Certificate handshake
// message, as OpenSSL measures it against max_cert_list: TLS 1.3 adds a
// request context (empty here) and a 2-byte extensions field per entry.
func certMessageSize(version uint16, certs []*x509.Certificate) int {
	n := 3 // certificate_list length
	perCert := 3
	if version >= tls.VersionTLS13 {
		n++ // certificate_request_context length byte
		perCert += 2
	}
	for _, c := range certs {
		n += perCert + len(c.Raw)
	}
	return n
}

// checkCertListSize refuses a client chain OpenSSL would refuse by size.
func checkCertListSize(cs tls.ConnectionState) error {
	if size := certMessageSize(cs.Version, cs.PeerCertificates); size > maxCertList {
		return fmt.Errorf("client certificate message of %d bytes exceeds OpenSSL's max_cert_list (%d)", size, maxCertList)
	}
	return nil
}
