package config

import "runtime"

// Relay engines (relay_engine).
const (
	RelayGoroutine = "goroutine"
	RelayEventLoop = "eventloop"
)

// Engine is relay_engine with its default applied.
func (c *Config) Engine() string {
	if c.RelayEngine == "" {
		return RelayGoroutine
	}
	return c.RelayEngine
}

// validateRelayEngine refuses an unknown engine, and the event loop where
// it does not exist: a configuration that asks for it on another system
// fails to load rather than run, unannounced, on a different data path
// than the one it was measured and tested with.
func (c *Config) validateRelayEngine() []error {
	switch c.RelayEngine {
	case "", RelayGoroutine:
	case RelayEventLoop:
		if runtime.GOOS != "linux" {
			return []error{c.keyError("relay_engine", "%q is available on Linux only (this is %s)", c.RelayEngine, runtime.GOOS)}
		}
	default:
		return []error{c.keyError("relay_engine", "%q (goroutine or eventloop)", c.RelayEngine)}
	}
	return nil
}
