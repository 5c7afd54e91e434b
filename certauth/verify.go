package certauth

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// Config names the files PostgreSQL's be_tls_init loads for client
// certificate verification.
type Config struct {
	// CAFile is ssl_ca_file: PEM certificates (and optionally CRLs). It is
	// required; a Verifier never falls back to system roots. Only its
	// self-signed certificates are trust anchors; the others help build
	// chains.
	CAFile string
	// CRLFile is ssl_crl_file: PEM CRLs, loaded once by NewVerifier (a
	// SIGHUP reload means building a new Verifier). Certificates in it join
	// the trust store, as X509_load_cert_crl_file makes them. Empty means
	// none.
	CRLFile string
	// CRLDir is ssl_crl_dir: a directory, or ':'-separated directories, of
	// PEM CRLs named <issuer hash>.r0, .r1, … (see NameHash), read at every
	// verification. A missing directory is not an error (OpenSSL does not
	// check it either); verification then fails for lack of CRLs. Empty
	// means none.
	CRLDir string
	// CAPEM is the CA certificates as PEM text, used instead of reading
	// CAFile (ssl_ca, or a [client_ca] table's pem); CAFile then only
	// names the text in errors.
	CAPEM []byte
	// VerifyDepth is how many intermediate certificates a chain may hold
	// between the client's certificate and the trust anchor, as OpenSSL's
	// verify depth counts them (ssl_verify_depth). Nil means OpenSSL's
	// default, DefaultVerifyDepth, which PostgreSQL never changes.
	VerifyDepth *int
}

// Verifier verifies client certificate chains as PostgreSQL's OpenSSL
// setup does: SSL_CTX_load_verify_locations(ssl_ca_file), and when a CRL
// file or directory is configured X509_V_FLAG_CRL_CHECK |
// X509_V_FLAG_CRL_CHECK_ALL, with OpenSSL's server-side "sslclient"
// purpose. It is safe for concurrent use.
type Verifier struct {
	store    []*certInfo // ssl_ca_file then ssl_crl_file certificates, in file order
	crls     crlStore
	crlCheck bool
	depth    int // intermediates allowed (OpenSSL's verify depth)
}

// NewVerifier loads cfg. Errors carry PostgreSQL's be_tls_init message
// text and name the file; the reason after the colon is OpenSSL's where we
// know it ("No such file or directory", "no certificate or crl found", "no
// start line" for a CA file holding only CRLs) and Go's parser error for a
// malformed certificate or CRL.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.CAFile == "" && cfg.CAPEM == nil {
		return nil, errors.New("client certificates can only be checked if a root certificate store is available")
	}
	v := &Verifier{depth: DefaultVerifyDepth}
	if cfg.VerifyDepth != nil {
		v.depth = *cfg.VerifyDepth
	}
	var caCRLs []*crlInfo
	var certs []*certInfo
	var err error
	if cfg.CAPEM != nil {
		caCRLs, certs, err = parsePEMBundle(cfg.CAPEM, true)
	} else {
		caCRLs, certs, err = loadBundle(cfg.CAFile)
	}
	if err == nil && len(certs) == 0 {
		// X509_load_cert_crl_file finds nothing, or SSL_load_client_CA_file
		// finds CRLs but no certificate.
		err = errNoCertOrCRL
		if len(caCRLs) > 0 {
			err = errors.New("no start line")
		}
	}
	if err != nil && cfg.CAPEM != nil {
		return nil, fmt.Errorf("could not load root certificates from %s: %w", cfg.CAFile, err)
	}
	if err != nil {
		return nil, fmt.Errorf("could not load root certificate file \"%s\": %w", cfg.CAFile, err)
	}
	v.store = certs
	v.crls.crls = caCRLs
	if cfg.CRLFile != "" {
		crls, certs, err := loadBundle(cfg.CRLFile)
		if err == nil && len(crls)+len(certs) == 0 {
			err = errNoCertOrCRL
		}
		if err != nil {
			return nil, &CRLLoadError{File: cfg.CRLFile, Dir: cfg.CRLDir, Err: err}
		}
		v.store = append(v.store, certs...)
		v.crls.crls = append(v.crls.crls, crls...)
	}
	v.crls.dirs = splitDirs(cfg.CRLDir)
	v.crlCheck = cfg.CRLFile != "" || cfg.CRLDir != ""
	return v, nil
}

