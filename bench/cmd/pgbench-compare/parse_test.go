//go:build linux

package main

import (
	"math"
	"testing"
)

// pgbench15 is PostgreSQL 15's pgbench summary for a select-only run.
const pgbench15 = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 75233
number of failed transactions: 0 (0.000%)
latency average = 0.318 ms
initial connection time = 23.410 ms
tps = 25141.394771 (without initial connection time)
`

// pgbench15Connect is the same with -C, whose tps line differs.
const pgbench15Connect = `transaction type: <builtin: select only>
number of transactions actually processed: 420
number of failed transactions: 2 (0.474%)
latency average = 28.571 ms
average connection time = 20.100 ms
tps = 140.001 (including reconnection times)
`

func TestParsePgbench(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want pgbenchOutput
		err  bool
	}{
		{"select-only", pgbench15, pgbenchOutput{TPS: 25141.394771, LatencyMs: 0.318, Transactions: 75233}, false},
		{"connect", pgbench15Connect, pgbenchOutput{TPS: 140.001, LatencyMs: 28.571, Transactions: 420, Failed: 2}, false},
		{"no tps", "number of transactions actually processed: 1\n", pgbenchOutput{}, true},
		{"no count", "tps = 1.0 (without initial connection time)\n", pgbenchOutput{}, true},
		{"error", "pgbench: error: connection to server failed\n", pgbenchOutput{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePgbench(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"Name:\tpgcertgate\nVmHWM:\t  20000 kB\nVmRSS:\t   13632 kB\nRssAnon:\t 5000 kB\n", 13632 * 1024, false},
		{"Name:\tx\n", 0, true},
		{"VmRSS:\t 12 MB\n", 0, true},
	} {
		got, err := parseVmRSS(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseVmRSS(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want summary
	}{
		{nil, summary{}},
		{[]float64{3}, summary{1, 3, 3, 3}},
		{[]float64{5, 1, 3}, summary{3, 3, 1, 5}},
		{[]float64{4, 1, 3, 2}, summary{4, 2.5, 1, 4}},
	} {
		if got := summarize(tc.in); got != tc.want {
			t.Errorf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRoundRatios(t *testing.T) {
	runs := []runResult{
		{Target: "a", Workload: "S8", Round: 1, Value: 90},
		{Target: "b", Workload: "S8", Round: 1, Value: 100},
		{Target: "a", Workload: "S8", Round: 2, Value: 110},
		{Target: "b", Workload: "S8", Round: 2, Value: 100},
		{Target: "a", Workload: "C4", Round: 2, Value: 1},
		{Target: "a", Workload: "S8", Round: 3, Value: 50}, // b missing in round 3
	}
	got := roundRatios(runs, "S8", "a", "b")
	want := []float64{0.9, 1.1}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestPprofShown(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"Type: alloc_space\nShowing nodes accounting for 388.19kB, 14.93% of 2599.32kB total\n", 397506},
		{"Showing nodes accounting for 2.23MB, 87.72% of 2.54MB total\n", 2338324},
		{"Type: alloc_objects\nShowing nodes accounting for 44, 100% of 7953 total\n", 44},
		{"Type: alloc_space\n", 0},
	} {
		if got := pprofShown(tc.in); got != tc.want {
			t.Errorf("pprofShown(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseGoMem(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 3012
go_memstats_heap_inuse_bytes 4.5e+07
go_memstats_stack_inuse_bytes 2.4117248e+07
go_memstats_heap_inuse_bytes_total 1
`
	got := parseGoMem(text)
	want := goMem{HeapInuse: 4.5e7, StackInuse: 2.4117248e7, Goroutines: 3012, OK: true}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if g := parseGoMem("go_goroutines 1\n"); g.OK {
		t.Fatalf("partial exposition reported OK: %+v", g)
	}
}
