//go:build !linux

// Command relayfloor measures a plaintext relay's epoll and io_uring
// loops; both are Linux's.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "relayfloor: Linux only (epoll and io_uring)")
	os.Exit(2)
}
