//go:build linux

package main

import (
	"fmt"
	"slices"
)

// verdict is one throughput, CPU or memory target, and whether it was met.
type verdict struct {
	Group string
	// Subjects are the targets compared: a verdict that could not be
	// measured because -targets left one of them out is not reported.
	Subjects []string
	Goal     string
	Measured string
	Met      bool
	Known    bool
	Info     bool // a comparison the report shows, with no target to meet
}

func (v verdict) status() string {
	switch {
	case !v.Known:
		return "not measured"
	case v.Info:
		return "(for information)"
	case v.Met:
		return "**met**"
	}
	return "**not met**"
}

// The groups of verdicts, in the report's order.
const (
	groupCore      = "Throughput and memory"
	groupEventloop = "Event-loop relay"
	groupLedger    = "Identity ledger"
	groupCASets    = "CA sets per line"
	groupOCSP      = "OCSP with a warm cache"
)

// ratioVerdict compares the medians of a and b for a workload against a
// minimum ratio.
func (r *report) ratioVerdict(group, workload, a, b string, minRatio float64, goal string) verdict {
	v := verdict{Group: group, Goal: goal, Subjects: []string{a, b}}
	sa, sb := r.summary(a, workload), r.summary(b, workload)
	if sa.N == 0 || sb.N == 0 || sb.Median == 0 {
		return v
	}
	ratio := sa.Median / sb.Median
	rr := summarize(roundRatios(r.runs, workload, a, b))
	v.Known, v.Met = true, ratio >= minRatio
	v.Measured = fmt.Sprintf("%.3f × (%s %s vs %s %s; per-round ratios %.3f–%.3f)",
		ratio, fmtValue(sa.Median), a, fmtValue(sb.Median), b, rr.Min, rr.Max)
	return v
}

// medianCPU is the per-field median CPU per transaction of a target's
// runs of a workload; false when none of them sampled CPU.
func (r *report) medianCPU(target, workload string) (*cpuPerTx, bool) {
	var cs []*cpuPerTx
	for i := range r.runs {
		if r.runs[i].Target == target && r.runs[i].Workload == workload && r.runs[i].CPU != nil {
			cs = append(cs, r.runs[i].CPU)
		}
	}
	if len(cs) == 0 {
		return nil, false
	}
	return medianCPU(cs), true
}

// cpuVerdict compares the proxies' own CPU per transaction: a's at most
// maxRatio × b's.
func (r *report) cpuVerdict(group, workload, a, b string, maxRatio float64, goal string) verdict {
	v := verdict{Group: group, Goal: goal, Subjects: []string{a, b}}
	ma, oka := r.medianCPU(a, workload)
	mb, okb := r.medianCPU(b, workload)
	if !oka || !okb || mb.Proxy == 0 {
		return v
	}
	ca, cb := ma.Proxy, mb.Proxy
	ratio := ca / cb
	v.Known, v.Met = true, ratio <= maxRatio
	v.Measured = fmt.Sprintf("%.2f × (%.1f µs %s vs %.1f µs %s, medians)", ratio, ca, a, cb, b)
	return v
}

// floorVerdicts set the CPU goal beside what relaying costs without TLS:
// PgBouncer's TLS, the plaintext relay's CPU against PgBouncer's with TLS
// (the least any relay could claim), and each event-loop target against
// that plaintext relay.
func (r *report) floorVerdicts() []verdict {
	info := func(v verdict) verdict {
		v.Info = true
		return v
	}
	out := []verdict{
		info(r.cpuVerdict(groupEventloop, "S8", targetBouncerPlain, targetBouncer, 0, fmt.Sprintf("what TLS costs PgBouncer: %s's own CPU per select-only transaction ÷ %s's", targetBouncerPlain, targetBouncer))),
		info(r.cpuVerdict(groupEventloop, "S8", targetRelayFloor, targetBouncer, 0, fmt.Sprintf("the floor without TLS: %s's own CPU per select-only transaction ÷ %s's", targetRelayFloor, targetBouncer))),
	}
	for _, lt := range loopEngines {
		for _, g := range []string{lt.plain, lt.reuse} {
			if r.hasTarget(g) {
				out = append(out, info(r.cpuVerdict(groupEventloop, "S8", g, targetRelayFloor, 0, fmt.Sprintf("%s with TLS against the floor without: its own CPU per select-only transaction ÷ %s's", g, targetRelayFloor))))
			}
		}
	}
	return out
}

// memVerdicts are the memory targets of one pgcertgate engine: RSS per
// idle session at most idleKiB, and every parked client held.
func (r *report) memVerdicts(group, target string, idleKiB float64) []verdict {
	idle := verdict{Group: group, Subjects: []string{target}, Goal: fmt.Sprintf("%s: ≤ %.0f KiB RSS per idle authenticated client (%d held)", target, idleKiB, r.opts.idle)}
	parked := verdict{Group: group, Subjects: []string{target}, Goal: fmt.Sprintf("%s: %d concurrent TLS clients parked in startup", target, r.opts.parked)}
	for _, m := range r.memory {
		if m.Target != target {
			continue
		}
		switch m.Name {
		case "idle authenticated sessions":
			idle.Known = true
			idle.Met = m.PerClient <= idleKiB*1024 && m.Held == m.Clients
			idle.Measured = fmt.Sprintf("%.1f KiB per session (%d held; RSS %.1f → %.1f MiB)", m.PerClient/1024, m.Held, mib(m.RSSBefore), mib(m.RSSWith))
		case "TLS clients parked in startup":
			parked.Known = true
			parked.Met = m.Held == m.Clients && m.Clients >= r.opts.parked
			parked.Measured = fmt.Sprintf("%d of %d held, a login still succeeded; RSS %.1f → %.1f MiB (%.1f KiB per client)", m.Held, m.Clients, mib(m.RSSBefore), mib(m.RSSWith), m.PerClient/1024)
		}
	}
	return []verdict{idle, parked}
}

