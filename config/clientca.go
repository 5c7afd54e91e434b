package config

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/identmap"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// Client CA sets: the CAs a pg_hba.conf line requires with clientca=, the
// inline ssl_ca, and the key-usage and chain-depth policies. All are
// pgcertgate extensions; a configuration without them loads and behaves
// as PostgreSQL's ssl_ca_file does.

// ClientCASet is a [client_ca.NAME] table: a CA set that pg_hba.conf lines
// require with clientca=@NAME.
type ClientCASet struct {
	// File is a PEM file of CA certificates. Exactly one of File and PEM
	// is set.
	File string `toml:"file"`
	// PEM is the certificates inline: PEM text, or PEM as base64 on one
	// line (a Kubernetes Secret's data).
	PEM string `toml:"pem"`
	// CRLFile and CRLDir are the set's own CRLs, with ssl_crl_file's and
	// ssl_crl_dir's meaning: with either, every certificate of a chain
	// this set verifies needs a CRL from its issuer. Empty means the set
	// checks no CRLs; ssl_crl_file and ssl_crl_dir never apply to it.
	CRLFile string `toml:"crl_file"`
	CRLDir  string `toml:"crl_dir"`
}

// maxVerifyDepth bounds ssl_verify_depth at OpenSSL's default: a longer
// chain is no longer a configuration but an attack on the verifier.
const maxVerifyDepth = certauth.DefaultVerifyDepth

func (c *Config) resolveClientCAPaths(dir string) {
	for name, s := range c.ClientCA {
		for _, p := range []*string{&s.File, &s.CRLFile, &s.CRLDir} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
		c.ClientCA[name] = s
	}
}

