// Package watch notices changes to pgcertgate's configuration files by
// polling, for the watch_files setting.
//
// Polling is deliberate. It needs no dependency and no inotify instance,
// and it sees what event-based watchers miss: Kubernetes updates a
// ConfigMap or Secret volume by renaming a new "..data" symlink over the
// old one, so the watched names never change; only what they resolve to
// does. Every poll records, for each path, the fully resolved symlink
// target, and the size, modification time, device and inode of the file
// it reaches (a directory records its sorted entry names instead). Any
// difference counts as a change.
//
// A change fires once it has held still for one poll, so a file caught
// half-written by an editor is not loaded; a reload that fails anyway
// keeps the previous configuration, and the next change fires again.
package watch

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultInterval is the poll period for watch_files.
const DefaultInterval = time.Second

// stamp is what a poll records of one path. Two equal stamps mean the path
// still reaches the same, unmodified file.
type stamp struct {
	target   string // filepath.EvalSymlinks, so a ..data swap shows
	err      string // why the path could not be read ("" when it could)
	size     int64
	modTime  time.Time
	dev, ino uint64
	entries  string // a directory's entry names, NUL-separated
}

// Snapshot maps each watched path to its stamp.
type Snapshot map[string]stamp

// Take stamps every path.
func Take(paths []string) Snapshot {
	s := make(Snapshot, len(paths))
	for _, p := range paths {
		s[p] = stampOf(p)
	}
	return s
}

// Equal reports whether two snapshots describe the same files.
func (s Snapshot) Equal(o Snapshot) bool {
	if len(s) != len(o) {
		return false
	}
	for p, st := range s {
		if ost, ok := o[p]; !ok || ost != st {
			return false
		}
	}
	return true
}

// Changed lists the paths whose stamps differ between s and o, sorted.
func (s Snapshot) Changed(o Snapshot) []string {
	var out []string
	for p, st := range s {
		if ost, ok := o[p]; !ok || ost != st {
			out = append(out, p)
		}
	}
	for p := range o {
		if _, ok := s[p]; !ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func stampOf(path string) stamp {
	var st stamp
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		st.err = errText(err)
		return st
	}
	st.target = target
	fi, err := os.Stat(target)
	if err != nil {
		st.err = errText(err)
		return st
	}
	if fi.IsDir() {
		names, err := os.ReadDir(target)
		if err != nil {
			st.err = errText(err)
			return st
		}
		var b strings.Builder
		for _, e := range names {
			b.WriteString(e.Name())
			b.WriteByte(0)
		}
		st.entries = b.String()
		return st
	}
	st.size, st.modTime = fi.Size(), fi.ModTime()
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), uint64(sys.Ino)
	}
	return st
}

// errText keeps the stamp comparable and stable: "missing" for any
// not-found error, the error text otherwise.
func errText(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "missing"
	}
	return err.Error()
}

// Watcher polls a set of paths and reports changes that have settled.
type Watcher struct {
	interval time.Duration

	mu       sync.Mutex
	paths    []string
	baseline Snapshot // what the configuration in force was built from
	pending  Snapshot // a change seen once, waiting to hold still
}

// New watches paths, taking the current state as the baseline. interval
// zero means DefaultInterval.
func New(paths []string, interval time.Duration) *Watcher {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Watcher{interval: interval, paths: paths, baseline: Take(paths)}
}

// SetPaths replaces the watched set, after a reload that may have added
// or dropped include files. Paths already watched keep their baseline, so
// a change that landed while the reload ran still fires; new paths are
// stamped now.
func (w *Watcher) SetPaths(paths []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	base := make(Snapshot, len(paths))
	var fresh []string
	for _, p := range paths {
		if st, ok := w.baseline[p]; ok {
			base[p] = st
		} else {
			fresh = append(fresh, p)
		}
	}
	for p, st := range Take(fresh) {
		base[p] = st
	}
	w.paths, w.baseline, w.pending = paths, base, nil
}

// Poll compares the files with the baseline once. It returns the changed
// paths when a change has held still since the previous Poll; the
// baseline then moves to the new state, so each change fires once.
func (w *Watcher) Poll() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := Take(w.paths)
	if now.Equal(w.baseline) {
		w.pending = nil
		return nil
	}
	if w.pending == nil || !now.Equal(w.pending) {
		w.pending = now
		return nil
	}
	changed := now.Changed(w.baseline)
	w.baseline, w.pending = now, nil
	return changed
}

// Run polls every interval until ctx ends, calling changed (from Run's
// goroutine) with the paths of each settled change.
func (w *Watcher) Run(ctx context.Context, changed func(paths []string)) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if paths := w.Poll(); paths != nil {
				changed(paths)
			}
		}
	}
}