func (r *report) verdicts() []verdict {
	var out []verdict
	gates := []string{targetGate}
	if r.hasTarget(targetGateReuse) {
		gates = append(gates, targetGateReuse)
	}
	if r.opts.binB != "" {
		gates = append(gates, r.opts.labelB)
	}
	for _, g := range gates {
		out = append(out,
			r.ratioVerdict(groupCore, "S8", g, targetDirect, 0.95, fmt.Sprintf("select-only, 8 clients: %s ≥ 0.95 × direct", g)),
			r.ratioVerdict(groupCore, "S8", g, targetBouncer, 1.00, fmt.Sprintf("select-only, 8 clients: %s ≥ 1.00 × PgBouncer", g)),
			r.ratioVerdict(groupCore, "C4", g, targetDirect, 1.5, fmt.Sprintf("connect per transaction, 4 clients: %s ≥ 1.5 × direct", g)),
			r.ratioVerdict(groupCore, "C4", g, targetBouncer, 1.0, fmt.Sprintf("connect per transaction, 4 clients: %s ≥ 1.0 × PgBouncer", g)),
			r.ratioVerdict(groupCore, "copy-out", g, targetDirect, 0.90, fmt.Sprintf("COPY out: %s ≥ 0.90 × direct MB/s", g)),
			r.ratioVerdict(groupCore, "copy-in", g, targetDirect, 0.90, fmt.Sprintf("COPY in: %s ≥ 0.90 × direct MB/s", g)),
		)
	}
	out = append(out, r.memVerdicts(groupCore, targetGate, 64)...)

	for _, lt := range loopEngines {
		if !r.env.want(lt.plain) && !r.env.want(lt.reuse) {
			continue
		}
		for _, g := range []string{lt.plain, lt.reuse} {
			out = append(out,
				r.ratioVerdict(groupEventloop, "S8", g, targetBouncer, 1.10, fmt.Sprintf("select-only, 8 clients: %s ≥ 1.10 × PgBouncer", g)),
				r.cpuVerdict(groupEventloop, "S8", g, targetBouncer, 0.7, fmt.Sprintf("select-only, 8 clients: %s's own CPU per transaction ≤ 0.7 × PgBouncer's", g)),
				r.ratioVerdict(groupEventloop, "S1", g, targetBouncer, 1.0, fmt.Sprintf("select-only, 1 client: %s ≥ 1.0 × PgBouncer", g)),
			)
			if g == lt.plain {
				out = append(out, r.ratioVerdict(groupEventloop, "C4", g, targetDirect, 1.0, fmt.Sprintf("connect per transaction, 4 clients: %s ≥ 1.0 × direct", g)))
			} else {
				out = append(out, r.ratioVerdict(groupEventloop, "C4", g, targetBouncer, 1.3, fmt.Sprintf("connect per transaction, 4 clients: %s ≥ 1.3 × PgBouncer", g)))
			}
			out = append(out,
				r.ratioVerdict(groupEventloop, "copy-out", g, targetDirect, 1.0, fmt.Sprintf("COPY out: %s ≥ 1.0 × direct MB/s", g)),
				r.ratioVerdict(groupEventloop, "copy-in", g, targetDirect, 1.0, fmt.Sprintf("COPY in: %s ≥ 1.0 × direct MB/s", g)),
			)
		}
		out = append(out, r.memVerdicts(groupEventloop, lt.plain, 32)...)
	}
	out = append(out, r.floorVerdicts()...)

	for _, l := range []string{targetGateLedger, targetGateLedgerLogged, targetGateLedgerUnlogged} {
		if l != targetGateLedger && !r.hasTarget(l) {
			continue
		}
		out = append(out, r.ratioVerdict(groupLedger, "C4", l, targetGate, 0.85, fmt.Sprintf("connect per transaction, 4 clients: %s ≥ 0.85 × pgcertgate", l)))
	}
	for _, l := range []string{targetGateLedgerLogged, targetGateLedgerUnlogged} {
		if r.hasTarget(l) {
			v := r.ratioVerdict(groupLedger, "C4", targetGateLedger, l, 0, fmt.Sprintf("what the installed table's persistence buys: %s ÷ %s", targetGateLedger, l))
			v.Info = true
			out = append(out, v)
		}
	}
	out = append(out,
		r.ratioVerdict(groupCASets, "C4", targetGateCASets, targetGate, 0.95, fmt.Sprintf("connect per transaction, 4 clients: %s within 5%% of pgcertgate (≥ 0.95 ×)", targetGateCASets)),
		r.ratioVerdict(groupOCSP, "C4", targetGateOCSP, targetGate, 0.95, fmt.Sprintf("connect per transaction, 4 clients: %s within 5%% of OCSP off (≥ 0.95 × pgcertgate)", targetGateOCSP)),
	)
	return slices.DeleteFunc(out, func(v verdict) bool { return !v.Known && !r.selectedAll(v.Subjects) })
}

// selectedAll reports whether -targets selected every one of names (the
// A/B target always is).
func (r *report) selectedAll(names []string) bool {
	for _, n := range names {
		if n != r.opts.labelB && !r.env.want(n) {
			return false
		}
	}
	return true
}
