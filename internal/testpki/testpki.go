// Package testpki generates throwaway X.509 PKIs (CAs, intermediates, server
// and client certificates, CRLs) for tests and the demo.
//
// Keys are ECDSA P-256 by default: generating one takes microseconds, while an
// RSA-2048 key takes tens to hundreds of milliseconds. PostgreSQL (OpenSSL),
// libpq, pgx and crypto/tls all accept ECDSA certificates. Use [WithRSA] for
// clients or configurations that only handle RSA (for example an
// ssl_ciphers list restricted to RSA suites, or an old JDBC/.NET driver).
//
// Nothing here is secret or durable: the package exists so tests can build
// the exact certificate they need, including ones a real CA would never
// issue (expired, wrong EKU, odd subject encodings).
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync"
	"time"
)

// DefaultValidity is how long certificates are valid when [WithValidity] is
// not given. NotBefore is backdated by an hour so that small clock
// differences between the test process and the server never make a fresh
// certificate "not yet valid".
const DefaultValidity = 365 * 24 * time.Hour

// CA is a certificate authority: a root from [NewRootCA] or an intermediate
// from [CA.NewIntermediate]. It is safe for concurrent use.
type CA struct {
	// Cert is the CA's own certificate.
	Cert *x509.Certificate
	// Key signs everything the CA issues.
	Key crypto.Signer
	// CertPEM is Cert as a PEM "CERTIFICATE" block.
	CertPEM []byte
	// KeyPEM is Key as a PKCS#8 "PRIVATE KEY" block.
	KeyPEM []byte
	// Chain holds the issuing CAs above this one, nearest first, ending
	// with the root. It is empty for a root.
	Chain []*x509.Certificate

	mu        sync.Mutex
	serial    int64 // last serial issued by this CA
	crlNumber int64 // last CRL number issued by this CA
}

// Leaf is an end-entity (server or client) certificate with its key.
type Leaf struct {
	// Cert is the parsed certificate. It is nil only when Go's parser
	// rejects a certificate built with [WithRawSubject] (for example a
	// UniversalString, a PrintableString with a NUL, or invalid UTF-8 in a
	// UTF8String); OpenSSL still accepts such certificates, which is why
	// tests want them. DER and CertPEM are always set.
	Cert *x509.Certificate
	// DER is the certificate's DER encoding.
	DER []byte
	// Key is the certificate's private key.
	Key crypto.Signer
	// CertPEM is the certificate alone as a PEM "CERTIFICATE" block.
	CertPEM []byte
	// KeyPEM is Key as a PKCS#8 "PRIVATE KEY" block, which OpenSSL, libpq
	// and Go all read.
	KeyPEM []byte
	// KeyPEMTraditional is Key in its algorithm-specific form: SEC 1
	// "EC PRIVATE KEY" for ECDSA, PKCS#1 "RSA PRIVATE KEY" for RSA.
	KeyPEMTraditional []byte
	// Chain holds the issuing CAs, nearest first, ending with the root.
	Chain []*x509.Certificate
}

// Option adjusts a certificate being issued.
type Option func(*options)

type options struct {
	notBefore, notAfter time.Time
	eku                 []x509.ExtKeyUsage
	ekuSet              bool
	dns                 []string
	ips                 []net.IP
	emails              []string
	uris                []*url.URL
	rawSubject          []byte
	rsaBits             int
	serial              *big.Int
	maxPathLen          int
	maxPathLenSet       bool
	ocspServers         []string // Authority Information Access OCSP URLs
	crlDPs              []string // CRL distribution point URLs
}

// WithValidity sets NotBefore and NotAfter, for example to issue an expired
// or not-yet-valid certificate.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(o *options) { o.notBefore, o.notAfter = notBefore, notAfter }
}

// WithEKU replaces the extended key usages. With no arguments the
// certificate has no EKU extension at all, which OpenSSL treats as "any
// purpose".
func WithEKU(eku ...x509.ExtKeyUsage) Option {
	return func(o *options) { o.eku, o.ekuSet = eku, true }
}

// WithDNSSANs adds DNS subjectAltNames.
func WithDNSSANs(names ...string) Option {
	return func(o *options) { o.dns = append(o.dns, names...) }
}

// WithIPSANs adds IP subjectAltNames.
func WithIPSANs(ips ...net.IP) Option {
	return func(o *options) { o.ips = append(o.ips, ips...) }
}

// WithEmailSANs adds rfc822Name subjectAltNames.
func WithEmailSANs(emails ...string) Option {
	return func(o *options) { o.emails = append(o.emails, emails...) }
}

