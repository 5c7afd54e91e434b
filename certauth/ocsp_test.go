package certauth

import (
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspPKI is a root, an intermediate, a leaf under each, delegated
// responders of several kinds and an unrelated CA.
type ocspPKI struct {
	root, inter, other          *node
	leaf, interLeaf             *node
	responder, noEKU, expired   *node
	otherResponder, rootSignedR *node
}

func newOCSPPKI(t testing.TB) *ocspPKI {
	p := &ocspPKI{}
	p.root = issue(t, "ocsp root", nil, nil, true)
	p.inter = issue(t, "ocsp intermediate", p.root, nil, true)
	p.other = issue(t, "other root", nil, nil, true)
	p.leaf = issue(t, "alice", p.root, nil, false, withEKU(x509.ExtKeyUsageClientAuth))
	p.interLeaf = issue(t, "bob", p.inter, nil, false, withEKU(x509.ExtKeyUsageClientAuth))
	p.responder = issue(t, "responder", p.root, nil, false, withEKU(x509.ExtKeyUsageOCSPSigning))
	p.noEKU = issue(t, "responder without OCSPSigning", p.root, nil, false, withEKU(x509.ExtKeyUsageClientAuth))
	p.expired = issue(t, "expired responder", p.root, nil, false, withEKU(x509.ExtKeyUsageOCSPSigning),
		withValidity(testNow.Add(-48*time.Hour), testNow.Add(-24*time.Hour)))
	p.otherResponder = issue(t, "other CA's responder", p.other, nil, false, withEKU(x509.ExtKeyUsageOCSPSigning))
	// Issued by the intermediate's name but signed by the root: the
	// issuer check must look at the signature, not just the name.
	p.rootSignedR = issue(t, "responder", p.root, nil, false, withEKU(x509.ExtKeyUsageOCSPSigning))
	return p
}

// ocspSpec describes a response to sign.
type ocspSpec struct {
	status     int
	serial     *big.Int
	this, next time.Time
	noNext     bool
	certIDOf   *node // the issuer named in the CertID (default the real issuer)
	signer     *node // signing key's node (default the issuer)
	embed      *node // certificate to embed (default: signer when delegated)
	noEmbed    bool
}

func makeOCSP(t testing.TB, issuer, leaf *node, s ocspSpec) []byte {
	t.Helper()
	if s.serial == nil {
		s.serial = leaf.cert.SerialNumber
	}
	if s.this.IsZero() {
		s.this = testNow.Add(-time.Hour)
	}
	if s.next.IsZero() && !s.noNext {
		s.next = testNow.Add(24 * time.Hour)
	}
	if s.status == 0 {
		s.status = ocsp.Good
	}
	certIDOf := issuer
	if s.certIDOf != nil {
		certIDOf = s.certIDOf
	}
	signer := issuer
	if s.signer != nil {
		signer = s.signer
	}
	tmpl := ocsp.Response{Status: s.status, SerialNumber: s.serial, ThisUpdate: s.this, NextUpdate: s.next}
	if s.status == ocsp.Revoked {
		tmpl.RevokedAt = testNow.Add(-2 * time.Hour)
	}
	embed := s.embed
	if embed == nil && signer != issuer {
		embed = signer
	}
	if embed != nil && !s.noEmbed {
		tmpl.Certificate = embed.cert
	}
	der, err := ocsp.CreateResponse(certIDOf.cert, signer.cert, tmpl, signer.key.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyOCSPResponse(t *testing.T) {
	p := newOCSPPKI(t)
	good := makeOCSP(t, p.root, p.leaf, ocspSpec{})
	for _, tc := range []struct {
		name      string
		der       []byte
		leaf      *node // default p.leaf
		issuer    *node // default p.root
		want      OCSPStatus
		delegated bool
		err       string // substring of the error; "" for success
		responder bool   // the error is an *OCSPResponderError
	}{
		{name: "good", der: good, want: OCSPStatusGood},
		{name: "revoked", der: makeOCSP(t, p.root, p.leaf, ocspSpec{status: ocsp.Revoked}), want: OCSPStatusRevoked},
		{name: "unknown", der: makeOCSP(t, p.root, p.leaf, ocspSpec{status: ocsp.Unknown}), want: OCSPStatusUnknown},
		{name: "issuer signs and embeds itself", der: makeOCSP(t, p.root, p.leaf, ocspSpec{embed: p.root}), want: OCSPStatusGood},
		{name: "intermediate signs and embeds itself", leaf: p.interLeaf, issuer: p.inter,
			der: makeOCSP(t, p.inter, p.interLeaf, ocspSpec{embed: p.inter}), want: OCSPStatusGood},
		{name: "delegated responder", der: makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.responder}), want: OCSPStatusGood, delegated: true},
		{name: "delegated revoked", der: makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.responder, status: ocsp.Revoked}), want: OCSPStatusRevoked, delegated: true},
		{name: "no nextUpdate, fresh", der: makeOCSP(t, p.root, p.leaf, ocspSpec{noNext: true, this: testNow.Add(-time.Minute)}), want: OCSPStatusGood},
		{name: "nextUpdate passed within the skew", der: makeOCSP(t, p.root, p.leaf, ocspSpec{this: testNow.Add(-time.Hour), next: testNow.Add(-time.Minute)}), want: OCSPStatusGood},

		{name: "responder without OCSPSigning", der: makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.noEKU}), err: "lacks id-kp-OCSPSigning"},
		{name: "expired responder", der: makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.expired}), err: "not valid at"},
		{name: "responder of another CA", der: makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.otherResponder}), err: "not issued by the certificate's issuer"},
		{name: "responder named for the intermediate, signed by root", leaf: p.interLeaf, issuer: p.inter,
			der: makeOCSP(t, p.inter, p.interLeaf, ocspSpec{signer: p.rootSignedR}), err: "not issued by"},
		{name: "wrong key, nothing embedded", der: makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.other, noEmbed: true}), err: "signature"},
		{name: "wrong key, issuer's certificate embedded", der: makeOCSP(t, p.root, p.leaf, ocspSpec{signer: p.other, embed: p.root}), err: "signature"},
		{name: "other serial", der: makeOCSP(t, p.root, p.leaf, ocspSpec{serial: big.NewInt(999999)}), err: "no response matching"},
		{name: "same serial, other issuer's CertID", der: makeOCSP(t, p.root, p.leaf, ocspSpec{certIDOf: p.other}), err: "another issuer"},
		{name: "stale", der: makeOCSP(t, p.root, p.leaf, ocspSpec{this: testNow.Add(-48 * time.Hour), next: testNow.Add(-24 * time.Hour)}), err: "out of date"},
		{name: "no nextUpdate, old", der: makeOCSP(t, p.root, p.leaf, ocspSpec{noNext: true, this: testNow.Add(-3 * time.Hour)}), err: "out of date"},
		{name: "thisUpdate in the future", der: makeOCSP(t, p.root, p.leaf, ocspSpec{this: testNow.Add(time.Hour), next: testNow.Add(48 * time.Hour)}), err: "in the future"},
		{name: "nextUpdate before thisUpdate", der: makeOCSP(t, p.root, p.leaf, ocspSpec{this: testNow.Add(-time.Hour), next: testNow.Add(-2 * time.Hour)}), err: "precedes"},
		{name: "about another certificate", leaf: p.interLeaf, der: good, err: "no response matching"},
		{name: "empty", der: nil, err: "unusable"},
		{name: "garbage", der: []byte("<html>not OCSP</html>"), err: "unusable"},
		{name: "truncated", der: good[:len(good)/2], err: "unusable"},
		{name: "trailing data", der: append(append([]byte{}, good...), 0), err: "trailing"},
		{name: "oversized", der: append(append([]byte{}, good...), make([]byte, MaxOCSPResponseSize)...), err: "exceeds"},
		{name: "tryLater", der: ocsp.TryLaterErrorResponse, err: "try later", responder: true},
		{name: "unauthorized", der: ocsp.UnauthorizedErrorResponse, err: "unauthorized", responder: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, issuer := p.leaf, p.root
			if tc.leaf != nil {
				leaf = tc.leaf
			}
			if tc.issuer != nil {
				issuer = tc.issuer
			}
			ans, err := VerifyOCSPResponse(tc.der, leaf.cert, issuer.cert, testNow, time.Hour)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if ans.Status != tc.want || ans.Delegated != tc.delegated {
					t.Fatalf("got %v delegated=%v, want %v delegated=%v", ans.Status, ans.Delegated, tc.want, tc.delegated)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted (%v), want an error containing %q", ans.Status, tc.err)
			}
			if !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %q does not contain %q", err, tc.err)
			}
			var re *OCSPResponderError
			if got := errors.As(err, &re); got != tc.responder {
				t.Fatalf("OCSPResponderError: %v, want %v (%v)", got, tc.responder, err)
			}
			if !tc.responder && !errors.Is(err, ErrBadOCSPResponse) {
				t.Fatalf("error does not wrap ErrBadOCSPResponse: %v", err)
			}
		})
	}
}

