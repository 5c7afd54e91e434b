//go:build linux

package main

import (
	"cmp"
	"maps"
	"slices"
)

// summary is a median and range over rounds.
type summary struct {
	N                int
	Median, Min, Max float64
}

// summarize returns the median (the mean of the two middle values for an
// even count), minimum and maximum of vs.
func summarize(vs []float64) summary {
	if len(vs) == 0 {
		return summary{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return summary{N: n, Median: med, Min: s[0], Max: s[n-1]}
}

// values returns the measured values of target and workload, in round
// order.
func values(runs []runResult, target, workload string) []float64 {
	var out []float64
	for _, r := range runs {
		if r.Target == target && r.Workload == workload {
			out = append(out, r.Value)
		}
	}
	return out
}

// roundRatios returns, per round, the value of a over the value of b for a
// workload: the runs of one round ran back to back, so these ratios cancel
// slow drift of the machine.
func roundRatios(runs []runResult, workload, a, b string) []float64 {
	byRound := map[int]map[string]float64{}
	for _, r := range runs {
		if r.Workload != workload {
			continue
		}
		if byRound[r.Round] == nil {
			byRound[r.Round] = map[string]float64{}
		}
		byRound[r.Round][r.Target] = r.Value
	}
	var out []float64
	for _, round := range slices.Sorted(maps.Keys(byRound)) {
		m := byRound[round]
		va, oka := m[a]
		vb, okb := m[b]
		if oka && okb && vb > 0 {
			out = append(out, va/vb)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.SortedFunc(maps.Keys(m), cmp.Compare[string])
}
