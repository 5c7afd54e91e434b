//go:build !linux

// Command pgbench-compare is Linux only: it reads each process's CPU and
// memory from /proc and starts PgBouncer with a parent-death signal.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "pgbench-compare: Linux only (it reads /proc)")
	os.Exit(2)
}
