package certauth

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// CASet is one set of trust anchors with its own CRLs: ssl_ca_file (or
// ssl_ca) with ssl_crl_file and ssl_crl_dir, or a set that pg_hba.conf
// lines name with clientca=, with the set's own crl_file and crl_dir. A
// chain verified by a set is held to OpenSSL's CRL rule by that set's CRLs
// alone; a set without CRLs checks none.
type CASet struct {
	// Name identifies the set in the audit log and in explain: DefaultSet
	// for ssl_ca_file or ssl_ca, "@NAME" for a [client_ca.NAME] table, or
	// the path of a clientca= file.
	Name string
	v    *Verifier
}

// DefaultSet names the CA set of ssl_ca_file (or ssl_ca): the one every
// pg_hba.conf line without clientca= requires.
const DefaultSet = "ssl_ca_file"

// NewCASet names a loaded verifier.
func NewCASet(name string, v *Verifier) *CASet { return &CASet{Name: name, v: v} }

// Verifier is the set's verifier.
func (s *CASet) Verifier() *Verifier { return s.v }

// ChecksCRLs reports whether the set has CRLs configured (crl_file or
// crl_dir; for ssl_ca_file's set, ssl_crl_file or ssl_crl_dir), so that
// every chain it verifies has been held to OpenSSL's CRL rule.
func (s *CASet) ChecksCRLs() bool { return s.v.crlCheck }

// Verify verifies a chain as the client presented it (leaf first)
// against this set alone, with OpenSSL's semantics (Verifier).
func (s *CASet) Verify(certs []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	return s.v.VerifyCertificates(certs, now)
}

// Trust is what a client certificate may verify to during the TLS
// handshake, before the startup packet says which pg_hba.conf line
// applies: the union of ssl_ca_file's set and the sets that loaded lines
// name, with the key-usage policy every connection is held to. Each line
// then requires its own set (authz). It is immutable and safe for
// concurrent use.
type Trust struct {
	sets     []*CASet
	keyUsage KeyUsagePolicy
}

// NewTrust makes the union of sets, tried in the order given (ssl_ca_file's
// first, then the lines' sets in pg_hba.conf order). Names must be unique.
func NewTrust(keyUsage KeyUsagePolicy, sets ...*CASet) *Trust {
	return &Trust{sets: sets, keyUsage: keyUsage}
}

// Sets returns the sets in the order Verify tries them.
func (t *Trust) Sets() []*CASet { return t.sets }

// Set returns the set named name, or nil.
func (t *Trust) Set(name string) *CASet {
	for _, s := range t.sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// KeyUsage is the policy every client certificate is held to in the
// handshake (ssl_client_key_usage).
func (t *Trust) KeyUsage() KeyUsagePolicy { return t.keyUsage }

// CACerts returns every certificate the CA text (and CRL file) loaded:
// the roots, then the intermediates.
func (v *Verifier) CACerts() []*x509.Certificate {
	return append(v.Roots(), v.Intermediates()...)
}

// CRLDirs returns the CRL directories (ssl_crl_dir, or a set's crl_dir)
// that verification reads on demand; nil for none.
func (v *Verifier) CRLDirs() []string { return v.crls.dirs }

// Names returns the certificates whose subjects the CertificateRequest
// lists: every set's roots and intermediates, as PostgreSQL lists
// ssl_ca_file's.
func (t *Trust) Names() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, s := range t.sets {
		for _, c := range s.v.CACerts() {
			pool.AddCert(c)
		}
	}
	return pool
}

// Verify is the handshake's verification: the chain the client presented
// must verify to one of the sets, and its leaf must satisfy the key-usage
// policy. It returns the verified chain and the first set, in order, that
// verified it. With a single set the verdict is exactly that set's. When
// no set verifies the chain, the error is the first one from a set that
// knew the chain's issuer (it built a chain to one of its anchors and
// refused it for another reason: revoked, expired, too deep…), as a
// single OpenSSL store holding every set would report; failing that, the
// first set's.
func (t *Trust) Verify(certs []*x509.Certificate, now time.Time) ([]*x509.Certificate, *CASet, error) {
	if len(t.sets) == 0 {
		return nil, nil, &VerifyError{Reason: UnableToGetIssuerCertLocally}
	}
	peer, err := peerInfos(certs)
	if err != nil {
		return nil, nil, err
	}
	var first, known error
	for _, s := range t.sets {
		chain, err := s.v.verifyInfos(peer, now)
		if err == nil {
			if err := CheckKeyUsage(t.keyUsage, chain[0]); err != nil {
				return nil, nil, err
			}
			return chain, s, nil
		}
		if first == nil {
			first = err
		}
		if known == nil && !UnknownIssuer(err) {
			known = err
		}
	}
	if known != nil {
		return nil, nil, known
	}
	return nil, nil, first
}

// UnknownIssuer reports whether a verification failed because no chain to
// one of the verifier's anchors could be built: the failures a chain from
// another CA gets.
func UnknownIssuer(err error) bool {
	ve, ok := errors.AsType[*VerifyError](err)
	if !ok {
		return false
	}
	switch ve.Reason {
	case UnableToGetIssuerCertLocally, UnableToGetIssuerCert, DepthZeroSelfSigned, SelfSignedCertInChain:
		return true
	}
	return false
}

// SetProblems reviews the certificates of a CA set for what can only be
// a mistake in a set that pgcertgate defines (PostgreSQL's ssl_ca_file
// accepts all of it silently): errors for a certificate that appears
// twice or is not a CA, and warnings for one outside its validity period
// at now, which refuses every chain through it at connect time with
// OpenSSL's verdict ("certificate has expired") but must not refuse the
// load, or every later reload would fail too.
func (v *Verifier) SetProblems(now time.Time) (errs, warnings []string) {
	for i, c := range v.store {
		what := fmt.Sprintf("certificate %d (subject %q)", i+1, dnOrEmpty(c.cert))
		dup := false
		for j, d := range v.store[:i] {
			if bytes.Equal(c.cert.Raw, d.cert.Raw) {
				errs = append(errs, fmt.Sprintf("%s duplicates certificate %d", what, j+1))
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if checkCA(c) == 0 {
			errs = append(errs, fmt.Sprintf("%s is not a CA certificate (it needs basicConstraints CA:TRUE); a client certificate is pinned with clientname=SHA256 instead", what))
			continue
		}
		switch timeValid(c.cert, now.Truncate(time.Second)) {
		case CertHasExpired:
			warnings = append(warnings, fmt.Sprintf("%s expired at %s: chains through it fail with \"certificate has expired\"", what, c.cert.NotAfter.UTC().Format(time.RFC3339)))
		case CertNotYetValid:
			warnings = append(warnings, fmt.Sprintf("%s is not valid before %s: chains through it fail with \"certificate is not yet valid\" until then", what, c.cert.NotBefore.UTC().Format(time.RFC3339)))
		}
	}
	return errs, warnings
}

func dnOrEmpty(c *x509.Certificate) string {
	s, _ := DistinguishedName(c)
	return s
}
