package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPU accounting per run: where the machine's two cores went, per
// transaction. Throughput on a machine this size is bounded by the CPU all
// the processes on the path spend per transaction, so these numbers say
// how far a proxy can get from direct PostgreSQL and why.

// userHZ is the unit of /proc/<pid>/stat's times. Linux fixes USER_HZ at
// 100 for the /proc interface on every architecture Go supports here.
const userHZ = 100

// procTimes reads utime+stime of pid, and cutime+cstime: the CPU of the
// children it has reaped (a postmaster's exited backends).
func procTimes(pid int) (own, reaped time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	f, err := statFields(b)
	if err != nil {
		return 0, 0, err
	}
	// utime(14) stime(15) cutime(16) cstime(17), numbered as in proc(5).
	var t [4]int64
	for i := range t {
		if t[i], err = strconv.ParseInt(f[14+i-3], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	return tick(t[0] + t[1]), tick(t[2] + t[3]), nil
}

// statFields splits /proc/<pid>/stat after the command name (which may
// hold spaces and parentheses), so that field n of proc(5) is [n-3].
func statFields(b []byte) ([]string, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc stat line")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("short /proc stat line")
	}
	return f, nil
}

// treeTimes is the CPU of a process and all its children, live or reaped:
// for a postmaster, PostgreSQL's whole CPU. A child reaped between reading
// the parent and reading the children would be missed, so the parent is
// read again and the whole reading repeated until its reaped-children
// time stood still (backends exit together when pgbench ends).
func treeTimes(pid int) (time.Duration, error) {
	for range 20 {
		_, reaped, err := procTimes(pid)
		if err != nil {
			return 0, err
		}
		live, err := childrenTimes(pid)
		if err != nil {
			return 0, err
		}
		own, reapedAfter, err := procTimes(pid)
		if err != nil {
			return 0, err
		}
		if reaped == reapedAfter {
			return own + reaped + live, nil
		}
	}
	return 0, fmt.Errorf("pid %d: children kept exiting while being counted", pid)
}

// childrenTimes sums utime+stime of pid's live children.
func childrenTimes(pid int) (time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, ent := range ents {
		child, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		f, err := statFields(b)
		if err != nil || f[1] != strconv.Itoa(pid) {
			continue
		}
		if own, _, err := procTimes(child); err == nil {
			total += own
		}
	}
	return total, nil
}

// machineTimes reads the wall clock and the idle time of all CPUs
// (/proc/stat idle + iowait). Busy time is wall × CPUs − idle: idle time
// is measured exactly on a tickless kernel, while /proc/stat's busy
// fields are sampled at the tick and miss short bursts on a mostly idle
// machine (a one-client ping-pong).
func machineTimes() (wall time.Time, idle time.Duration, err error) {
	wall = time.Now()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return wall, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return wall, 0, fmt.Errorf("unexpected /proc/stat")
	}
	var ticks int64
	for _, s := range f[4:6] { // idle, iowait
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return wall, 0, err
		}
		ticks += v
	}
	return wall, time.Duration(ticks) * time.Second / userHZ, nil
}

// cpuSample is one reading of every counter a run's accounting needs.
type cpuSample struct {
	proxy, postgres, idle time.Duration
	wall                  time.Time
	ok                    bool
}

// sampleCPU reads the proxy's (when the target is a process), PostgreSQL's
// and the machine's CPU time.
func (e *env) sampleCPU(tg *target) cpuSample {
	var s cpuSample
	pm, err := e.cluster.PostmasterPID()
	if err != nil {
		return s
	}
	if s.postgres, err = treeTimes(pm); err != nil {
		return s
	}
	if s.wall, s.idle, err = machineTimes(); err != nil {
		return s
	}
	if tg.proc != nil {
		if s.proxy, _, err = procTimes(tg.proc.pid()); err != nil {
			return s
		}
	}
	s.ok = true
	return s
}

// setCPU turns two samples and pgbench's own CPU into microseconds per
// transaction, stored in r.
func (r *runResult) setCPU(before, after cpuSample, pgbench time.Duration, cpus int) {
	if !before.ok || !after.ok || r.Transactions == 0 {
		return
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(r.Transactions) }
	r.CPU = &cpuPerTx{
		Pgbench:  per(pgbench),
		Proxy:    per(after.proxy - before.proxy),
		Postgres: per(after.postgres - before.postgres),
		Machine:  per(time.Duration(cpus)*after.wall.Sub(before.wall) - (after.idle - before.idle)),
	}
}

// cpuPerTx is CPU microseconds per transaction, by process.
type cpuPerTx struct {
	Pgbench, Proxy, Postgres float64
	// Machine is every CPU's busy time, whoever spent it.
	Machine float64
}
