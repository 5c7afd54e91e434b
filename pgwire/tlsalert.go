package pgwire

// The TLS alert for a client certificate that fails verification.
//
// crypto/tls answers every error from VerifyConnection with bad_certificate
// and offers no way to choose another alert. PostgreSQL's OpenSSL names the
// reason (unknown_ca, certificate_revoked, certificate_expired, …; see
// certauth.Reason.Alert), and libpq prints it: "SSL error: tlsv1 alert
// unknown ca". So the transport under the tls.Conn rewrites that one record
// on its way out:
//
//   - TLS 1.2: the server verifies the client's certificate before it sends
//     its ChangeCipherSpec, so the alert is a plaintext record: its
//     description byte is replaced.
//   - TLS 1.3: crypto/tls switches its writes to
//     server_application_traffic_secret_0 right after its Finished, before
//     it reads the client's Certificate, and when it asked for a
//     certificate it sends no session ticket until the certificate is
//     verified. The alert is therefore the first record under that secret,
//     sequence number 0 (RFC 8446 §5.3). KeyLogWriter hands the secret over
//     when it is derived; the transport opens the record with it, checks
//     that it is exactly crypto/tls's fatal bad_certificate alert, and
//     seals OpenSSL's alert in its place.
//
// Nothing else is ever rewritten. The transport is armed only when
// VerifyConnection returned an error that names an alert, and only for the
// next Write; a Write that is not exactly that one record, or that does not
// open under the secret, goes out untouched, and the client sees
// bad_certificate as it would without all this. The secret is wiped as soon
// as it is used or known to be unneeded, and when the handshake ends.
//
// Key logging makes crypto/tls format its handshake and traffic secrets
// into short-lived buffers the transport does not own and cannot wipe.
// crypto/tls keeps the same secrets for the connection's life (for key
// updates and exporters), so this exposes nothing a reader of the
// process's memory could not already find.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/pgcertgate/pgcertgate/certauth"
)

// serverHandshake runs the server side of the TLS handshake over t. When
// cfg verifies client certificates, a verification failure ends the
// handshake with the alert OpenSSL would send rather than crypto/tls's
// bad_certificate. cfg is not modified.
func serverHandshake(t *transport, cfg *tls.Config) (*tls.Conn, error) {
	if cfg.VerifyConnection == nil {
		tc := tls.Server(t, cfg)
		return tc, tc.Handshake()
	}
	a := &alertRewrite{}
	verify := cfg.VerifyConnection
	cfg = cfg.Clone()
	cfg.KeyLogWriter = a
	// Every return of the verifier settles the transport: armed after an
	// error, disarmed (and the secret wiped) after an accepted
	// certificate. No other code arms it.
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		a.settle(cs, err)
		return err
	}
	t.alerts = a
	tc := tls.Server(t, cfg)
	err := tc.Handshake()
	// The relay's writes then never look at the alert state.
	t.alerts = nil
	a.end()
	return tc, err
}

// alertFor is the alert OpenSSL sends for a verification error (from
// certauth.VerifyError.Alert), or 0 when err names none: crypto/tls's
// bad_certificate then stands.
func alertFor(err error) uint8 {
	if a, ok := errors.AsType[interface {
		error
		Alert() uint8
	}](err); ok {
		return a.Alert()
	}
	return 0
}

// maxSecretLen is the largest TLS 1.3 traffic secret: SHA-384's size.
const maxSecretLen = sha512.Size384

// alertRewrite is one handshake's state for replacing crypto/tls's
// bad_certificate alert. crypto/tls calls it from the handshake's
// goroutine; the mutex keeps that an implementation detail.
type alertRewrite struct {
	mu sync.Mutex
	// secret[:secretLen] is server_application_traffic_secret_0 (TLS 1.3),
	// from the key log.
	secret    [maxSecretLen]byte
	secretLen int
	// desc is the alert to send in place of bad_certificate, 0 when not
	// armed; version and suite are the handshake's.
	desc           uint8
	version, suite uint16
	// ended: the handshake is over and no secret may be kept.
	ended bool
}

// serverTrafficLabel is the key log label (NSS key log format) of
// server_application_traffic_secret_0.
const serverTrafficLabel = "SERVER_TRAFFIC_SECRET_0 "

// Write is the connection's tls.Config.KeyLogWriter. It keeps
// SERVER_TRAFFIC_SECRET_0 and ignores every other line (the TLS 1.2
// master secret and the other TLS 1.3 secrets are never copied). It never
// fails: an error here would fail the handshake.
func (a *alertRewrite) Write(line []byte) (int, error) {
	rest, ok := bytes.CutPrefix(line, []byte(serverTrafficLabel))
	if !ok {
		return len(line), nil
	}
	// "<client random> <secret>\n"; the writer is this connection's
	// own, so the client random needs no check.
	_, secretHex, ok := bytes.Cut(rest, []byte{' '})
	secretHex = bytes.TrimSuffix(secretHex, []byte{'\n'})
	a.mu.Lock()
	defer a.mu.Unlock()
	a.wipeLocked()
	if !ok || a.ended || len(secretHex) > 2*maxSecretLen {
		return len(line), nil
	}
	n, err := hex.Decode(a.secret[:], secretHex)
	if err != nil {
		a.wipeLocked()
		return len(line), nil
	}
	a.secretLen = n
	return len(line), nil
}