// validateClientCA checks the CA keys for what needs no file read.
func (c *Config) validateClientCA() []error {
	errs := c.clientCAShape()
	bad := func(key toml.Key, format string, args ...any) {
		errs = append(errs, c.errorAt(key, format, args...))
	}
	if c.SSLCA != "" && c.SSLCAFile != "" {
		bad(toml.Key{"ssl_ca"}, "set together with ssl_ca_file: use one of them")
	} else if c.SSLCA != "" {
		if _, err := decodeInlinePEM(c.SSLCA); err != nil {
			bad(toml.Key{"ssl_ca"}, "%v", err)
		}
	}
	if _, ok := certauth.ParseKeyUsagePolicy(c.SSLClientKeyUsage); !ok && c.SSLClientKeyUsage != "" {
		bad(toml.Key{"ssl_client_key_usage"}, "%q (openssl or require)", c.SSLClientKeyUsage)
	}
	if c.SSLVerifyDepth < 0 || c.SSLVerifyDepth > maxVerifyDepth {
		bad(toml.Key{"ssl_verify_depth"}, "%d is outside the valid range 0..%d", c.SSLVerifyDepth, maxVerifyDepth)
	}
	for _, name := range sortedKeys(c.ClientCA) {
		s := c.ClientCA[name]
		key := toml.Key{"client_ca", name}
		switch {
		case !hba.ValidCASetName(name):
			bad(key, "%q is not a CA set name: use letters, digits, \"_\" and \"-\" (pg_hba.conf names it clientca=@NAME)", name)
		case s.File != "" && s.PEM != "":
			bad(append(key, "pem"), "set together with file: use one of them")
		case s.File == "" && s.PEM == "":
			bad(key, "needs file or pem: the CA certificates of the set")
		case s.PEM != "":
			if _, err := decodeInlinePEM(s.PEM); err != nil {
				bad(append(key, "pem"), "%v", err)
			}
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// decodeInlinePEM reads an inline CA value: PEM text, or the PEM text
// encoded as base64 (standard alphabet, padded or not; white space is
// ignored, so a value wrapped by an editor still reads). It must hold at
// least one certificate.
func decodeInlinePEM(text string) ([]byte, error) {
	data := []byte(text)
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		compact := strings.Join(strings.Fields(text), "")
		dec, err := base64.StdEncoding.DecodeString(compact)
		if err != nil {
			dec, err = base64.RawStdEncoding.DecodeString(compact)
		}
		if err != nil {
			return nil, fmt.Errorf("neither PEM text nor base64: %v", err)
		}
		if !bytes.Contains(dec, []byte("-----BEGIN")) {
			return nil, errors.New("the base64 text does not decode to PEM: encode the PEM file itself (base64 -w0 ca.crt)")
		}
		data = dec
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("holds no PEM certificate")
		}
		if b.Type == "CERTIFICATE" || b.Type == "X509 CERTIFICATE" {
			return data, nil
		}
	}
}

// keyUsagePolicy is ssl_client_key_usage, validated.
func (c *Config) keyUsagePolicy() certauth.KeyUsagePolicy {
	p, _ := certauth.ParseKeyUsagePolicy(c.SSLClientKeyUsage)
	return p
}

// caSource is one CA set as the configuration gives it: its certificates
// (a PEM file, or inline text) and its CRLs, with where a load error
// belongs.
type caSource struct {
	file string
	// inline is PEM text, or PEM as base64, used instead of file; label
	// names it in certauth's errors.
	inline, label   string
	crlFile, crlDir string
	// fault places a load error: about the certificates, or (crl) about
	// the CRL file.
	fault func(crl bool, err error) error
}

// loadCASet is the one loader of CA sets: ssl_ca_file or ssl_ca,
// [client_ca.NAME] tables and clientca= files, all with ssl_verify_depth.
func (c *Config) loadCASet(src caSource) (*certauth.Verifier, error) {
	depth := c.SSLVerifyDepth
	cfg := certauth.Config{CAFile: src.file, CRLFile: src.crlFile, CRLDir: src.crlDir, VerifyDepth: &depth}
	if src.inline != "" {
		data, err := decodeInlinePEM(src.inline)
		if err != nil {
			return nil, src.fault(false, err)
		}
		cfg.CAFile, cfg.CAPEM = src.label, data
	}
	v, err := certauth.NewVerifier(cfg)
	if err != nil {
		_, crl := errors.AsType[*certauth.CRLLoadError](err)
		return nil, src.fault(crl, err)
	}
	return v, nil
}

// loadDefaultCA loads ssl_ca_file or ssl_ca with ssl_crl_file and
// ssl_crl_dir: the set of every line without clientca=. It returns nil
// and no error when neither is set.
func (c *Config) loadDefaultCA() (*certauth.Verifier, error) {
	src := caSource{file: c.SSLCAFile, crlFile: c.SSLCRLFile, crlDir: c.SSLCRLDir}
	key := "ssl_ca_file"
	switch {
	case c.SSLCA != "":
		src.inline, src.label, key = c.SSLCA, "ssl_ca", "ssl_ca"
	case c.SSLCAFile == "":
		return nil, nil
	}
	src.fault = func(crl bool, err error) error {
		if crl {
			return c.keyError("ssl_crl_file", "%w", err)
		}
		return c.keyError(key, "%w", err)
	}
	return c.loadCASet(src)
}

// lineSet is a CA set that pg_hba.conf lines require, with where it is
// first required and, for a [client_ca.NAME] table, the table.
type lineSet struct {
	name  string // hba.Entry.ClientCASet
	first *hba.Entry
	table *ClientCASet
}

// buildTrust loads the CA sets that loaded pg_hba.conf lines require and
// makes the handshake's union (Runtime.ClientCAs), checks pg_ident.conf's
// certificate pins, and adds the warnings `check` prints for each
// extension. Every file it reads is noted in read, so that the file watch
// reloads when a clientca file changes. Errors name the pg_hba.conf line,
// the pg_ident.conf line or the TOML key at fault.
func buildTrust(cfg *Config, rt *Runtime, read fileSet) []error {
	var errs []error
	var sets []lineSet
	used := map[string]bool{}
	if rt.HBA != nil {
		for _, e := range rt.HBA.Entries {
			where := fmt.Sprintf("%s:%d", e.File, e.Line)
			for _, o := range e.CertExtensions() {
				rt.Warnings = append(rt.Warnings, fmt.Errorf("%s: %s=%s is a pgcertgate extension that PostgreSQL refuses", where, o.Name, o.Value))
			}
			name := e.ClientCASet()
			if name == "" || used[name] {
				continue
			}
			used[name] = true
			ls := lineSet{name: name, first: e}
			if n, ok := strings.CutPrefix(name, "@"); ok {
				t, ok := cfg.ClientCA[n]
				if !ok {
					errs = append(errs, &authfile.Error{File: e.File, Line: e.Line, Msg: fmt.Sprintf("clientca=%s: no [client_ca.%s] table in %s", name, n, cfg.Path)})
					continue
				}
				ls.table = &t
			}
			sets = append(sets, ls)
		}
		errs = append(errs, checkPins(rt)...)
	}
	for _, n := range sortedKeys(cfg.ClientCA) {
		if !used["@"+n] {
			rt.Warnings = append(rt.Warnings, cfg.errorAt(toml.Key{"client_ca", n}, "no pg_hba.conf line requires clientca=@%s: the set is not loaded and does not widen the handshake", n))
		}
	}

	var all []*certauth.CASet
	if rt.Verifier != nil {
		all = append(all, certauth.NewCASet(certauth.DefaultSet, rt.Verifier))
	}
	now := time.Now()
	var loaded []loadedSet
	for _, ls := range sets {
		v, err := loadLineSet(cfg, ls, read)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		problems, warnings := v.SetProblems(now)
		for _, p := range problems {
			errs = append(errs, setError(cfg, ls, p))
		}
		for _, w := range warnings {
			rt.Warnings = append(rt.Warnings, setError(cfg, ls, w))
		}
		set := certauth.NewCASet(ls.name, v)
		all = append(all, set)
		loaded = append(loaded, loadedSet{ls, set})
	}
	rt.Warnings = append(rt.Warnings, uncoveredCAs(cfg, all, loaded)...)
	if len(all) > 0 {
		rt.ClientCAs = certauth.NewTrust(cfg.keyUsagePolicy(), all...)
	}
	return errs
}

// loadedSet is a line set as loaded.
type loadedSet struct {
	ls  lineSet
	set *certauth.CASet
}

// uncoveredCAs warns about a line set without CRLs that holds a CA of a
// set with CRLs. A chain is held to the CRLs of the set that verified it
// only, so a certificate the other set's CRLs revoke still passes every
// line that requires this one: almost certainly not what was meant.
func uncoveredCAs(cfg *Config, all []*certauth.CASet, loaded []loadedSet) []error {
	var out []error
	for _, l := range loaded {
		if l.set.ChecksCRLs() {
			continue
		}
		for _, other := range all {
			if other == l.set || !other.ChecksCRLs() {
				continue
			}
			shared := sharedCA(l.set.Verifier(), other.Verifier())
			if shared == nil {
				continue
			}
			dn, _ := certauth.DistinguishedName(shared)
			fix := "crl_file or crl_dir in its table"
			if l.ls.table == nil {
				fix = "a [client_ca.NAME] table with crl_file or crl_dir"
			}
			out = append(out, setError(cfg, l.ls, fmt.Sprintf("CA certificate (subject %q) is also in CA set %s, whose CRLs do not apply to this set: a certificate they revoke still passes the lines that require this set; give it CRLs of its own (%s)", dn, other.Name, fix)))
			break
		}
	}
	return out
}

// sharedCA returns a CA certificate of a that b holds too: the same
// subject and key, whatever the rest of the certificate.
func sharedCA(a, b *certauth.Verifier) *x509.Certificate {
	bs := b.CACerts()
	for _, c := range a.CACerts() {
		for _, d := range bs {
			if bytes.Equal(c.RawSubject, d.RawSubject) && bytes.Equal(c.RawSubjectPublicKeyInfo, d.RawSubjectPublicKeyInfo) {
				return c
			}
		}
	}
	return nil
}

// loadLineSet loads one set. A clientca= file's error belongs to the
// first line that names it; a [client_ca.NAME] table's to its key.
func loadLineSet(cfg *Config, ls lineSet, read fileSet) (*certauth.Verifier, error) {
	if ls.table == nil {
		read.add(ls.name)
		return cfg.loadCASet(caSource{file: ls.name, fault: func(_ bool, err error) error {
			return &authfile.Error{File: ls.first.File, Line: ls.first.Line, Msg: fmt.Sprintf("clientca: %v", err)}
		}})
	}
	t, name := ls.table, strings.TrimPrefix(ls.name, "@")
	src := caSource{file: t.File, crlFile: t.CRLFile, crlDir: t.CRLDir}
	field := "file"
	if t.PEM != "" {
		src.inline, src.label, field = t.PEM, "client_ca."+name+".pem", "pem"
	} else {
		read.add(t.File)
	}
	read.add(t.CRLFile)
	src.fault = func(crl bool, err error) error {
		if crl {
			return cfg.errorAt(toml.Key{"client_ca", name, "crl_file"}, "%w", err)
		}
		return cfg.errorAt(toml.Key{"client_ca", name, field}, "%w", err)
	}
	return cfg.loadCASet(src)
}

// setError places a finding about a set's certificates: at the TOML key
// that gives them, or at the first pg_hba.conf line that names the file.
func setError(cfg *Config, ls lineSet, msg string) error {
	if ls.table == nil {
		return &authfile.Error{File: ls.first.File, Line: ls.first.Line, Msg: fmt.Sprintf("clientca file %q: %s", ls.name, msg)}
	}
	field := "file"
	if ls.table.PEM != "" {
		field = "pem"
	}
	return cfg.errorAt(toml.Key{"client_ca", strings.TrimPrefix(ls.name, "@"), field}, "%s", msg)
}

// checkPins checks the pg_ident.conf lines of every map a clientname=SHA256
// line uses: a literal system name there is a certificate pin, exactly
// "sha256:" and 64 lowercase hex digits, as `pgcertgate fingerprint`
// prints it (the identity is compared byte for byte, so any other
// spelling could never match). A pin bound to two different roles is a
// warning: a certificate should belong to one user.
func checkPins(rt *Runtime) []error {
	pinMaps := map[string]*hba.Entry{}
	otherMaps := map[string]bool{}
	for _, e := range rt.HBA.Entries {
		if e.Map == "" {
			continue
		}
		if e.ClientName == hba.ClientNameSHA256 {
			if pinMaps[e.Map] == nil {
				pinMaps[e.Map] = e
			}
		} else {
			otherMaps[e.Map] = true
		}
	}
	if len(pinMaps) == 0 {
		return nil
	}
	var errs []error
	type binding struct {
		role string
		at   *identmap.Entry
	}
	bound := map[string]binding{}
	for _, ie := range rt.Ident.Entries {
		line := pinMaps[ie.MapName]
		if line == nil || strings.HasPrefix(ie.System.Value, "/") {
			continue
		}
		where := fmt.Sprintf("%s:%d", line.File, line.Line)
		msg := pinProblem(ie.System.Value)
		if msg != "" && !strings.HasPrefix(strings.ToLower(ie.System.Value), certauth.PinPrefix) && otherMaps[ie.MapName] {
			// The map serves CN or DN lines too: the name is theirs.
			rt.Warnings = append(rt.Warnings, &authfile.Error{File: ie.File, Line: ie.Line,
				Msg: fmt.Sprintf("%q never matches on the clientname=SHA256 line %s, which uses map %q: %s", ie.System.Value, where, ie.MapName, msg)})
			continue
		}
		if msg != "" {
			errs = append(errs, &authfile.Error{File: ie.File, Line: ie.Line,
				Msg: fmt.Sprintf("map %q holds certificate pins (clientname=SHA256 at %s): %s", ie.MapName, where, msg)})
			continue
		}
		b, ok := bound[ie.System.Value]
		if !ok {
			bound[ie.System.Value] = binding{role: ie.User.String(), at: ie}
		} else if b.role != ie.User.String() {
			rt.Warnings = append(rt.Warnings, &authfile.Error{File: ie.File, Line: ie.Line,
				Msg: fmt.Sprintf("certificate pin %s is bound to role %s here and to role %s at %s:%d: a certificate should belong to one user", ie.System.Value, ie.User, b.role, b.at.File, b.at.Line)})
		}
	}
	return errs
}

// pinProblem says what is wrong with a pin, or "" when it is well formed.
func pinProblem(s string) string {
	hexPart, ok := strings.CutPrefix(s, certauth.PinPrefix)
	switch {
	case !ok && strings.HasPrefix(strings.ToLower(s), certauth.PinPrefix):
		return fmt.Sprintf("malformed certificate pin %q: the prefix is lowercase %q", s, certauth.PinPrefix)
	case !ok:
		return fmt.Sprintf("%q is not a certificate pin: write %q and the 64 lowercase hex digits of the certificate's SHA-256 (pgcertgate fingerprint prints the line)", s, certauth.PinPrefix)
	case len(hexPart) != 64:
		return fmt.Sprintf("malformed certificate pin %q: %d hex digits, want 64", s, len(hexPart))
	}
	for i := 0; i < len(hexPart); i++ {
		switch c := hexPart[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			return fmt.Sprintf("malformed certificate pin %q: uppercase hex digits; pins are lowercase, as pgcertgate fingerprint prints them", s)
		default:
			return fmt.Sprintf("malformed certificate pin %q: %q is not a hex digit", s, c)
		}
	}
	return ""
}

// checkMapTypes is checkTypes for a table of tables keyed by name
// ([client_ca.NAME]): each entry must be a table of elem's fields.
func (c *Config) checkMapTypes(md toml.MetaData, prefix toml.Key, elem reflect.Type) []error {
	var errs []error
	for _, k := range md.Keys() {
		if len(k) != len(prefix)+1 || !slices.Equal(k[:len(prefix)], prefix) {
			continue
		}
		if got := md.Type(k...); got != "Hash" && got != "" {
			errs = append(errs, c.errorAt(k, "must be a table, not %s", typeName(got)))
			continue
		}
		errs = append(errs, c.checkTypes(md, k, elem)...)
	}
	return errs
}

// clientCAShape reports a client_ca that is not a table of tables. The
// decoder leaves such a value out without an error, so the file is read
// again, untyped, when it mentions the key at all.
func (c *Config) clientCAShape() []error {
	if !strings.Contains(c.source, "client_ca") {
		return nil
	}
	var raw map[string]any
	if _, err := toml.Decode(c.source, &raw); err != nil {
		return nil
	}
	v, ok := raw["client_ca"]
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return []error{c.errorAt(toml.Key{"client_ca"}, "must be a table of CA sets ([client_ca.NAME]), not %T", v)}
	}
	var errs []error
	for _, name := range sortedKeys(m) {
		if _, ok := m[name].(map[string]any); !ok {
			errs = append(errs, c.errorAt(toml.Key{"client_ca", name}, "must be a table (file or pem, crl_file, crl_dir), not %T", m[name]))
		}
	}
	return errs
}
