// Package admin serves pgcertgate's operator endpoints over HTTP: /metrics
// (Prometheus), /healthz (liveness) and /readyz (readiness), and, when
// asked for, Go's profiles under /debug/pprof/. With a token it also
// serves the admin API (/api/logins, /api/certificates, /api/sessions and
// POST /api/sessions/{id}/terminate) and a page at / that shows them.
//
// Readiness means "send me new clients": the proxy has its listeners open,
// is not draining for a shutdown, holds a loaded configuration (it cannot
// run without one: a failed reload keeps the previous one in force), and
// its backend answers. The backend check opens no session: it is the
// protocol-level probe of Target.ProbeBackend, run at most once per
// BackendCheckInterval however often /readyz is asked, with the cached
// answer in between, so probes never flood PostgreSQL's log. Liveness
// ("restart me if this fails") is only that the process answers HTTP: a
// backend outage must not make Kubernetes restart a healthy proxy.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Target is what the readiness check asks; *pgwire.Server implements it.
type Target interface {
	// Serving reports that listeners are open and no shutdown has begun.
	Serving() bool
	// ProbeBackend checks, without a login, that the backend answers.
	ProbeBackend(ctx context.Context) error
}

// pprofWriteTimeout is the write timeout with Options.Pprof: a CPU
// profile or trace takes as long as it samples.
const pprofWriteTimeout = 125 * time.Second

// Defaults for Options' zero values.
const (
	DefaultBackendCheckInterval = 5 * time.Second
	DefaultBackendCheckTimeout  = 2 * time.Second
)

// Options configures a Server.
type Options struct {
	// Address is host:port to listen on; ":0" picks a free port.
	Address string
	// Gatherer is what /metrics exposes. Nil serves an empty registry.
	Gatherer prometheus.Gatherer
	// Target answers /readyz. Nil means always ready.
	Target Target
	// BackendCheckInterval is the least time between two backend probes;
	// /readyz answers from the last probe in between. Zero means
	// DefaultBackendCheckInterval.
	BackendCheckInterval time.Duration
	// BackendCheckTimeout bounds one backend probe. Zero means
	// DefaultBackendCheckTimeout.
	BackendCheckTimeout time.Duration
	// Log receives the server's own errors. Nil discards them.
	Log *slog.Logger
	// Pprof adds Go's profiling handlers under /debug/pprof/.
	Pprof bool
	// Token guards /api/* and the page at / ([admin] token_file, see
	// LoadToken). Nil turns them off; /metrics, /healthz and /readyz
	// never need it. SetToken replaces it.
	Token []byte
	// Monitor holds the login history and certificate inventory the API
	// shows. Nil means an empty one.
	Monitor *Monitor
	// Sessions lists and terminates live sessions. Nil means none.
	Sessions Sessions
}

// Server is the admin HTTP server.
type Server struct {
	opts Options
	http *http.Server
	ln   net.Listener
	done chan error

	mu        sync.Mutex // serialises probes; guards the cache
	checked   time.Time
	lastErr   error
	lastValid bool
	now       func() time.Time

	token   atomic.Pointer[[]byte]
	config  configHolder
	emptyMo *Monitor
}

// New makes a Server; Start opens its listener.
func New(o Options) *Server {
	if o.BackendCheckInterval <= 0 {
		o.BackendCheckInterval = DefaultBackendCheckInterval
	}
	if o.BackendCheckTimeout <= 0 {
		o.BackendCheckTimeout = DefaultBackendCheckTimeout
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.NewRegistry()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, now: time.Now}
	s.SetToken(o.Token)
	if o.Monitor == nil {
		s.emptyMo = NewMonitor(MonitorOptions{HistorySize: 1, InventorySize: 1})
	}
	s.http = &http.Server{
		Handler: s.Handler(),
		// Probes and scrapes are small: bound every phase so a stuck
		// client cannot hold a goroutine.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn),
	}
	if o.Pprof {
		// /debug/pprof/profile and /trace refuse a duration that reaches
		// the write timeout; leave room for the default 30 s and up to
		// two minutes.
		s.http.WriteTimeout = pprofWriteTimeout
	}
	return s
}

// Handler returns the endpoints, for tests and for embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.opts.Log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.registerAPI(mux)
	if s.opts.Pprof {
		// Registered on this mux only: importing net/http/pprof also
		// registers on http.DefaultServeMux, which nothing here serves.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		// go tool pprof looks symbols up with POST.
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// SetConfig records the configuration in force for the page: call it at
// start and after each successful reload.
func (s *Server) SetConfig(info ConfigInfo) { s.config.set(info) }

// Monitor returns Options.Monitor, nil without one; a reload resizes it.
func (s *Server) Monitor() *Monitor { return s.opts.Monitor }

func (s *Server) monitor() *Monitor {
	if s.opts.Monitor != nil {
		return s.opts.Monitor
	}
	return s.emptyMo
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.Ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		// The cause (backend address, dial error) is in the log only:
		// the admin port may be reachable by anyone in the pod network.
		if errors.Is(err, errDraining) {
			fmt.Fprintln(w, "not ready:", err)
		} else {
			fmt.Fprintln(w, "not ready: backend unreachable")
		}
		return
	}
	fmt.Fprintln(w, "ready")
}

// errDraining is /readyz's answer from the moment a shutdown begins.
var errDraining = errors.New("not accepting connections (starting or shutting down)")

// Ready is the readiness verdict: nil when the proxy is serving and its
// backend answered the latest probe.
func (s *Server) Ready(ctx context.Context) error {
	t := s.opts.Target
	if t == nil {
		return nil
	}
	if !t.Serving() {
		return errDraining
	}
	return s.backend(ctx)
}

// backend returns the cached probe result, probing again when it is older
// than BackendCheckInterval. Concurrent callers wait for one probe.
func (s *Server) backend(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastValid && s.now().Sub(s.checked) < s.opts.BackendCheckInterval {
		return s.lastErr
	}
	pctx, cancel := context.WithTimeout(ctx, s.opts.BackendCheckTimeout)
	defer cancel()
	err := s.opts.Target.ProbeBackend(pctx)
	if err != nil {
		err = fmt.Errorf("backend unreachable: %w", err)
	}
	if (err == nil) != (s.lastErr == nil) || !s.lastValid {
		if err != nil {
			s.opts.Log.Warn("readiness: backend check failed", slog.String("error", err.Error()))
		} else if s.lastValid {
			s.opts.Log.Info("readiness: backend reachable again")
		}
	}
	s.checked, s.lastErr, s.lastValid = s.now(), err, true
	return err
}

// Start listens on Options.Address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("admin: could not listen on %s: %w", s.opts.Address, err)
	}
	s.ln = ln
	s.done = make(chan error, 1)
	go func() {
		err := s.http.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return nil
}

// Addr is the listening address, once started.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server, letting in-flight requests finish until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	return errors.Join(err, <-s.done)
}
