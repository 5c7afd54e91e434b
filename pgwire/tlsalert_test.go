package pgwire

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// alertPKI is a root with a server and a client certificate. Whether the
// client's certificate "fails" is up to each test's VerifyConnection.
type alertPKI struct {
	root           *testpki.CA
	server, client *testpki.Leaf
}

func newAlertPKI(t *testing.T) *alertPKI {
	t.Helper()
	root, err := testpki.NewRootCA(pkix.Name{CommonName: "alert root"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := root.NewServer("localhost", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := root.NewClient(pkix.Name{CommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	return &alertPKI{root: root, server: srv, client: cli}
}

// wireRecorder keeps what the server wrote to the socket, after the
// transport.
type wireRecorder struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (w *wireRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, bytes.Clone(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

func (w *wireRecorder) last() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.writes) == 0 {
		return nil
	}
	return w.writes[len(w.writes)-1]
}

// alertResult is one handshake between a Go client and serverHandshake.
type alertResult struct {
	clientErr error // the client's handshake, or its first read
	serverErr error
	suite     uint16
	version   uint16
	lastWrite []byte // the server's last write to the socket
}

// alertHandshake connects a Go TLS client presenting p.client to
// serverHandshake, whose VerifyConnection returns verifyErr.
func alertHandshake(t *testing.T, p *alertPKI, version uint16, suites12 []uint16, verifyErr error) alertResult {
	t.Helper()
	craw, sraw := tcpPair(t)
	for _, c := range []net.Conn{craw, sraw} {
		_ = c.SetDeadline(time.Now().Add(time.Minute))
	}
	rec := &wireRecorder{Conn: sraw}
	scfg := &tls.Config{
		Certificates:           []tls.Certificate{p.server.TLSCertificate()},
		MinVersion:             version,
		MaxVersion:             version,
		ClientAuth:             tls.RequestClientCert,
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			return verifyErr
		},
	}
	var res alertResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		tc, err := serverHandshake(newTransport(rec, nil), scfg)
		res.serverErr = err
		if err == nil {
			// A session: the client must read this, untouched.
			_, _ = tc.Write([]byte("accepted"))
		}
		sraw.Close()
	}()
	ccfg := &tls.Config{
		ServerName:   "localhost",
		RootCAs:      p.root.Pool(),
		Certificates: []tls.Certificate{p.client.TLSCertificate()},
		MinVersion:   version,
		MaxVersion:   version,
		CipherSuites: suites12,
	}
	cc := tls.Client(craw, ccfg)
	err := cc.Handshake()
	if err == nil {
		// TLS 1.3: the client's handshake is done before the server
		// has read its certificate; the alert comes with the first read.
		cs := cc.ConnectionState()
		res.suite, res.version = cs.CipherSuite, cs.Version
		buf := make([]byte, len("accepted"))
		if _, err = io.ReadFull(cc, buf); err == nil && string(buf) != "accepted" {
			err = fmt.Errorf("read %q", buf)
		}
	}
	res.clientErr = err
	<-done
	res.lastWrite = rec.last()
	return res
}

// goAlertText is crypto/tls's name for each alert, as its client reports
// a received one ("remote error: tls: …").
var goAlertText = map[uint8]string{
	certauth.AlertBadCertificate:         "bad certificate",
	certauth.AlertUnsupportedCertificate: "unsupported certificate",
	certauth.AlertCertificateRevoked:     "revoked certificate",
	certauth.AlertCertificateExpired:     "expired certificate",
	certauth.AlertCertificateUnknown:     "unknown certificate",
	certauth.AlertUnknownCA:              "unknown certificate authority",
	certauth.AlertDecryptError:           "error decrypting message",
}

// wantTLS13SuiteEnv names the TLS 1.3 cipher suite TestVerifyAlertGoClient
// must negotiate; TestVerifyAlertChaCha20 sets it in a child process.
const wantTLS13SuiteEnv = "PGCERTGATE_TEST_TLS13_SUITE"

// TestVerifyAlertGoClient: a Go client, which decrypts and names the
// alert it receives, sees the alert of the verification error (sealed by
// the transport under TLS 1.3), bad_certificate for an error that names
// none, and an untouched session for an accepted certificate.
func TestVerifyAlertGoClient(t *testing.T) {
	p := newAlertPKI(t)
	verr := func(r certauth.Reason) error { return &certauth.VerifyError{Reason: r} }
	cases := []struct {
		name string
		err  error
		want uint8 // 0: accepted
	}{
		{"unknown CA", verr(certauth.UnableToGetIssuerCertLocally), certauth.AlertUnknownCA},
		{"revoked", verr(certauth.CertRevoked), certauth.AlertCertificateRevoked},
		{"expired", verr(certauth.CertHasExpired), certauth.AlertCertificateExpired},
		{"wrong purpose", verr(certauth.InvalidPurpose), certauth.AlertUnsupportedCertificate},
		{"bad signature", verr(certauth.CertSignatureFailure), certauth.AlertDecryptError},
		{"other reason", verr(certauth.PermittedViolation), certauth.AlertCertificateUnknown},
		{"wrapped", fmt.Errorf("verifier: %w", verr(certauth.CertRevoked)), certauth.AlertCertificateRevoked},
		{"not yet valid: bad_certificate already", verr(certauth.CertNotYetValid), certauth.AlertBadCertificate},
		{"error naming no alert", errors.New("too large"), certauth.AlertBadCertificate},
		{"accepted", nil, 0},
	}
	wantSuite := os.Getenv(wantTLS13SuiteEnv)
	for _, v := range []struct {
		name     string
		version  uint16
		suites12 []uint16
	}{
		{"TLS 1.2 AES-GCM", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
		{"TLS 1.2 ChaCha20", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
		{"TLS 1.3", tls.VersionTLS13, nil},
	} {
		for _, tc := range cases {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				res := alertHandshake(t, p, v.version, v.suites12, tc.err)
				if v.version == tls.VersionTLS13 {
					if res.version != tls.VersionTLS13 {
						t.Fatalf("negotiated %#x, client error %v", res.version, res.clientErr)
					}
					t.Logf("suite %s", tls.CipherSuiteName(res.suite))
					if wantSuite != "" && tls.CipherSuiteName(res.suite) != wantSuite {
						t.Fatalf("negotiated %s, want %s", tls.CipherSuiteName(res.suite), wantSuite)
					}
				}
				if tc.want == 0 {
					if res.clientErr != nil || res.serverErr != nil {
						t.Fatalf("accepted certificate: client %v, server %v", res.clientErr, res.serverErr)
					}
					return
				}
				if !errors.Is(res.serverErr, tc.err) {
					t.Errorf("server error %v, want the verifier's %v", res.serverErr, tc.err)
				}
				want := "remote error: tls: " + goAlertText[tc.want]
				if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), want) {
					t.Fatalf("client got %v, want %q", res.clientErr, want)
				}
			})
		}
	}
}

// TestVerifyAlertChaCha20 runs TestVerifyAlertGoClient in a child process
// without AES hardware support, where crypto/tls prefers
// TLS_CHACHA20_POLY1305_SHA256 on both sides: a Go client cannot otherwise
// be made to offer ChaCha20 first under TLS 1.3.
func TestVerifyAlertChaCha20(t *testing.T) {
	if os.Getenv(wantTLS13SuiteEnv) != "" {
		t.Skip("in the child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestVerifyAlertGoClient$", "-test.count=1", "-test.v")
	godebug := "cpu.aes=off"
	if g := os.Getenv("GODEBUG"); g != "" {
		godebug = g + "," + godebug
	}
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug, wantTLS13SuiteEnv+"=TLS_CHACHA20_POLY1305_SHA256")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestVerifyAlertGoClient") ||
		!strings.Contains(string(out), "suite TLS_CHACHA20_POLY1305_SHA256") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// captureAlert makes crypto/tls (no transport, no rewrite) refuse a client
// certificate under TLS 1.3 with bad_certificate, and returns that record
// as it went on the wire, with server_application_traffic_secret_0 from
// its key log and the cipher suite.
func captureAlert(t *testing.T, p *alertPKI) (rec, secret []byte, suite uint16) {
	t.Helper()
	craw, sraw := tcpPair(t)
	for _, c := range []net.Conn{craw, sraw} {
		_ = c.SetDeadline(time.Now().Add(time.Minute))
	}
	wire := &wireRecorder{Conn: sraw}
	var keylog bytes.Buffer
	scfg := &tls.Config{
		Certificates: []tls.Certificate{p.server.TLSCertificate()},
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequestClientCert,
		KeyLogWriter: &keylog,
		VerifyConnection: func(tls.ConnectionState) error {
			return &certauth.VerifyError{Reason: certauth.CertRevoked}
		},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Server(wire, scfg).Handshake()
		sraw.Close()
	}()
	cc := tls.Client(craw, &tls.Config{ServerName: "localhost", RootCAs: p.root.Pool(), Certificates: []tls.Certificate{p.client.TLSCertificate()}})
	if err := cc.Handshake(); err != nil {
		t.Fatal(err)
	}
	suite = cc.ConnectionState().CipherSuite
	_, _ = cc.Read(make([]byte, 1))
	<-done
	for line := range strings.Lines(keylog.String()) {
		if rest, ok := strings.CutPrefix(line, serverTrafficLabel); ok {
			_, h, _ := strings.Cut(strings.TrimSpace(rest), " ")
			var err error
			if secret, err = hex.DecodeString(h); err != nil {
				t.Fatal(err)
			}
		}
	}
	if secret == nil {
		t.Fatal("no SERVER_TRAFFIC_SECRET_0 in the key log")
	}
	return wire.last(), secret, suite
}

// TestResealAlertCryptoTLSRecord: the record crypto/tls itself sealed
// under TLS 1.3 opens with the secret its key log gave, is recognised as
// bad_certificate, and the alert sealed in its place decrypts to the new
// description; the record at sequence 1, or under another secret, does
// not open.
func TestResealAlertCryptoTLSRecord(t *testing.T) {
	p := newAlertPKI(t)
	rec, secret, suite := captureAlert(t, p)
	if len(rec) != recordHeaderLen+3+16 || rec[0] != recordTypeApplicationData {
		t.Fatalf("crypto/tls's alert record is % x", rec)
	}
	out := resealAlert(rec, tls.VersionTLS13, suite, secret, certauth.AlertUnknownCA)
	if out == nil {
		t.Fatalf("%s: crypto/tls's bad_certificate record not recognised", tls.CipherSuiteName(suite))
	}
	if got := openRecord(t, suite, secret, 0, out); !bytes.Equal(got, []byte{alertLevelFatal, certauth.AlertUnknownCA, recordTypeAlert}) {
		t.Errorf("resealed record holds % x", got)
	}
	other := bytes.Clone(secret)
	other[0] ^= 1
	if resealAlert(rec, tls.VersionTLS13, suite, other, certauth.AlertUnknownCA) != nil {
		t.Error("record accepted under another secret")
	}
	if resealAlert(sealRecord(t, suite, secret, 1, []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert}), tls.VersionTLS13, suite, secret, certauth.AlertUnknownCA) != nil {
		t.Error("record at sequence 1 accepted")
	}
}

// Alert records crypto/tls sealed as a TLS 1.3 server refusing a client
// certificate, with the SERVER_TRAFFIC_SECRET_0 its key log gave: a Go
// client only ever gets AES-128-GCM from a Go server on AES hardware, so
// the AES-256-GCM one was captured with openssl s_client
// -ciphersuites TLS_AES_256_GCM_SHA384 as the client, and the ChaCha20 one
// under GODEBUG=cpu.aes=off. The same records seed FuzzAlertRecord.
var cryptoTLSAlertRecords = []struct {
	suite       uint16
	secret, rec string // hex
}{
	{tls.TLS_AES_128_GCM_SHA256, "c53c6596edb58f2a7997f60e4e7688d90bb106d749b5ea75134cab594500c45b", "17030300138350c5a58a5ec1e7a0e24a6c104050bc1a2b32"},
	{tls.TLS_AES_256_GCM_SHA384, "c61ce0ce9c6c6130e8c2fe07ec602bad6271a1f21cf3bb1aec3931fd98797a2dc877ee89b5dc005ce5ed6a0a18657392", "1703030013c19f622b3098482490f4412e1fab979a0775e5"},
	{tls.TLS_CHACHA20_POLY1305_SHA256, "7c37bb7a580cbb4c303bea616a2599b28fe473dd864bc6bcbc1a4a76acff11d3", "1703030013c6ffaf6e59b059d7d3a95be6755aea16a5d2f1"},
}

// TestResealAlertCapturedRecords: for every TLS 1.3 cipher suite, the key
// and IV derived from the secret open crypto/tls's own bad_certificate
// record.
func TestResealAlertCapturedRecords(t *testing.T) {
	for _, c := range cryptoTLSAlertRecords {
		t.Run(tls.CipherSuiteName(c.suite), func(t *testing.T) {
			secret, _ := hex.DecodeString(c.secret)
			rec, _ := hex.DecodeString(c.rec)
			out := resealAlert(rec, tls.VersionTLS13, c.suite, secret, certauth.AlertCertificateRevoked)
			if out == nil {
				t.Fatal("crypto/tls's bad_certificate record not recognised")
			}
			if got := openRecord(t, c.suite, secret, 0, out); !bytes.Equal(got, []byte{alertLevelFatal, certauth.AlertCertificateRevoked, recordTypeAlert}) {
				t.Errorf("resealed record holds % x", got)
			}
		})
	}
}

// sealRecord protects inner (a TLSInnerPlaintext) as a TLS 1.3 record at
// sequence number seq.
func sealRecord(t testing.TB, suite uint16, secret []byte, seq uint64, inner []byte) []byte {
	t.Helper()
	aead, nonce, err := trafficAEAD(suite, secret)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		nonce[len(nonce)-1-i] ^= byte(seq >> (8 * i))
	}
	hdr := []byte{recordTypeApplicationData, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+aead.Overhead()))
	return aead.Seal(hdr, nonce, inner, hdr)
}

