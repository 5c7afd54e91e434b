package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// registerAPI adds /api/* and the page at /, each behind the token.
// Unsafe methods are also refused across origins (a browser holding Basic
// credentials would otherwise send them with another site's form).
func (s *Server) registerAPI(mux *http.ServeMux) {
	cop := http.NewCrossOriginProtection()
	guard := func(h http.HandlerFunc) http.Handler { return s.requireToken(cop.Handler(noStore(h))) }
	mux.Handle("GET /api/logins", guard(s.apiLogins))
	mux.Handle("GET /api/certificates", guard(s.apiCertificates))
	mux.Handle("GET /api/sessions", guard(s.apiSessions))
	mux.Handle("POST /api/sessions/{id}/terminate", guard(s.apiTerminate))
	mux.Handle("GET /{$}", guard(s.page))
}

func noStore(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// loginJSON is one attempt in /api/logins.
type loginJSON struct {
	Time        time.Time `json:"time"`
	Client      string    `json:"client"`
	User        string    `json:"user"`
	Database    string    `json:"database"`
	Identity    string    `json:"identity,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	HBALine     string    `json:"hba_line,omitempty"`
	Verdict     string    `json:"verdict"`
	Reason      string    `json:"reason"`
	SQLSTATE    string    `json:"sqlstate,omitempty"`
	Message     string    `json:"message,omitempty"`
	DurationMS  float64   `json:"duration_ms"`
}

func toLoginJSON(e *LoginEvent) loginJSON {
	return loginJSON{
		Time: e.Time.UTC(), Client: e.Client, User: e.User, Database: e.Database,
		Identity: e.Identity, Fingerprint: e.Fingerprint, HBALine: e.HBALine,
		Verdict: e.Verdict, Reason: e.Reason, SQLSTATE: e.SQLSTATE, Message: e.Message,
		DurationMS: float64(e.Duration.Microseconds()) / 1000,
	}
}

// apiLogins is GET /api/logins?verdict=&user=&reason=&limit=.
func (s *Server) apiLogins(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := LoginFilter{Verdict: q.Get("verdict"), User: q.Get("user"), Reason: q.Get("reason")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a non-negative integer"})
			return
		}
		f.Limit = n
	}
	events := s.monitor().Logins(f)
	kept, capacity := s.monitor().hist.size()
	out := struct {
		Kept     int         `json:"kept"`
		Capacity int         `json:"capacity"`
		Logins   []loginJSON `json:"logins"`
	}{Kept: kept, Capacity: capacity, Logins: make([]loginJSON, len(events))}
	for i := range events {
		out.Logins[i] = toLoginJSON(&events[i])
	}
	writeJSON(w, http.StatusOK, out)
}

// certJSON is one certificate in /api/certificates.
type certJSON struct {
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SANs        []string  `json:"sans"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DaysLeft    int       `json:"days_left"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Roles       []string  `json:"roles"`
	Accepted    uint64    `json:"accepted"`
	Refused     uint64    `json:"refused"`
	Truncated   bool      `json:"truncated,omitempty"`
}

func toCertJSON(e *CertificateEntry, now time.Time) certJSON {
	nz := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return certJSON{
		Fingerprint: e.Fingerprint, Subject: e.Subject, Issuer: e.Issuer, SANs: nz(e.SANs),
		NotBefore: e.NotBefore.UTC(), NotAfter: e.NotAfter.UTC(), DaysLeft: e.DaysLeft(now),
		FirstSeen: e.FirstSeen.UTC(), LastSeen: e.LastSeen.UTC(), Roles: nz(e.Roles),
		Accepted: e.Accepted, Refused: e.Refused, Truncated: e.Truncated,
	}
}

// apiCertificates is GET /api/certificates, soonest expiry first.
func (s *Server) apiCertificates(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	entries, st := s.monitor().Certificates()
	out := struct {
		Entries      int        `json:"entries"`
		MaxEntries   int        `json:"max_entries"`
		Bytes        int        `json:"bytes"`
		MaxBytes     int        `json:"max_bytes"`
		Evicted      uint64     `json:"evicted"`
		Unverified   uint64     `json:"unverified_seen"`
		Certificates []certJSON `json:"certificates"`
	}{st.Entries, st.MaxEntries, st.Bytes, st.MaxBytes, st.Evicted, st.Unverified, make([]certJSON, len(entries))}
	for i := range entries {
		out.Certificates[i] = toCertJSON(&entries[i], now)
	}
	writeJSON(w, http.StatusOK, out)
}

// sessionJSON is one live session in /api/sessions.
type sessionJSON struct {
	ID         uint64    `json:"id"`
	User       string    `json:"user"`
	Database   string    `json:"database"`
	Identity   string    `json:"identity,omitempty"`
	Client     string    `json:"client"`
	Start      time.Time `json:"start"`
	BytesIn    int64     `json:"bytes_in"`
	BytesOut   int64     `json:"bytes_out"`
	BackendPID uint32    `json:"backend_pid"`
	Reused     bool      `json:"reused"`
}

func (s *Server) sessions() []SessionInfo {
	if s.opts.Sessions == nil {
		return nil
	}
	return s.opts.Sessions.Sessions()
}

// apiSessions is GET /api/sessions, oldest first.
func (s *Server) apiSessions(w http.ResponseWriter, _ *http.Request) {
	list := s.sessions()
	out := struct {
		Sessions []sessionJSON `json:"sessions"`
	}{make([]sessionJSON, len(list))}
	for i, si := range list {
		out.Sessions[i] = sessionJSON{si.ID, si.User, si.Database, si.Identity, si.Client, si.Start.UTC(), si.BytesIn, si.BytesOut, si.BackendPID, si.Reused}
	}
	writeJSON(w, http.StatusOK, out)
}

// apiTerminate is POST /api/sessions/{id}/terminate. A form post from the
// page is sent back to the page.
func (s *Server) apiTerminate(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the session id is a number"})
		return
	}
	if s.opts.Sessions == nil {
		err = ErrNoSession
	} else {
		err = s.opts.Sessions.Terminate(id)
	}
	status := http.StatusOK
	switch {
	case errors.Is(err, ErrNoSession):
		status = http.StatusNotFound
	case err != nil:
		status = http.StatusInternalServerError
	}
	s.opts.Log.Info("admin: terminate session", "conn_id", id, "remote", r.RemoteAddr, "status", status)
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if err != nil {
		writeJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, status, map[string]uint64{"terminated": id})
}
