package admin

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"strings"
	"time"
)

//go:embed page.html
var pageSource string

// pageRefresh is how often the page reloads itself, in seconds.
const pageRefresh = 5

// pageLogins is how many recent attempts the page lists.
const pageLogins = 100

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"since": func(t time.Time) string { return time.Since(t).Truncate(time.Second).String() },
	"ms":    func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) },
	"short": func(fp string) string {
		if len(fp) > 16 {
			return fp[:16] + "…"
		}
		return fp
	},
	"join":     func(s []string) string { return strings.Join(s, ", ") },
	"daysLeft": func(e CertificateEntry, now time.Time) int { return e.DaysLeft(now) },
}).Parse(pageSource))

type pageFile struct {
	Path     string
	Modified time.Time
	Missing  bool
}

// page is GET /: the server-rendered overview. It loads nothing from
// anywhere else (no script, no stylesheet, no font), and the response's
// Content-Security-Policy says so to the browser.
func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	certs, st := s.monitor().Certificates()
	kept, _ := s.monitor().hist.size()
	cfg := s.config.get()
	files := make([]pageFile, 0, len(cfg.Files))
	for _, f := range cfg.Files {
		pf := pageFile{Path: f}
		if fi, err := os.Stat(f); err == nil {
			pf.Modified = fi.ModTime()
		} else {
			pf.Missing = true
		}
		files = append(files, pf)
	}
	data := struct {
		Now          time.Time
		Refresh      int
		Sessions     []SessionInfo
		Logins       []LoginEvent
		LoginsKept   int
		Certificates []CertificateEntry
		Inventory    InventoryStats
		Config       ConfigInfo
		Files        []pageFile
	}{now, pageRefresh, s.sessions(), s.monitor().Logins(LoginFilter{Limit: pageLogins}), kept, certs, st, cfg, files}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if err := pageTemplate.Execute(w, data); err != nil {
		s.opts.Log.Warn("admin: rendering the page", "error", err.Error())
	}
}
