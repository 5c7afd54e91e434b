package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLedgerConnectCost measures connect-per-transaction through
// pgcertgate with the identity ledger on and off: pgbench -C -S against
// two `pgcertgate serve` processes (built without -race) in front of the
// same PostgreSQL, in alternating rounds. It is a measurement, not a
// test: it runs only with TEST_PGCG_LEDGER_BENCH=1 (seconds per run in
// TEST_PGCG_LEDGER_BENCH_T, default 10; rounds in TEST_PGCG_LEDGER_BENCH_ROUNDS,
// default 3), and reports the throughput ratio.
func TestLedgerConnectCost(t *testing.T) {
	if os.Getenv("TEST_PGCG_LEDGER_BENCH") == "" {
		t.Skip("a measurement: set TEST_PGCG_LEDGER_BENCH=1")
	}
	seconds, rounds := envInt("TEST_PGCG_LEDGER_BENCH_T", 10), envInt("TEST_PGCG_LEDGER_BENCH_ROUNDS", 3)
	w := ledgerWorld(t, "")
	bin := filepath.Join(t.TempDir(), "pgcertgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/pgcertgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.Command("pgbench", "-i", "-q", "-d", w.cluster.SuperuserDSN()+" dbname=app").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	w.setupIn(t, "app", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO app")
	cfg, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		name string
		port int
		tps  []float64
	}
	targets := []*target{{name: "ledger off"}, {name: "ledger on"}}
	for _, tg := range targets {
		tg.port = freePort(t)
		text := strings.Replace(string(cfg), "port = 6432", fmt.Sprintf("port = %d", tg.port), 1)
		// Top-level keys go before the first table.
		text = "log_level = \"warn\"\n" + text
		if tg.name == "ledger off" {
			text = strings.Replace(text, "identity_ledger = true", "identity_ledger = false", 1)
		}
		path := filepath.Join(w.dir, strings.ReplaceAll(tg.name, " ", "-")+".toml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", "--config", path)
		cmd.Env = cleanEnv()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		// Serving once a TCP connection is accepted.
		for deadline := time.Now().Add(30 * time.Second); ; {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tg.port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not listening: %v", tg.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cert, key := w.clientFiles("alice")
	tpsLine := regexp.MustCompile(`tps = ([0-9.]+) \((?:including reconnection times|without initial connection time)\)`)
	for r := range rounds {
		for _, tg := range targets {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+60)*time.Second)
			cmd := exec.CommandContext(ctx, "pgbench", "-n", "-C", "-S", "-c", "4", "-j", "2", "-T", strconv.Itoa(seconds),
				"-h", "127.0.0.1", "-p", strconv.Itoa(tg.port), "-U", "app", "app")
			cmd.Env = append(cleanEnv(), "PGSSLMODE=verify-full", "PGSSLROOTCERT="+filepath.Join(w.dir, "root.crt"),
				"PGSSLCERT="+cert, "PGSSLKEY="+key)
			out, err := cmd.CombinedOutput()
			cancel()
			m := tpsLine.FindSubmatch(out)
			if err != nil || m == nil {
				t.Fatalf("pgbench against %s: %v\n%s", tg.name, err, out)
			}
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			tg.tps = append(tg.tps, v)
			t.Logf("round %d %-10s %8.1f tps", r+1, tg.name, v)
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	off, on := median(targets[0].tps), median(targets[1].tps)
	t.Logf("connect per transaction (pgbench -C -S -c 4 -j 2 -T %d, %d rounds, medians): ledger off %.1f tps, on %.1f tps, ratio %.3f", seconds, rounds, off, on, on/off)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
