package pgcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Halt stops the server but keeps its data directory, so that Resume can
// start it again: tests use it for a backend that goes away and comes
// back. mode is pg_ctl's shutdown mode ("fast", "immediate", "smart").
func (c *Cluster) Halt(ctx context.Context, mode string) error {
	_, err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-m", mode, "-w", "stop")
	return err
}

// Resume starts a server stopped with Halt, on the same port and socket.
func (c *Cluster) Resume(ctx context.Context) error {
	return c.start(ctx)
}

// PostmasterPID reads the running postmaster's pid from postmaster.pid,
// for tests that signal it (SIGSTOP to simulate a stalled server).
func (c *Cluster) PostmasterPID() (int, error) {
	data, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid: %w", err)
	}
	return pid, nil
}