var errNoCertOrCRL = errors.New("no certificate or crl found")

// CRLLoadError is NewVerifier's refusal of the CRL file rather than of
// the CA certificates, so that a caller can place it on the setting that
// names the CRL file. Its text is be_tls_init's.
type CRLLoadError struct {
	File string
	// Dir is the CRL directory configured with File, which
	// PostgreSQL's message names too; "" for none.
	Dir string
	Err error
}

func (e *CRLLoadError) Error() string {
	if e.Dir != "" {
		return fmt.Sprintf("could not load SSL certificate revocation list file \"%s\" or directory \"%s\": %v", e.File, e.Dir, e.Err)
	}
	return fmt.Sprintf("could not load SSL certificate revocation list file \"%s\": %v", e.File, e.Err)
}

// Unwrap returns why the file could not be loaded.
func (e *CRLLoadError) Unwrap() error { return e.Err }

// loadBundle reads a PEM file of certificates and CRLs. A read failure is
// reported as strerror text, as OpenSSL's BIO layer does.
func loadBundle(path string) ([]*crlInfo, []*certInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			msg := errno.Error()
			return nil, nil, errors.New(strings.ToUpper(msg[:1]) + msg[1:])
		}
		return nil, nil, err
	}
	return parsePEMBundle(data, true)
}

// Roots returns the trust anchors: the self-signed certificates loaded
// from the CA (and CRL) file.
func (v *Verifier) Roots() []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range v.store {
		if c.selfSigned {
			out = append(out, c.cert)
		}
	}
	return out
}

// Intermediates returns the other certificates loaded from the CA (and
// CRL) file: usable to build a chain, never trusted by themselves.
func (v *Verifier) Intermediates() []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range v.store {
		if !c.selfSigned {
			out = append(out, c.cert)
		}
	}
	return out
}

// DefaultVerifyDepth is OpenSSL's default verify depth (X509_VERIFY_PARAM
// "default"): up to 100 intermediates.
const DefaultVerifyDepth = 100

// Verify verifies the client's certificate chain rawCerts (leaf first, as
// sent in the TLS Certificate message) at time now, and returns the chain
// it built, leaf to root. It serves callers that hold DER, such as a chain
// read from a PEM file; a live handshake calls VerifyCertificates with the
// chain crypto/tls already parsed. The checks run in OpenSSL's order
// (x509_vfy.c verify_chain): chain building, extensions and purpose,
// revocation, then signatures and validity periods from the root down,
// then name constraints; the first failure is returned, as PostgreSQL's
// verify_cb accepts OpenSSL's verdict.
func (v *Verifier) Verify(rawCerts [][]byte, now time.Time) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return nil, &VerifyError{Reason: Unparseable, Depth: i, Err: err}
		}
		certs[i] = c
	}
	return v.VerifyCertificates(certs, now)
}

// VerifyCertificates is Verify for a chain already parsed, as crypto/tls
// hands it over (tls.ConnectionState.PeerCertificates): the connection
// then holds one parsed copy of the client's chain, not two. The
// certificates are only read.
func (v *Verifier) VerifyCertificates(certs []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	peer, err := peerInfos(certs)
	if err != nil {
		return nil, err
	}
	return v.verifyInfos(peer, now)
}

// peerInfos derives what verification reads from each certificate of a
// presented chain. It is computed once per chain however many verifiers
// see it (Trust.Verify), and only read.
func peerInfos(certs []*x509.Certificate) ([]*certInfo, error) {
	if len(certs) == 0 {
		return nil, &VerifyError{Reason: NoCertificate}
	}
	peer := make([]*certInfo, len(certs))
	for i, c := range certs {
		ci, err := newCertInfo(c)
		if err != nil {
			return nil, &VerifyError{Reason: Unparseable, Depth: i, Err: err}
		}
		peer[i] = ci
	}
	return peer, nil
}

