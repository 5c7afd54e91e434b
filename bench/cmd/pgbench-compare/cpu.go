//go:build linux

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

// usage is a process's CPU time and minor page faults.
type usage struct {
	cpu    time.Duration
	faults int64
}

func (u usage) plus(v usage) usage { return usage{u.cpu + v.cpu, u.faults + v.faults} }

// procUsage reads pid's own CPU (utime+stime) and minor page faults, and
// those of the children it has reaped (a postmaster's exited backends).
// A new PostgreSQL backend faults in each page of shared_buffers it
// touches, which a pooler's long-lived server connections have done long
// before: the faults say how much of PostgreSQL's CPU that is.
func procUsage(pid int) (own, reaped usage, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, usage{}, err
	}
	f, err := statFields(b)
	if err != nil {
		return usage{}, usage{}, err
	}
	// minflt(10) cminflt(11) utime(14) stime(15) cutime(16) cstime(17),
	// numbered as in proc(5).
	field := func(n int) (int64, error) {
		v, err := strconv.ParseInt(f[n-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		return v, nil
	}
	var v [6]int64
	for i, n := range []int{10, 11, 14, 15, 16, 17} {
		if v[i], err = field(n); err != nil {
			return usage{}, usage{}, err
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	return usage{tick(v[2] + v[3]), v[0]}, usage{tick(v[4] + v[5]), v[1]}, nil
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

// treeUsage is the usage of a process and all its children, live or
// reaped: for a postmaster, PostgreSQL's whole. A child reaped between
// reading the parent and reading the children would be missed, so the
// parent is read again and the whole reading repeated until its
// reaped-children usage stood still (backends exit together when pgbench
// ends).
func treeUsage(pid int) (usage, error) {
	for range 20 {
		_, reaped, err := procUsage(pid)
		if err != nil {
			return usage{}, err
		}
		live, err := childrenUsage(pid)
		if err != nil {
			return usage{}, err
		}
		own, reapedAfter, err := procUsage(pid)
		if err != nil {
			return usage{}, err
		}
		if reaped == reapedAfter {
			return own.plus(reaped).plus(live), nil
		}
	}
	return usage{}, fmt.Errorf("pid %d: children kept exiting while being counted", pid)
}

// childrenUsage sums the own usage of pid's live children.
func childrenUsage(pid int) (usage, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return usage{}, err
	}
	var total usage
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
		if own, _, err := procUsage(child); err == nil {
			total = total.plus(own)
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
	proxy, idle time.Duration
	postgres    usage
	wall        time.Time
	ok          bool
}

// sampleCPU reads the proxy's (when the target is a process), PostgreSQL's
// and the machine's CPU time.
func (e *env) sampleCPU(tg *target) cpuSample {
	var s cpuSample
	pm, err := e.cluster.PostmasterPID()
	if err != nil {
		return s
	}
	if s.postgres, err = treeUsage(pm); err != nil {
		return s
	}
	if s.wall, s.idle, err = machineTimes(); err != nil {
		return s
	}
	if tg.proc != nil {
		own, _, err := procUsage(tg.proc.pid())
		if err != nil {
			return s
		}
		s.proxy = own.cpu
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
		Pgbench:        per(pgbench),
		Proxy:          per(after.proxy - before.proxy),
		Postgres:       per(after.postgres.cpu - before.postgres.cpu),
		PostgresFaults: float64(after.postgres.faults-before.postgres.faults) / float64(r.Transactions),
		Machine:        per(time.Duration(cpus)*after.wall.Sub(before.wall) - (after.idle - before.idle)),
	}
}

// cpuPerTx is CPU microseconds per transaction, by process.
type cpuPerTx struct {
	Pgbench, Proxy, Postgres float64
	// Machine is every CPU's busy time, whoever spent it.
	Machine float64
	// PostgresFaults is PostgreSQL's minor page faults per transaction.
	PostgresFaults float64 `json:",omitempty"`
}