// openRecord opens a TLS 1.3 record at sequence number seq, nil if it
// does not open (or suite and secret are not a TLS 1.3 pair).
func openRecord(t testing.TB, suite uint16, secret []byte, seq uint64, rec []byte) []byte {
	t.Helper()
	aead, nonce, err := trafficAEAD(suite, secret)
	if err != nil {
		return nil
	}
	for i := range 8 {
		nonce[len(nonce)-1-i] ^= byte(seq >> (8 * i))
	}
	if len(rec) < recordHeaderLen {
		return nil
	}
	out, err := aead.Open(nil, nonce, rec[recordHeaderLen:], rec[:recordHeaderLen])
	if err != nil {
		return nil
	}
	return out
}

var tls13Suites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

func suiteSecret(t testing.TB, suite uint16) []byte {
	t.Helper()
	n := 32
	if suite == tls.TLS_AES_256_GCM_SHA384 {
		n = 48
	}
	s := make([]byte, n)
	if _, err := rand.Read(s); err != nil {
		t.Fatal(err)
	}
	return s
}

var tls12BadCertificate = []byte{recordTypeAlert, 3, 3, 0, 2, alertLevelFatal, certauth.AlertBadCertificate}

// TestResealAlertLeavesOthers: only crypto/tls's fatal bad_certificate
// alert, alone in the write, is ever rewritten.
func TestResealAlertLeavesOthers(t *testing.T) {
	for _, suite := range tls13Suites {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			secret := suiteSecret(t, suite)
			alert := []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert}
			good := sealRecord(t, suite, secret, 0, alert)
			if out := resealAlert(good, tls.VersionTLS13, suite, secret, certauth.AlertCertificateExpired); out == nil {
				t.Fatal("the bad_certificate alert itself is not rewritten")
			} else if got := openRecord(t, suite, secret, 0, out); !bytes.Equal(got, []byte{alertLevelFatal, certauth.AlertCertificateExpired, recordTypeAlert}) {
				t.Fatalf("rewritten to % x", got)
			}
			for _, tc := range []struct {
				name string
				rec  []byte
			}{
				{"application data", sealRecord(t, suite, secret, 0, []byte("Z\x00\x00\x00\x05I\x17"))},
				{"three bytes of application data", sealRecord(t, suite, secret, 0, []byte{2, 42, recordTypeApplicationData})},
				{"handshake message", sealRecord(t, suite, secret, 0, []byte{4, 0, 0, 0, 22})},
				{"close_notify", sealRecord(t, suite, secret, 0, []byte{1, 0, recordTypeAlert})},
				{"another fatal alert", sealRecord(t, suite, secret, 0, []byte{alertLevelFatal, certauth.AlertDecryptError, recordTypeAlert})},
				{"warning bad_certificate", sealRecord(t, suite, secret, 0, []byte{1, certauth.AlertBadCertificate, recordTypeAlert})},
				{"padded alert", sealRecord(t, suite, secret, 0, []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert, 0})},
				{"sequence 1", sealRecord(t, suite, secret, 1, alert)},
				{"tampered tag", func() []byte { r := bytes.Clone(good); r[len(r)-1] ^= 1; return r }()},
				{"wrong outer type", func() []byte { r := bytes.Clone(good); r[0] = recordTypeAlert; return r }()},
				{"wrong record version", func() []byte { r := bytes.Clone(good); r[2] = 1; return r }()},
				{"followed by another record", append(bytes.Clone(good), good...)},
				{"truncated", good[:len(good)-1]},
				{"header only", good[:recordHeaderLen]},
				{"empty", nil},
				{"plaintext TLS 1.2 alert", tls12BadCertificate},
			} {
				before := bytes.Clone(tc.rec)
				if out := resealAlert(tc.rec, tls.VersionTLS13, suite, secret, certauth.AlertUnknownCA); out != nil {
					t.Errorf("%s: rewritten", tc.name)
				}
				if !bytes.Equal(before, tc.rec) {
					t.Errorf("%s: input modified", tc.name)
				}
			}
			if resealAlert(good, tls.VersionTLS13, suite, secret[:len(secret)-1], certauth.AlertUnknownCA) != nil {
				t.Error("secret of the wrong size accepted")
			}
			if resealAlert(good, tls.VersionTLS12, suite, secret, certauth.AlertUnknownCA) != nil {
				t.Error("TLS 1.3 record rewritten as TLS 1.2")
			}
		})
	}
	t.Run("TLS 1.2", func(t *testing.T) {
		out := resealAlert(tls12BadCertificate, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, nil, certauth.AlertUnknownCA)
		if want := []byte{recordTypeAlert, 3, 3, 0, 2, alertLevelFatal, certauth.AlertUnknownCA}; !bytes.Equal(out, want) {
			t.Fatalf("got % x, want % x", out, want)
		}
		for _, tc := range []struct {
			name string
			rec  []byte
		}{
			{"handshake record", []byte{22, 3, 3, 0, 2, alertLevelFatal, certauth.AlertBadCertificate}},
			{"change_cipher_spec", []byte{20, 3, 3, 0, 1, 1}},
			{"another alert", []byte{recordTypeAlert, 3, 3, 0, 2, alertLevelFatal, certauth.AlertHandshakeFailure}},
			{"warning", []byte{recordTypeAlert, 3, 3, 0, 2, 1, certauth.AlertBadCertificate}},
			{"TLS 1.0 record version", []byte{recordTypeAlert, 3, 1, 0, 2, alertLevelFatal, certauth.AlertBadCertificate}},
			{"length mismatch", []byte{recordTypeAlert, 3, 3, 0, 3, alertLevelFatal, certauth.AlertBadCertificate}},
			{"two alerts", append(bytes.Clone(tls12BadCertificate), tls12BadCertificate...)},
			{"truncated", tls12BadCertificate[:6]},
			{"encrypted record", []byte{recordTypeApplicationData, 3, 3, 0, 2, alertLevelFatal, certauth.AlertBadCertificate}},
		} {
			before := bytes.Clone(tc.rec)
			if out := resealAlert(tc.rec, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, nil, certauth.AlertUnknownCA); out != nil {
				t.Errorf("%s: rewritten to % x", tc.name, out)
			}
			if !bytes.Equal(before, tc.rec) {
				t.Errorf("%s: input modified", tc.name)
			}
		}
	})
}