// verifyInfos is VerifyCertificates for a chain peerInfos derived.
func (v *Verifier) verifyInfos(peer []*certInfo, now time.Time) ([]*x509.Certificate, error) {
	// OpenSSL compares whole seconds (time(NULL)).
	now = now.Truncate(time.Second)
	chain, numUntrusted, err := v.buildChain(peer, now)
	if err != nil {
		return nil, err
	}
	if err := checkExtensions(chain, numUntrusted); err != nil {
		return nil, err
	}
	if v.crlCheck {
		if err := v.checkRevocation(chain, now); err != nil {
			return nil, err
		}
	}
	if err := internalVerify(chain, now); err != nil {
		return nil, err
	}
	if err := checkNameConstraints(chain, now); err != nil {
		return nil, err
	}
	out := make([]*x509.Certificate, len(chain))
	for i, c := range chain {
		out[i] = c.cert
	}
	return out, nil
}

// timeValid is ossl_x509_check_cert_time without the callback: 0 when now
// is within [notBefore, notAfter).
func timeValid(c *x509.Certificate, now time.Time) Reason {
	if c.NotBefore.After(now) {
		return CertNotYetValid
	}
	if !c.NotAfter.After(now) {
		return CertHasExpired
	}
	return 0
}

// pickIssuer chooses among candidate issuers as X509_STORE_CTX_get1_issuer
// and find_issuer do: the first one currently valid, else the one that
// expired last.
func pickIssuer(cands []*certInfo, now time.Time) *certInfo {
	var best *certInfo
	for _, c := range cands {
		if timeValid(c.cert, now) == 0 {
			return c
		}
		if best == nil || c.cert.NotAfter.After(best.cert.NotAfter) {
			best = c
		}
	}
	return best
}

// trustedIssuers returns the store certificates that likely issued x: the
// CA and CRL file certificates, or when none has the issuer's name, those
// in the hashed directories (X509_STORE_CTX_get_by_subject consults the
// lookup methods only on a cache miss).
func (v *Verifier) trustedIssuers(x *certInfo) []*certInfo {
	var named, out []*certInfo
	for _, c := range v.store {
		if bytes.Equal(c.subject, x.issuer) {
			named = append(named, c)
		}
	}
	if len(named) == 0 && len(v.crls.dirs) > 0 {
		if ents, err := parseName(x.cert.RawIssuer); err == nil {
			named = v.crls.lookupDirCerts(x.issuer, nameHash(ents))
		}
	}
	for _, c := range named {
		if likelyIssued(c, x) {
			out = append(out, c)
		}
	}
	return out
}

