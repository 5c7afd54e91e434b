package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
)

// startProfiles starts the profiles `make bench` asks for through the
// environment, and returns the function that writes them at exit:
//
//	PGCERTGATE_CPUPROFILE=FILE      CPU profile of the whole serve run
//	PGCERTGATE_MEMPROFILE=FILE      allocation (heap) profile written at exit
//	PGCERTGATE_MEMPROFILERATE=N     runtime.MemProfileRate (default Go's 512 KiB)
//
// It must run before scrubPGEnv, which removes every PG* variable. The
// variables are read once at start; nothing is exposed on the network.
func startProfiles(stderr io.Writer) (stop func()) {
	cpuPath, memPath := os.Getenv("PGCERTGATE_CPUPROFILE"), os.Getenv("PGCERTGATE_MEMPROFILE")
	if n, err := strconv.Atoi(os.Getenv("PGCERTGATE_MEMPROFILERATE")); err == nil && n > 0 {
		runtime.MemProfileRate = n
	}
	var cpu *os.File
	if cpuPath != "" {
		f, err := os.Create(cpuPath)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "pgcertgate: PGCERTGATE_CPUPROFILE:", err)
		} else {
			cpu = f
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if memPath == "" {
			return
		}
		f, err := os.Create(memPath)
		if err == nil {
			// "allocs" holds alloc_space/alloc_objects since start, and
			// the live heap as of the last GC.
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "pgcertgate: PGCERTGATE_MEMPROFILE:", err)
		}
	}
}
