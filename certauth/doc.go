// Package certauth turns a verified client certificate into the identity
// PostgreSQL would see, and verifies client chains the way PostgreSQL's
// OpenSSL setup does.
//
// Identity (be-secure-openssl.c be_tls_open_server): CommonName is the raw
// bytes of the first commonName attribute (X509_NAME_get_text_by_NID);
// DistinguishedName and FormatDN reproduce X509_NAME_print_ex with
// XN_FLAG_RFC2253 byte for byte, using OpenSSL's own object table for
// attribute names. SANs is a pgcertgate extension (clientname=SAN-*).
//
// Verification (be_tls_init): Verifier mirrors
// SSL_CTX_load_verify_locations(ssl_ca_file) and, when ssl_crl_file or
// ssl_crl_dir is set, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL,
// with the server-side "sslclient" purpose. Only self-signed CA-file
// certificates are anchors. Failures carry OpenSSL's X509_V_ERR code and
// the TLS alert OpenSSL sends for it.
//
// The package is a leaf: it reads the files it is given and nothing else,
// opens no sockets and logs nothing.
package certauth