// buildChain is a simplified x509_vfy.c build_chain with OpenSSL 1.1+
// defaults (X509_V_FLAG_TRUSTED_FIRST, no PARTIAL_CHAIN): at each step the
// trust store is searched first, then the certificates the client sent;
// once a store certificate is in the chain only the store is searched. The
// chain is trusted when it ends at a self-signed store certificate.
func (v *Verifier) buildChain(peer []*certInfo, now time.Time) ([]*certInfo, int, error) {
	chain := []*certInfo{peer[0]}
	numUntrusted := 1
	used := map[*certInfo]bool{peer[0]: true}
	trusted := false
	for {
		x := chain[len(chain)-1]
		if len(chain) > v.depth+1 {
			return nil, 0, &VerifyError{Reason: CertChainTooLong, Depth: len(chain) - 1}
		}
		if numUntrusted == len(chain) {
			// Still in the client's part of the chain.
			if x.selfSigned {
				// A self-signed client certificate is trusted only if the
				// very same certificate is in the store.
				for _, c := range v.store {
					if bytes.Equal(c.cert.Raw, x.cert.Raw) {
						chain[len(chain)-1] = c
						numUntrusted--
						trusted = true
						break
					}
				}
				break
			}
			if is := pickIssuer(v.trustedIssuers(x), now); is != nil {
				chain = append(chain, is)
				if is.selfSigned {
					trusted = true
					break
				}
				continue
			}
			var cands []*certInfo
			for _, c := range peer {
				if likelyIssued(c, x) && (!used[c] || (x.selfIssued && len(chain) == 1)) {
					cands = append(cands, c)
				}
			}
			is := pickIssuer(cands, now)
			if is == nil {
				break
			}
			used[is] = true
			chain = append(chain, is)
			numUntrusted++
			continue
		}
		// In the trusted part: only the store can extend the chain.
		is := pickIssuer(v.trustedIssuers(x), now)
		if is == nil || containsCert(chain, is) {
			break
		}
		chain = append(chain, is)
		if is.selfSigned {
			trusted = true
			break
		}
	}
	if trusted {
		return chain, numUntrusted, nil
	}
	top := chain[len(chain)-1]
	switch {
	case top.selfSigned && len(chain) == 1:
		return nil, 0, &VerifyError{Reason: DepthZeroSelfSigned}
	case top.selfSigned:
		return nil, 0, &VerifyError{Reason: SelfSignedCertInChain, Depth: len(chain) - 1}
	case numUntrusted < len(chain):
		return nil, 0, &VerifyError{Reason: UnableToGetIssuerCert, Depth: len(chain) - 1}
	}
	return nil, 0, &VerifyError{Reason: UnableToGetIssuerCertLocally, Depth: len(chain) - 1}
}

func containsCert(chain []*certInfo, c *certInfo) bool {
	for _, x := range chain {
		if x == c || bytes.Equal(x.cert.Raw, c.cert.Raw) {
			return true
		}
	}
	return false
}

// checkExtensions is x509_vfy.c check_extensions with the sslclient
// purpose.
func checkExtensions(chain []*certInfo, numUntrusted int) error {
	plen := 0
	for i, x := range chain {
		if x.critical {
			return &VerifyError{Reason: UnhandledCriticalExtension, Depth: i}
		}
		if x.proxy {
			return &VerifyError{Reason: ProxyCertificatesNotAllowed, Depth: i}
		}
		if i > 0 {
			// Issuers must be CAs; below the top one that means
			// basicConstraints CA:TRUE (X509_V_FLAG_X509_STRICT is implicit
			// for intermediates).
			r := checkCA(x)
			if r == 0 || (i+1 < len(chain) && r != 1) {
				return &VerifyError{Reason: InvalidCA, Depth: i}
			}
		}
		// check_purpose: store certificates get the same purpose test, as
		// they carry no auxiliary trust settings that could override it.
		if !sslClientPurpose(x, i > 0) {
			return &VerifyError{Reason: InvalidPurpose, Depth: i}
		}
		if i > 1 && !x.selfIssued && x.pathLen != -1 && plen > x.pathLen {
			return &VerifyError{Reason: PathLengthExceeded, Depth: i}
		}
		if i > 0 && !x.selfIssued {
			plen++
		}
	}
	return nil
}

// checkRevocation is check_revocation with X509_V_FLAG_CRL_CHECK_ALL: every
// certificate of the chain, the self-signed root included, needs a CRL
// from its issuer (the root's is its own).
func (v *Verifier) checkRevocation(chain []*certInfo, now time.Time) error {
	for i := range chain {
		if err := v.checkCert(chain, i, now); err != nil {
			return err
		}
	}
	return nil
}