// WithURISANs adds URI subjectAltNames (for example SPIFFE IDs).
func WithURISANs(uris ...*url.URL) Option {
	return func(o *options) { o.uris = append(o.uris, uris...) }
}

// WithRawSubject uses der, a DER-encoded Name such as [RawName] builds,
// as the subject verbatim, instead of encoding the pkix.Name argument. This
// is how tests get names Go would never produce: BMPString, T61String,
// multi-valued RDNs, repeated CNs, unknown OIDs, embedded NULs.
func WithRawSubject(der []byte) Option {
	return func(o *options) { o.rawSubject = der }
}

// WithRSA makes the certificate's key RSA with the given size in bits
// (2048 if bits is 0) instead of ECDSA P-256.
func WithRSA(bits int) Option {
	if bits == 0 {
		bits = 2048
	}
	return func(o *options) { o.rsaBits = bits }
}

// WithSerial sets the serial number instead of the CA's next sequential
// one, for example to issue two certificates with the same serial.
func WithSerial(serial *big.Int) Option {
	return func(o *options) { o.serial = serial }
}

// WithMaxPathLen sets a CA certificate's pathLenConstraint (0 forbids any
// CA below it). It is ignored for leaves. By default there is no limit.
func WithMaxPathLen(n int) Option {
	return func(o *options) { o.maxPathLen, o.maxPathLenSet = n, true }
}

func buildOptions(opts []Option) *options {
	now := time.Now()
	o := &options{notBefore: now.Add(-time.Hour), notAfter: now.Add(DefaultValidity)}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

func (o *options) newKey() (crypto.Signer, error) {
	if o.rsaBits > 0 {
		return rsa.GenerateKey(rand.Reader, o.rsaBits)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// template fills the fields every certificate shares.
func (o *options) template(subject pkix.Name, serial *big.Int) *x509.Certificate {
	if o.serial != nil {
		serial = o.serial
	}
	return &x509.Certificate{
		SerialNumber:   serial,
		Subject:        subject,
		RawSubject:     o.rawSubject,
		NotBefore:      o.notBefore,
		NotAfter:       o.notAfter,
		DNSNames:       o.dns,
		IPAddresses:    o.ips,
		EmailAddresses: o.emails,
		URIs:           o.uris,
		// Revocation pointers (revocation.go): none unless asked for.
		OCSPServer:            o.ocspServers,
		CRLDistributionPoints: o.crlDPs,
	}
}

// NewRootCA creates a self-signed root CA.
func NewRootCA(subject pkix.Name, opts ...Option) (*CA, error) {
	o := buildOptions(opts)
	key, err := o.newKey()
	if err != nil {
		return nil, fmt.Errorf("testpki: generate key: %w", err)
	}
	tmpl := o.caTemplate(subject, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("testpki: create root CA: %w", err)
	}
	// The root used serial 1 for itself.
	return newCA(der, key, nil, 1)
}

// NewIntermediate creates a CA certificate signed by ca.
func (ca *CA) NewIntermediate(subject pkix.Name, opts ...Option) (*CA, error) {
	o := buildOptions(opts)
	key, err := o.newKey()
	if err != nil {
		return nil, fmt.Errorf("testpki: generate key: %w", err)
	}
	der, err := ca.sign(o.caTemplate(subject, ca.nextSerial()), key.Public())
	if err != nil {
		return nil, fmt.Errorf("testpki: create intermediate CA: %w", err)
	}
	chain := append([]*x509.Certificate{ca.Cert}, ca.Chain...)
	return newCA(der, key, chain, 0)
}

func (o *options) caTemplate(subject pkix.Name, serial *big.Int) *x509.Certificate {
	t := o.template(subject, serial)
	t.IsCA = true
	t.BasicConstraintsValid = true
	t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	if o.maxPathLenSet {
		t.MaxPathLen = o.maxPathLen
		t.MaxPathLenZero = o.maxPathLen == 0
	} else {
		t.MaxPathLen = -1
	}
	if o.ekuSet {
		t.ExtKeyUsage = o.eku
	}
	return t
}

func newCA(der []byte, key crypto.Signer, chain []*x509.Certificate, serial int64) (*CA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		// A CA must be usable as a parent by crypto/x509, so unlike a
		// Leaf it cannot carry a subject Go refuses to parse.
		return nil, fmt.Errorf("testpki: parse CA certificate: %w", err)
	}
	keyPEM, err := pkcs8PEM(key)
	if err != nil {
		return nil, err
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: certPEM(der),
		KeyPEM:  keyPEM,
		Chain:   chain,
		serial:  serial,
	}, nil
}

// nextSerial returns the next sequential serial. Small sequential serials
// keep server logs and `openssl crl -text` output readable; uniqueness only
// matters per issuer.
func (ca *CA) nextSerial() *big.Int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.serial++
	return big.NewInt(ca.serial)
}

func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
}

