package certauth

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Issuing distribution point flags (IDP_* in OpenSSL's x509_local.h).
const (
	idpPresent  = 0x1
	idpInvalid  = 0x2
	idpOnlyUser = 0x4
	idpOnlyCA   = 0x8
	idpOnlyAttr = 0x10
	idpIndirect = 0x20
	idpReasons  = 0x40
)

// crlInfo is a CRL as OpenSSL's crl_cb caches it.
type crlInfo struct {
	crl      *x509.RevocationList
	issuer   []byte // canonical issuer name
	critical bool   // an unhandled critical CRL or entry extension
	idpFlags int
	idp      *distPoint
	akid     *akid
	revoked  map[string]int // serial (decimal) → reason code, -1 when none
}

const reasonRemoveFromCRL = 8

func newCRLInfo(rl *x509.RevocationList) (*crlInfo, error) {
	ents, err := parseName(rl.RawIssuer)
	if err != nil {
		return nil, fmt.Errorf("CRL issuer: %w", err)
	}
	ci := &crlInfo{crl: rl, issuer: canonicalName(ents), revoked: map[string]int{}}
	for _, e := range rl.Extensions {
		id := e.Id.String()
		switch id {
		case extIDP:
			ci.idpFlags, ci.idp = parseIDP(e.Value)
		case extAuthKeyID:
			ci.akid = parseAKID(e.Value)
		}
		// crl_cb: IDP, AKID and delta CRL indicator are handled; any other
		// critical extension marks the CRL unusable.
		if e.Critical && id != extIDP && id != extAuthKeyID && id != extDeltaCRL {
			ci.critical = true
		}
	}
	for _, r := range rl.RevokedCertificateEntries {
		for _, e := range r.Extensions {
			if e.Critical && e.Id.String() != extCertIssuer {
				ci.critical = true
			}
		}
		reason := -1
		for _, e := range r.Extensions {
			if e.Id.String() == "2.5.29.21" {
				reason = r.ReasonCode
			}
		}
		ci.revoked[r.SerialNumber.String()] = reason
	}
	return ci, nil
}

// parseIDP mirrors setup_idp.
func parseIDP(v []byte) (int, *distPoint) {
	flags := idpPresent
	seq, _, err := readTLV(v)
	if err != nil || seq.tag != 0x30 {
		return flags | idpInvalid, nil
	}
	dp := &distPoint{reasons: crldpAllReasons}
	isTrue := func(c []byte) bool { return len(c) == 1 && c[0] != 0 }
	only := 0
	for rest := seq.content; len(rest) > 0; {
		var f tlv
		f, rest, err = readTLV(rest)
		if err != nil {
			return flags | idpInvalid, nil
		}
		switch f.tag {
		case 0xa0:
			dp.hasName = true
			// [0] wraps the DistributionPointName CHOICE (explicitly, as
			// for any CHOICE).
			dp.fullNames = parseDPName(f.content)
		case 0x81:
			if isTrue(f.content) {
				flags |= idpOnlyUser
				only++
			}
		case 0x82:
			if isTrue(f.content) {
				flags |= idpOnlyCA
				only++
			}
		case 0x83:
			flags |= idpReasons
			dp.reasons = reasonBits(f.content)
		case 0x84:
			if isTrue(f.content) {
				flags |= idpIndirect
			}
		case 0x85:
			if isTrue(f.content) {
				flags |= idpOnlyAttr
				only++
			}
		}
	}
	if only > 1 {
		flags |= idpInvalid
	}
	return flags, dp
}

// CRL score bits (CRL_SCORE_* in x509_vfy.c).
const (
	scoreNoCritical = 0x100
	scoreScope      = 0x080
	scoreTime       = 0x040
	scoreIssuerName = 0x020
	scoreIssuerCert = 0x018
	scoreSamePath   = 0x008
	scoreAKID       = 0x004
)

// crlTimeReason is check_crl_time: 0 when the CRL is current.
func crlTimeReason(c *x509.RevocationList, now time.Time) Reason {
	if c.ThisUpdate.After(now) {
		return CRLNotYetValid
	}
	if !c.NextUpdate.IsZero() && !c.NextUpdate.After(now) {
		return CRLHasExpired
	}
	return 0
}

// crlScore is get_crl_score for the certificate at depth i of chain; it
// returns the score, the CRL issuer certificate and the reasons covered.
func crlScore(crl *crlInfo, chain []*certInfo, i int, reasons uint32, now time.Time) (int, *certInfo, uint32) {
	x := chain[i]
	if crl.idpFlags&idpInvalid != 0 {
		return 0, nil, reasons
	}
	// Without X509_V_FLAG_EXTENDED_CRL_SUPPORT (PostgreSQL does not set
	// it), indirect and reason-partitioned CRLs are not used.
	if crl.idpFlags&(idpIndirect|idpReasons) != 0 {
		return 0, nil, reasons
	}
	score := 0
	if !bytes.Equal(x.issuer, crl.issuer) {
		return 0, nil, reasons
	}
	score |= scoreIssuerName
	if !crl.critical {
		score |= scoreNoCritical
	}
	if crlTimeReason(crl.crl, now) == 0 {
		score |= scoreTime
	}
	// crl_akid_check: the issuer is the next certificate up the chain (the
	// root issues its own), or another certificate further up with the
	// CRL issuer's name.
	var issuer *certInfo
	idx := i
	if idx != len(chain)-1 {
		idx++
	}
	if akidMatches(chain[idx], crl.akid) {
		score |= scoreAKID | scoreIssuerCert
		issuer = chain[idx]
	} else {
		for idx++; idx < len(chain); idx++ {
			if !bytes.Equal(chain[idx].subject, crl.issuer) {
				continue
			}
			if akidMatches(chain[idx], crl.akid) {
				score |= scoreAKID | scoreSamePath
				issuer = chain[idx]
				break
			}
		}
	}
	if score&scoreAKID == 0 {
		return 0, nil, reasons
	}
	if crlReasons, ok := crldpCheck(x, crl, score); ok {
		if crlReasons&^reasons == 0 {
			return 0, nil, reasons
		}
		reasons |= crlReasons
		score |= scoreScope
	}
	return score, issuer, reasons
}

// crldpCheck is crl_crldp_check: whether the CRL's scope covers the
// certificate, and the reasons it covers.
func crldpCheck(x *certInfo, crl *crlInfo, score int) (uint32, bool) {
	if crl.idpFlags&idpOnlyAttr != 0 {
		return 0, false
	}
	if x.ca {
		if crl.idpFlags&idpOnlyUser != 0 {
			return 0, false
		}
	} else if crl.idpFlags&idpOnlyCA != 0 {
		return 0, false
	}
	reasons := uint32(crldpAllReasons)
	if crl.idp != nil {
		reasons = crl.idp.reasons
	}
	for _, dp := range x.crldp {
		// crldp_check_crlissuer: without a cRLIssuer the CRL must come from
		// the certificate's issuer; an explicit cRLIssuer needs indirect
		// CRL support.
		if dp.hasIssuer || score&scoreIssuerName == 0 {
			continue
		}
		if crl.idp == nil || idpCheckDP(&dp, crl.idp) {
			return reasons & dp.reasons, true
		}
	}
	if (crl.idp == nil || !crl.idp.hasName) && score&scoreIssuerName != 0 {
		return reasons, true
	}
	return 0, false
}

// idpCheckDP is idp_check_dp for full names.
func idpCheckDP(a, b *distPoint) bool {
	if !a.hasName || !b.hasName {
		return true
	}
	for _, x := range a.fullNames {
		for _, y := range b.fullNames {
			if bytes.Equal(x, y) {
				return true
			}
		}
	}
	return false
}

// crlStore is where CRLs and the certificates that come with them are
// found: those loaded from files at NewVerifier, and OpenSSL hashed
// directories read on every lookup.
type crlStore struct {
	crls []*crlInfo
	dirs []string
}

// lookupCRLs returns the CRLs whose issuer name is name: the preloaded ones
// and, from each directory, <hash>.r0, <hash>.r1, … until a file is missing
// or cannot be loaded (by_dir.c get_cert_by_subject). PostgreSQL forks a
// backend per connection from a postmaster that never looked in the
// directory, so every connection reads the directory afresh: a new or
// replaced file applies to the next handshake without a reload.
func (s *crlStore) lookupCRLs(name []byte, hash uint32) []*crlInfo {
	var out []*crlInfo
	for _, c := range s.crls {
		if bytes.Equal(c.issuer, name) {
			out = append(out, c)
		}
	}
	for _, d := range s.dirs {
		for k := 0; ; k++ {
			p := filepath.Join(d, HashedCRLName(hash, k))
			data, err := os.ReadFile(p)
			if err != nil {
				break
			}
			crls, _, err := parsePEMBundle(data, false)
			for _, c := range crls {
				if bytes.Equal(c.issuer, name) {
					out = append(out, c)
				}
			}
			if err != nil || len(crls) == 0 {
				break
			}
		}
	}
	return out
}

// lookupDirCerts returns certificates with subject name from <hash>.0,
// <hash>.1, … in the directories: OpenSSL's hashed-directory lookup serves
// certificates as well as CRLs, so CA certificates placed in ssl_crl_dir
// (as `openssl rehash` names them) join the trust store.
func (s *crlStore) lookupDirCerts(name []byte, hash uint32) []*certInfo {
	var out []*certInfo
	for _, d := range s.dirs {
		for k := 0; ; k++ {
			data, err := os.ReadFile(filepath.Join(d, hashedCertName(hash, k)))
			if err != nil {
				break
			}
			_, certs, err := parsePEMBundle(data, true)
			for _, c := range certs {
				if bytes.Equal(c.subject, name) {
					out = append(out, c)
				}
			}
			if err != nil || len(certs) == 0 {
				break
			}
		}
	}
	return out
}

// parsePEMBundle reads the certificates and CRLs of a PEM file, as
// PEM_X509_INFO_read_bio does for X509_load_cert_crl_file. Other PEM
// blocks are skipped. On a malformed certificate or CRL it returns what it
// had read before, with the error.
func parsePEMBundle(data []byte, wantCerts bool) ([]*crlInfo, []*certInfo, error) {
	var crls []*crlInfo
	var certs []*certInfo
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return crls, certs, nil
		}
		switch b.Type {
		case "CERTIFICATE", "X509 CERTIFICATE":
			if !wantCerts {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return crls, certs, err
			}
			ci, err := newCertInfo(c)
			if err != nil {
				return crls, certs, err
			}
			certs = append(certs, ci)
		case "TRUSTED CERTIFICATE":
			if wantCerts {
				// OpenSSL's auxiliary trust settings (-addtrust/-addreject)
				// change what an anchor is; refuse rather than guess.
				return crls, certs, errors.New("TRUSTED CERTIFICATE blocks (OpenSSL trust settings) are not supported")
			}
		case "X509 CRL":
			rl, err := parseCRL(b.Bytes)
			if err != nil {
				return crls, certs, err
			}
			ci, err := newCRLInfo(rl)
			if err != nil {
				return crls, certs, err
			}
			crls = append(crls, ci)
		}
	}
}