// checkCert is x509_vfy.c check_cert for the certificate at depth i.
func (v *Verifier) checkCert(chain []*certInfo, i int, now time.Time) error {
	x := chain[i]
	reasons := uint32(0)
	var cands []*crlInfo
	looked := false
	for reasons != crldpAllReasons {
		last := reasons
		if !looked {
			ents, err := parseName(x.cert.RawIssuer)
			if err != nil {
				return &VerifyError{Reason: UnableToGetCRL, Depth: i, Err: err}
			}
			cands = v.crls.lookupCRLs(x.issuer, nameHash(ents))
			looked = true
		}
		// get_crl_sk: best score, ties broken by the later thisUpdate.
		var best *crlInfo
		var bestIssuer *certInfo
		bestScore, bestReasons := 0, reasons
		for _, c := range cands {
			s, is, r := crlScore(c, chain, i, reasons, now)
			if s == 0 || s < bestScore {
				continue
			}
			if s == bestScore && best != nil && !c.crl.ThisUpdate.After(best.crl.ThisUpdate) {
				continue
			}
			best, bestIssuer, bestScore, bestReasons = c, is, s, r
		}
		if best == nil {
			return &VerifyError{Reason: UnableToGetCRL, Depth: i}
		}
		reasons = bestReasons
		if err := checkCRL(chain, i, best, bestIssuer, bestScore, now); err != nil {
			return err
		}
		// cert_crl
		if best.critical {
			return &VerifyError{Reason: UnhandledCriticalCRLExtension, Depth: i}
		}
		if best.isRevoked(x.cert.SerialNumber) {
			return &VerifyError{Reason: CertRevoked, Depth: i}
		}
		if reasons == last {
			return &VerifyError{Reason: UnableToGetCRL, Depth: i}
		}
	}
	return nil
}

// checkCRL is x509_vfy.c check_crl.
func checkCRL(chain []*certInfo, i int, crl *crlInfo, issuer *certInfo, score int, now time.Time) error {
	if issuer == nil {
		// No alternative issuer: the next certificate, or the top one if
		// it is self-issued.
		if i < len(chain)-1 {
			issuer = chain[i+1]
		} else {
			issuer = chain[len(chain)-1]
			if !likelyIssued(issuer, issuer) {
				return &VerifyError{Reason: UnableToGetCRLIssuer, Depth: i}
			}
		}
	}
	if issuer.hasKU && issuer.ku&kuCRLSign == 0 {
		return &VerifyError{Reason: KeyUsageNoCRLSign, Depth: i}
	}
	if score&scoreScope == 0 {
		return &VerifyError{Reason: DifferentCRLScope, Depth: i}
	}
	if score&scoreTime == 0 {
		if r := crlTimeReason(crl.crl, now); r != 0 {
			return &VerifyError{Reason: r, Depth: i}
		}
	}
	c := crl.crl
	if err := issuer.cert.CheckSignature(c.SignatureAlgorithm, c.RawTBSRevocationList, c.Signature); err != nil {
		return &VerifyError{Reason: CRLSignatureFailure, Depth: i, Err: err}
	}
	return nil
}

// internalVerify is x509_vfy.c internal_verify: from the root down, each
// certificate's signature (the self-signed anchor's is not checked) and
// validity period.
func internalVerify(chain []*certInfo, now time.Time) error {
	n := len(chain) - 1
	for i := n; i >= 0; i-- {
		xs := chain[i]
		if i < n {
			xi := chain[i+1]
			c := xs.cert
			if err := xi.cert.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
				return &VerifyError{Reason: CertSignatureFailure, Depth: i, Err: err}
			}
		}
		if r := timeValid(xs.cert, now); r != 0 {
			return &VerifyError{Reason: r, Depth: i}
		}
	}
	return nil
}

// checkNameConstraints enforces name constraints when a chain has any.
// OpenSSL's NAME_CONSTRAINTS_check differs in details (it also checks a
// host-like CN); this uses Go's implementation on the chain already built,
// and fails closed: if Go cannot verify that chain for any reason, the
// chain is refused.
func checkNameConstraints(chain []*certInfo, now time.Time) error {
	has := false
	for _, c := range chain[1:] {
		has = has || c.nameConstr
	}
	if !has {
		return nil
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(chain[len(chain)-1].cert)
	for _, c := range chain[1 : len(chain)-1] {
		inter.AddCert(c.cert)
	}
	_, err := chain[0].cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return &VerifyError{Reason: PermittedViolation, Err: err}
	}
	return nil
}