// keyLogLine is a key log line as crypto/tls writes it.
func keyLogLine(label string, secret []byte) []byte {
	return fmt.Appendf(nil, "%s %x %x\n", label, bytes.Repeat([]byte{7}, 32), secret)
}

// TestAlertRewriteState: the transport rewrites at most the one record
// after a verifier's error; an accepted certificate, or an error that
// names no alert, never arms it; and the secret is kept only until it is
// used or known to be unneeded.
func TestAlertRewriteState(t *testing.T) {
	suite := uint16(tls.TLS_AES_128_GCM_SHA256)
	secret := suiteSecret(t, suite)
	alertRec := sealRecord(t, suite, secret, 0, []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert})
	cs13 := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: suite}
	unknownCA := &certauth.VerifyError{Reason: certauth.UnableToGetIssuerCertLocally}
	newState := func(t *testing.T) *alertRewrite {
		a := &alertRewrite{}
		for _, label := range []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"} {
			if n, err := a.Write(keyLogLine(label, bytes.Repeat([]byte{9}, 32))); err != nil || n == 0 {
				t.Fatalf("key log write: %d, %v", n, err)
			}
		}
		if a.secretLen != 0 {
			t.Fatal("a secret other than SERVER_TRAFFIC_SECRET_0 was kept")
		}
		_, _ = a.Write(keyLogLine("SERVER_TRAFFIC_SECRET_0", secret))
		if !bytes.Equal(a.secret[:a.secretLen], secret) {
			t.Fatal("SERVER_TRAFFIC_SECRET_0 not kept")
		}
		return a
	}
	wiped := func(t *testing.T, a *alertRewrite) {
		t.Helper()
		if a.secretLen != 0 || a.secret != [maxSecretLen]byte{} || a.desc != 0 {
			t.Errorf("not wiped and disarmed: len %d, desc %d", a.secretLen, a.desc)
		}
	}
	untouched := func(t *testing.T, a *alertRewrite, p []byte) {
		t.Helper()
		if out := a.rewrite(p); &out[0] != &p[0] || !bytes.Equal(out, p) {
			t.Errorf("record rewritten")
		}
	}

	t.Run("accepted", func(t *testing.T) {
		a := newState(t)
		a.settle(cs13, nil)
		wiped(t, a)
		untouched(t, a, alertRec)
	})
	t.Run("refused then accepted", func(t *testing.T) {
		a := newState(t)
		a.settle(cs13, unknownCA)
		a.settle(cs13, nil)
		wiped(t, a)
		untouched(t, a, alertRec)
	})
	t.Run("refused: one record only", func(t *testing.T) {
		a := newState(t)
		a.settle(cs13, unknownCA)
		out := a.rewrite(alertRec)
		if got := openRecord(t, suite, secret, 0, out); !bytes.Equal(got, []byte{alertLevelFatal, certauth.AlertUnknownCA, recordTypeAlert}) {
			t.Fatalf("rewritten to % x", got)
		}
		wiped(t, a)
		untouched(t, a, alertRec)
	})
	t.Run("refused, next write not the alert", func(t *testing.T) {
		a := newState(t)
		a.settle(cs13, unknownCA)
		untouched(t, a, sealRecord(t, suite, secret, 0, []byte("data\x17")))
		wiped(t, a)
		untouched(t, a, alertRec)
	})
	t.Run("error naming no alert", func(t *testing.T) {
		a := newState(t)
		a.settle(cs13, errors.New("client certificate message too large"))
		wiped(t, a)
		untouched(t, a, alertRec)
	})
	t.Run("bad_certificate already", func(t *testing.T) {
		a := newState(t)
		a.settle(cs13, &certauth.VerifyError{Reason: certauth.CertNotYetValid})
		wiped(t, a)
		untouched(t, a, alertRec)
	})
	t.Run("handshake over", func(t *testing.T) {
		a := newState(t)
		a.end()
		wiped(t, a)
		_, _ = a.Write(keyLogLine("SERVER_TRAFFIC_SECRET_0", secret))
		wiped(t, a)
		a.settle(cs13, unknownCA)
		untouched(t, a, alertRec)
	})
	t.Run("malformed key log lines", func(t *testing.T) {
		for _, line := range []string{
			"SERVER_TRAFFIC_SECRET_0 \n",
			"SERVER_TRAFFIC_SECRET_0 0707 zz\n",
			"SERVER_TRAFFIC_SECRET_0 0707 " + strings.Repeat("ab", maxSecretLen+1) + "\n",
			"SERVER_TRAFFIC_SECRET_0 0707 abc\n",
		} {
			a := newState(t)
			if n, err := a.Write([]byte(line)); n != len(line) || err != nil {
				t.Errorf("%q: %d, %v", line, n, err)
			}
			if a.secretLen != 0 {
				t.Errorf("%q: kept %d bytes", line, a.secretLen)
			}
			a.settle(cs13, unknownCA)
			untouched(t, a, alertRec)
		}
	})
}