// settle records the verifier's verdict: err's alert arms the rewrite of
// the next record; an accepted certificate disarms it and wipes the
// secret, which is then never needed.
func (a *alertRewrite) settle(cs tls.ConnectionState, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.desc = 0
	if err == nil {
		a.wipeLocked()
		return
	}
	desc := alertFor(err)
	if desc == 0 || desc == certauth.AlertBadCertificate {
		a.wipeLocked()
		return
	}
	a.desc, a.version, a.suite = desc, cs.Version, cs.CipherSuite
}

// rewrite returns what to write for p: p itself, or, when armed and p is
// exactly crypto/tls's bad_certificate alert record, a copy carrying the
// armed alert. It disarms and wipes the secret whatever p is: only the
// record that follows the verifier's error is ever considered.
func (a *alertRewrite) rewrite(p []byte) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.desc == 0 {
		return p
	}
	desc := a.desc
	a.desc = 0
	defer a.wipeLocked()
	if out := resealAlert(p, a.version, a.suite, a.secret[:a.secretLen], desc); out != nil {
		return out
	}
	return p
}

// end is called once the handshake is over: it disarms, wipes the secret
// and ignores any later key log line.
func (a *alertRewrite) end() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ended = true
	a.desc = 0
	a.wipeLocked()
}

func (a *alertRewrite) wipeLocked() {
	clear(a.secret[:])
	a.secretLen = 0
}

// TLS record layer constants (RFC 8446 §5, RFC 5246 §6.2 and §7.2).
const (
	recordHeaderLen           = 5
	recordTypeAlert           = 21
	recordTypeApplicationData = 23
	alertLevelFatal           = 2
	// The record version crypto/tls writes for TLS 1.2 and, as
	// legacy_record_version, for TLS 1.3.
	recordVersionTLS12 = 0x0303
)

// resealAlert returns a copy of rec with its alert description set to
// desc, when rec is exactly one record holding crypto/tls's fatal
// bad_certificate alert as a server of this version sends it: in
// plaintext (TLS 1.2), or protected with secret, the server's application
// traffic secret for cipher suite suite, at sequence number 0 (TLS 1.3).
// For anything else it returns nil. rec is never modified.
func resealAlert(rec []byte, version, suite uint16, secret []byte, desc uint8) []byte {
	if len(rec) < recordHeaderLen ||
		binary.BigEndian.Uint16(rec[1:3]) != recordVersionTLS12 ||
		int(binary.BigEndian.Uint16(rec[3:5])) != len(rec)-recordHeaderLen {
		return nil
	}
	header := rec[:recordHeaderLen]
	switch version {
	case tls.VersionTLS12:
		if rec[0] != recordTypeAlert || len(rec) != recordHeaderLen+2 ||
			rec[5] != alertLevelFatal || rec[6] != certauth.AlertBadCertificate {
			return nil
		}
		out := bytes.Clone(rec)
		out[6] = desc
		return out
	case tls.VersionTLS13:
		if rec[0] != recordTypeApplicationData {
			return nil
		}
		aead, nonce, err := trafficAEAD(suite, secret)
		if err != nil {
			return nil
		}
		defer clear(nonce)
		// TLSInnerPlaintext: the alert, then its real content type;
		// crypto/tls adds no padding.
		if len(rec) != recordHeaderLen+3+aead.Overhead() {
			return nil
		}
		plain, err := aead.Open(nil, nonce, rec[recordHeaderLen:], header)
		if err != nil || !bytes.Equal(plain, []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert}) {
			return nil
		}
		plain[1] = desc
		return aead.Seal(bytes.Clone(header), nonce, plain, header)
	}
	return nil
}

// trafficAEAD returns the record protection for a TLS 1.3 traffic secret
// (RFC 8446 §7.3) and the nonce of the record with sequence number 0,
// which is the write IV itself.
func trafficAEAD(suite uint16, secret []byte) (cipher.AEAD, []byte, error) {
	var h func() hash.Hash
	var keyLen int
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		h, keyLen = sha256.New, 16
	case tls.TLS_AES_256_GCM_SHA384:
		h, keyLen = sha512.New384, 32
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		h, keyLen = sha256.New, chacha20poly1305.KeySize
	default:
		return nil, nil, errors.New("not a TLS 1.3 cipher suite")
	}
	if len(secret) != h().Size() {
		return nil, nil, errors.New("traffic secret of the wrong size")
	}
	key, err := expandLabel(h, secret, "key", keyLen)
	if err != nil {
		return nil, nil, err
	}
	defer clear(key)
	iv, err := expandLabel(h, secret, "iv", 12)
	if err != nil {
		return nil, nil, err
	}
	var aead cipher.AEAD
	if suite == tls.TLS_CHACHA20_POLY1305_SHA256 {
		aead, err = chacha20poly1305.New(key)
	} else {
		var block cipher.Block
		if block, err = aes.NewCipher(key); err == nil {
			aead, err = cipher.NewGCM(block)
		}
	}
	if err != nil {
		clear(iv)
		return nil, nil, err
	}
	return aead, iv, nil
}

// expandLabel is HKDF-Expand-Label with an empty context (RFC 8446 §7.1).
func expandLabel(h func() hash.Hash, secret []byte, label string, length int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0) // context length
	return hkdf.Expand(h, secret, string(info), length)
}