func TestNewOCSPRequest(t *testing.T) {
	p := newOCSPPKI(t)
	der, err := NewOCSPRequest(p.leaf.cert, p.root.cert)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if req.SerialNumber.Cmp(p.leaf.cert.SerialNumber) != 0 || req.HashAlgorithm != crypto.SHA1 {
		t.Fatalf("request: serial %v hash %v", req.SerialNumber, req.HashAlgorithm)
	}
}

func TestRevocationReasons(t *testing.T) {
	for _, tc := range []struct {
		r     Reason
		code  string
		alert uint8
	}{
		{OCSPRevoked, "ocsp_revoked", AlertCertificateRevoked},
		{OCSPUnknown, "ocsp_unknown", AlertUnknownCA},
		{OCSPUnavailable, "ocsp_unavailable", AlertUnknownCA},
		{OCSPBadResponse, "ocsp_bad_response", AlertUnknownCA},
		{CRLStale, "crl_stale", AlertCertificateExpired},
		{CRLUnavailable, "crl_unavailable", AlertUnknownCA},
		{CertRevoked, "", AlertCertificateRevoked},
	} {
		if got := tc.r.RevocationCode(); got != tc.code {
			t.Errorf("%d: code %q, want %q", tc.r, got, tc.code)
		}
		if got := tc.r.Alert(); got != tc.alert {
			t.Errorf("%d: alert %d, want %d", tc.r, got, tc.alert)
		}
		if strings.HasPrefix(tc.r.String(), "X509_V_ERR") {
			t.Errorf("%d has no text", tc.r)
		}
	}
}
