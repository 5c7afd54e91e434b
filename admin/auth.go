package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// minTokenLen is the shortest token LoadToken accepts: a guessable token
// would make publishing the admin port (as the Kubernetes example does)
// a hole.
const minTokenLen = 16

// LoadToken reads [admin] token_file: the whole file, without surrounding
// white space. It refuses a file others can read, an empty or short token,
// and one with characters a Basic-auth password or a header cannot carry.
func LoadToken(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("could not access token file: %w", err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("token file %q is accessible by others; it must have permissions 0640 or less", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("could not read token file: %w", err)
	}
	tok := bytes.TrimSpace(data)
	if len(tok) < minTokenLen {
		return nil, fmt.Errorf("token file %q holds a token of %d bytes; at least %d are needed", path, len(tok), minTokenLen)
	}
	for _, c := range tok {
		if c <= ' ' || c >= 0x7f {
			return nil, fmt.Errorf("token file %q: the token must be printable ASCII without spaces", path)
		}
	}
	return tok, nil
}

// authorized checks the request's credentials against the token: a Bearer
// token, or Basic auth with the token as the password (any user name), so
// that a browser can log in. The comparison takes the same time whatever
// the guess: both sides are hashed to a fixed length first, and the digests
// compared in constant time.
func authorized(r *http.Request, token []byte) bool {
	if len(token) == 0 {
		return false
	}
	var got string
	h := r.Header.Get("Authorization")
	if scheme, rest, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(rest)
	} else if _, pw, ok := r.BasicAuth(); ok {
		got = pw
	} else {
		return false
	}
	a := sha256.Sum256([]byte(got))
	b := sha256.Sum256(token)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// requireToken wraps the API and the page: off (404) without a token,
// 401 with a Basic challenge for wrong or missing credentials.
func (s *Server) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := s.token.Load()
		if tok == nil {
			http.Error(w, "not found: the admin API and page need [admin] token_file", http.StatusNotFound)
			return
		}
		if !authorized(r, *tok) {
			w.Header().Set("WWW-Authenticate", `Basic realm="pgcertgate admin", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// SetToken replaces the token (a reload of token_file); nil turns the API
// and the page off.
func (s *Server) SetToken(tok []byte) {
	if tok == nil {
		s.token.Store(nil)
		return
	}
	c := bytes.Clone(tok)
	s.token.Store(&c)
}