// TestTransportWriteUntouched: a transport with no alert state, or armed
// and given something other than the alert, writes exactly what it is
// given.
func TestTransportWriteUntouched(t *testing.T) {
	a, b := tcpPair(t)
	_ = b.SetDeadline(time.Now().Add(time.Minute))
	tr := newTransport(a, nil)
	data := []byte{22, 3, 3, 0, 2, alertLevelFatal, certauth.AlertBadCertificate}
	write := func() {
		t.Helper()
		if n, err := tr.Write(data); n != len(data) || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
		got := make([]byte, len(data))
		if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("wire has % x (%v), want % x", got, err, data)
		}
	}
	write()
	tr.alerts = &alertRewrite{}
	tr.alerts.settle(tls.ConnectionState{Version: tls.VersionTLS12}, &certauth.VerifyError{Reason: certauth.CertRevoked})
	write()
	if tr.alerts.desc != 0 {
		t.Error("still armed after the write")
	}
}

// FuzzAlertRecord: resealAlert never panics and never modifies its input,
// and rewrites exactly crypto/tls's bad_certificate alert. With sealed
// set, body is a TLSInnerPlaintext sealed into a record first, so that
// authentic records of every content reach the check.
func FuzzAlertRecord(f *testing.F) {
	secret32 := bytes.Repeat([]byte{0x5a}, 32)
	secret48 := bytes.Repeat([]byte{0xa5}, 48)
	for _, suite := range tls13Suites {
		s := secret32
		if suite == tls.TLS_AES_256_GCM_SHA384 {
			s = secret48
		}
		f.Add(uint16(tls.VersionTLS13), suite, s, []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert}, true, byte(certauth.AlertUnknownCA))
		f.Add(uint16(tls.VersionTLS13), suite, s, []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert, 0}, true, byte(certauth.AlertUnknownCA))
		f.Add(uint16(tls.VersionTLS13), suite, s, []byte("Z\x00\x00\x00\x05I\x17"), true, byte(certauth.AlertCertificateRevoked))
		f.Add(uint16(tls.VersionTLS13), suite, s, sealRecord(f, suite, s, 0, []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert}), false, byte(certauth.AlertCertificateExpired))
	}
	f.Add(uint16(tls.VersionTLS12), uint16(0), []byte(nil), tls12BadCertificate, false, byte(certauth.AlertUnknownCA))
	f.Add(uint16(tls.VersionTLS12), uint16(0), []byte(nil), []byte{22, 3, 3, 0, 2, 2, 42}, false, byte(certauth.AlertUnknownCA))
	f.Fuzz(func(t *testing.T, version, suite uint16, secret, body []byte, sealed bool, desc byte) {
		rec := body
		if sealed && version == tls.VersionTLS13 {
			if _, _, err := trafficAEAD(suite, secret); err != nil || len(body) > 1<<14 {
				return
			}
			rec = sealRecord(t, suite, secret, 0, body)
		}
		before := bytes.Clone(rec)
		out := resealAlert(rec, version, suite, secret, desc)
		if !bytes.Equal(before, rec) {
			t.Fatal("input modified")
		}
		isAlert := false
		switch version {
		case tls.VersionTLS12:
			isAlert = bytes.Equal(rec, tls12BadCertificate)
		case tls.VersionTLS13:
			inner := openRecord(t, suite, secret, 0, rec)
			isAlert = len(rec) > recordHeaderLen && rec[0] == recordTypeApplicationData && bytes.Equal(inner, []byte{alertLevelFatal, certauth.AlertBadCertificate, recordTypeAlert}) &&
				binary.BigEndian.Uint16(rec[1:3]) == recordVersionTLS12
		}
		if (out != nil) != isAlert {
			t.Fatalf("rewritten: %v, is crypto/tls's bad_certificate alert: %v (% x)", out != nil, isAlert, rec)
		}
		if out == nil {
			return
		}
		if len(out) != len(rec) || !bytes.Equal(out[:recordHeaderLen], rec[:recordHeaderLen]) {
			t.Fatalf("record % x became % x", rec, out)
		}
		var got []byte
		if version == tls.VersionTLS12 {
			got = out[recordHeaderLen:]
			if want := []byte{alertLevelFatal, desc}; !bytes.Equal(got, want) {
				t.Fatalf("rewritten to % x, want % x", got, want)
			}
		} else if got = openRecord(t, suite, secret, 0, out); !bytes.Equal(got, []byte{alertLevelFatal, desc, recordTypeAlert}) {
			t.Fatalf("rewritten to % x", got)
		}
	})
}