// isRevoked is X509_CRL_get0_by_cert followed by cert_crl's
// removeFromCRL exception.
func (c *crlInfo) isRevoked(serial *big.Int) bool {
	reason, ok := c.revoked[serial.String()]
	return ok && reason != reasonRemoveFromCRL
}

// splitDirs splits a directory list the way by_dir's add_cert_dir does
// (':' separated, empty entries ignored).
func splitDirs(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ":") {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// CRLNextUpdates returns, per CRL issuer (its RFC 2253 DN), the latest
// nextUpdate among the CRLs the verifier loaded from ssl_ca_file and
// ssl_crl_file: what an expiry alert needs, since an expired CRL fails
// every handshake for its issuer's certificates.
func (v *Verifier) CRLNextUpdates() map[string]time.Time {
	return nextUpdates(v.crls.crls)
}

// CRLFileNextUpdates is CRLNextUpdates for one PEM file's contents (an
// ssl_crl_dir entry), read with the parser verification uses.
func CRLFileNextUpdates(data []byte) map[string]time.Time {
	crls, _, _ := parsePEMBundle(data, false)
	return nextUpdates(crls)
}

func nextUpdates(crls []*crlInfo) map[string]time.Time {
	out := make(map[string]time.Time)
	for _, c := range crls {
		if c.crl.NextUpdate.IsZero() {
			continue
		}
		issuer, err := FormatDN(c.crl.RawIssuer)
		if err != nil {
			continue
		}
		if c.crl.NextUpdate.After(out[issuer]) {
			out[issuer] = c.crl.NextUpdate
		}
	}
	return out
}
