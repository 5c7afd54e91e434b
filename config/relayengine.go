package config

import "runtime"

// Relay engines (relay_engine).
const (
	RelayGoroutine = "goroutine"
	RelayEventLoop = "eventloop"
	// RelayIOUring is the event loop on io_uring: one system call per
	// turn of the loop rather than one per read and write. Where the
	// kernel refuses io_uring (too old, a seccomp profile, or
	// kernel.io_uring_disabled), the epoll loops serve, and the log says
	// so once.
	RelayIOUring = "io_uring"
)

// EventLoopEngine reports an engine that relays on event loops, on
// epoll or on io_uring.
func EventLoopEngine(engine string) bool {
	return engine == RelayEventLoop || engine == RelayIOUring
}

// MaxRelayEventLoops bounds relay_event_loops: each loop is an OS thread
// and an epoll descriptor for the life of the process.
const MaxRelayEventLoops = 256

// Engine is relay_engine with its default applied: the event loop on
// io_uring where there is one (Linux; the epoll loop where the kernel
// refuses io_uring), which costs less per transaction and per idle
// session than goroutines, and less per transaction than the loop on
// epoll (see BENCHMARKS.md).
func (c *Config) Engine() string {
	if c.RelayEngine != "" {
		return c.RelayEngine
	}
	return defaultRelayEngine()
}

func defaultRelayEngine() string {
	if runtime.GOOS == "linux" {
		return RelayIOUring
	}
	return RelayGoroutine
}

// EventLoops is relay_event_loops with its default applied: one loop per
// four of GOMAXPROCS, at least one. A loop serves every session that is
// ready when it wakes, so fewer loops wake less often per transaction;
// on 2 cores one loop cost 34 µs of CPU per select-only transaction with
// 8 clients where two cost 59 µs (BENCHMARKS.md).
func (c *Config) EventLoops() int {
	if c.RelayEventLoops > 0 {
		return c.RelayEventLoops
	}
	return DefaultEventLoops()
}

// DefaultEventLoops is relay_event_loops = 0: one loop per four of
// GOMAXPROCS, at least one.
func DefaultEventLoops() int { return eventLoopsFor(runtime.GOMAXPROCS(0)) }

// eventLoopsFor is one loop per four processors, rounded up.
func eventLoopsFor(procs int) int { return max(1, (procs+3)/4) }

// validateRelayEngine refuses an unknown engine, and the event loop where
// it does not exist: a configuration that asks for it on another system
// fails to load rather than run, unannounced, on a different data path
// than the one it was measured and tested with.
func (c *Config) validateRelayEngine() []error {
	var errs []error
	switch c.RelayEngine {
	case "", RelayGoroutine:
	case RelayEventLoop, RelayIOUring:
		if runtime.GOOS != "linux" {
			errs = append(errs, c.keyError("relay_engine", "%q is available on Linux only (this is %s)", c.RelayEngine, runtime.GOOS))
		}
	default:
		errs = append(errs, c.keyError("relay_engine", "%q (goroutine, eventloop or io_uring)", c.RelayEngine))
	}
	if n := c.RelayEventLoops; n < 0 || n > MaxRelayEventLoops {
		errs = append(errs, c.keyError("relay_event_loops", "%d is outside the valid range 0..%d (0: one per four cores)", n, MaxRelayEventLoops))
	}
	return errs
}