// NewServer issues a server certificate (EKU serverAuth) with subject
// CN=cn and the given DNS and IP subjectAltNames. libpq's verify-full and
// crypto/tls check the SANs, not the CN, when any SAN is present.
func (ca *CA) NewServer(cn string, dnsNames []string, ips []net.IP, opts ...Option) (*Leaf, error) {
	opts = append([]Option{
		WithEKU(x509.ExtKeyUsageServerAuth),
		WithDNSSANs(dnsNames...),
		WithIPSANs(ips...),
	}, opts...)
	return ca.newLeaf(pkix.Name{CommonName: cn}, opts)
}

// NewClient issues a client certificate (EKU clientAuth) for subject.
// Use [WithRawSubject] when pkix.Name cannot express the subject.
func (ca *CA) NewClient(subject pkix.Name, opts ...Option) (*Leaf, error) {
	opts = append([]Option{WithEKU(x509.ExtKeyUsageClientAuth)}, opts...)
	return ca.newLeaf(subject, opts)
}

func (ca *CA) newLeaf(subject pkix.Name, opts []Option) (*Leaf, error) {
	o := buildOptions(opts)
	key, err := o.newKey()
	if err != nil {
		return nil, fmt.Errorf("testpki: generate key: %w", err)
	}
	tmpl := o.template(subject, ca.nextSerial())
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		// RSA key exchange (TLS 1.2 non-ECDHE suites) encrypts with the key.
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl.ExtKeyUsage = o.eku
	der, err := ca.sign(tmpl, key.Public())
	if err != nil {
		return nil, fmt.Errorf("testpki: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		if o.rawSubject == nil {
			return nil, fmt.Errorf("testpki: parse certificate: %w", err)
		}
		cert = nil // documented on Leaf.Cert
	}
	keyPEM, err := pkcs8PEM(key)
	if err != nil {
		return nil, err
	}
	trad, err := traditionalPEM(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{
		Cert:              cert,
		DER:               der,
		Key:               key,
		CertPEM:           certPEM(der),
		KeyPEM:            keyPEM,
		KeyPEMTraditional: trad,
		Chain:             append([]*x509.Certificate{ca.Cert}, ca.Chain...),
	}, nil
}

// Intermediates returns the CAs between the leaf and the root, nearest
// first: what a peer should send after its own certificate.
func (l *Leaf) Intermediates() []*x509.Certificate {
	if len(l.Chain) == 0 {
		return nil
	}
	return l.Chain[:len(l.Chain)-1]
}

// ChainPEM returns the leaf followed by its intermediates (not the root),
// the layout of PostgreSQL's ssl_cert_file and libpq's sslcert when a chain
// must be presented.
func (l *Leaf) ChainPEM() []byte {
	out := append([]byte(nil), l.CertPEM...)
	for _, c := range l.Intermediates() {
		out = append(out, certPEM(c.Raw)...)
	}
	return out
}

// TLSCertificate returns the leaf, its intermediates and its key for
// tls.Config.Certificates. It is built directly rather than through
// tls.X509KeyPair so that certificates Go cannot parse still work.
func (l *Leaf) TLSCertificate() tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{l.DER}, PrivateKey: l.Key, Leaf: l.Cert}
	for _, c := range l.Intermediates() {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// Pool returns a pool holding only ca's certificate, for
// tls.Config.RootCAs or ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// CRL returns a PEM "X509 CRL" signed by ca that revokes the given
// certificates. PostgreSQL checks CRLs for every certificate in the chain
// (X509_V_FLAG_CRL_CHECK_ALL), so a test with intermediates needs a CRL from
// each CA, even an empty one (revoked may be nil). Each call uses the next
// CRL number.
func (ca *CA) CRL(revoked []*x509.Certificate, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, c := range revoked {
		if c == nil {
			return nil, errors.New("testpki: CRL: nil certificate")
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate})
	}
	ca.mu.Lock()
	ca.crlNumber++
	number := big.NewInt(ca.crlNumber)
	ca.mu.Unlock()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    number,
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: create CRL: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pkcs8PEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testpki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func traditionalPEM(key crypto.Signer) ([]byte, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("testpki: marshal key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
	}
	return nil, fmt.Errorf("testpki: unsupported key type %T", key)
}

// CertsPEM concatenates certificates as PEM blocks, for CA bundle files
// such as ssl_ca_file or sslrootcert.
func CertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, certPEM(c.Raw)...)
	}
	return out
}
