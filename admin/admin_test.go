package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeTarget is a readiness target whose answers the test sets.
type fakeTarget struct {
	mu      sync.Mutex
	serving bool
	backend error
	probes  int
}

func (f *fakeTarget) Serving() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serving
}

func (f *fakeTarget) ProbeBackend(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("probe without a deadline")
	}
	return f.backend
}

func (f *fakeTarget) set(serving bool, backend error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serving, f.backend = serving, backend
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcertgate_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	target := &fakeTarget{serving: true}
	s := New(Options{Address: "127.0.0.1:0", Gatherer: reg, Target: target})
	clock := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return clock }
	h := s.Handler()

	type step struct {
		name     string
		advance  time.Duration
		serving  bool
		backend  error
		path     string
		code     int
		body     string
		probesAt int // probes made so far, after the request
	}
	down := errors.New("connection refused")
	for _, st := range []step{
		{"liveness", 0, true, nil, "/healthz", 200, "ok", 0},
		{"metrics", 0, true, nil, "/metrics", 200, "pgcertgate_test_total 3", 0},
		{"ready", 0, true, nil, "/readyz", 200, "ready", 1},
		{"cached within the interval", time.Second, true, down, "/readyz", 200, "ready", 1},
		{"probed again after the interval", DefaultBackendCheckInterval, true, down, "/readyz", 503, "backend unreachable", 2},
		{"liveness ignores the backend", 0, true, down, "/healthz", 200, "ok", 2},
		{"failure is cached too", time.Second, true, nil, "/readyz", 503, "backend unreachable", 2},
		{"recovers", DefaultBackendCheckInterval, true, nil, "/readyz", 200, "ready", 3},
		{"draining is not ready, without a probe", DefaultBackendCheckInterval, false, nil, "/readyz", 503, "not accepting connections", 3},
		{"unknown path", 0, false, nil, "/debug/pprof/", 404, "", 3},
	} {
		t.Run(st.name, func(t *testing.T) {
			clock = clock.Add(st.advance)
			target.set(st.serving, st.backend)
			code, body := get(t, h, st.path)
			if code != st.code || !strings.Contains(body, st.body) {
				t.Fatalf("GET %s: %d %q, want %d containing %q", st.path, code, body, st.code, st.body)
			}
			target.mu.Lock()
			probes := target.probes
			target.mu.Unlock()
			if probes != st.probesAt {
				t.Fatalf("%d backend probes so far, want %d", probes, st.probesAt)
			}
		})
	}
}

func TestStartShutdown(t *testing.T) {
	s := New(Options{Address: "127.0.0.1:0"})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + s.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz without a target: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get("http://" + s.Addr().String() + "/healthz"); err == nil {
		t.Fatal("admin endpoint still answers after Shutdown")
	}
}

// TestPprof: the profiles are served only when asked for, on the admin mux
// and never on http.DefaultServeMux.
func TestPprof(t *testing.T) {
	off := New(Options{}).Handler()
	if code, _ := get(t, off, "/debug/pprof/heap"); code != http.StatusNotFound {
		t.Errorf("pprof off: /debug/pprof/heap answered %d, want 404", code)
	}
	on := New(Options{Pprof: true})
	if on.http.WriteTimeout < 2*time.Minute {
		t.Errorf("pprof on: write timeout %v cuts a default 30 s CPU profile", on.http.WriteTimeout)
	}
	h := on.Handler()
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		if code, body := get(t, h, path); code != http.StatusOK || body == "" {
			t.Errorf("pprof on: %s answered %d (%d bytes)", path, code, len(body))
		}
	}
	if code, _ := get(t, h, "/metrics"); code != http.StatusOK {
		t.Errorf("pprof on: /metrics answered %d", code)
	}
}
