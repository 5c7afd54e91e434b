package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// rePort is a configuration's top-level port line.
var rePort = regexp.MustCompile(`(?m)^port = [0-9]+$`)

// rollingReplica is one `pgcertgate serve` child of a rolling restart, on
// ports that survive its restarts.
type rollingReplica struct {
	cfgPath string
	proc    *servedProcess
	log     *syncBuffer // every line of every run, for the counts
	drained chan struct{}
}

// start runs the binary and copies its log lines into r.log until it
// exits: a child whose stderr is not read would block.
func (r *rollingReplica) start(t *testing.T) {
	t.Helper()
	r.proc = startServe(t, r.cfgPath, nil)
	r.proc.waitLog(t, "msg=listening")
	r.drained = make(chan struct{})
	go func(p *servedProcess, done chan struct{}) {
		defer close(done)
		for line := range p.lines {
			r.log.Write([]byte(line + "\n"))
		}
	}(r.proc, r.drained)
}

// stop sends SIGTERM and waits for exit 0.
func (r *rollingReplica) stop(t *testing.T, within time.Duration) {
	t.Helper()
	r.proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.proc.done:
		<-r.drained
		r.proc.done <- err // for startServe's cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, r.log.String())
		}
	case <-time.After(within):
		t.Fatalf("no exit within %v of SIGTERM", within)
	}
}

// TestRollingRestart: HAProxy, with the deploy file's /readyz health
// check, in front of three replicas of the real binary, under a steady
// login load (connect, SELECT 1, close, in a loop). Each replica in turn
// gets SIGTERM, drains (drain_delay covers HAProxy's inter × fall), exits
// and is started again; the next one goes once the restarted replica has
// served a login through HAProxy. No login may fail: a login HAProxy
// still sends to the draining replica is accepted during drain_delay, and
// sessions open there end normally.
func TestRollingRestart(t *testing.T) {
	haproxyBinary(t)
	const (
		workers = 4
		// HAProxy checks every 500ms and needs 3 failures: 1.5s, plus
		// a check's own time on shared cores.
		inter      = "500ms"
		drainDelay = 3 * time.Second
	)
	w := newWorld(t, newPKI(t), worldOptions{
		hba:  "local all all trust\nhostssl all alice 127.0.0.0/8 cert\n",
		conf: map[string]string{"max_connections": "100"},
	})
	w.setup(t, "CREATE ROLE alice LOGIN")
	// In the world's directory, where pg_hba.conf is.
	dir := w.dir
	ports := make([]int, 3)
	admins := make([]int, 3)
	for i := range ports {
		ports[i], admins[i] = opsFreePort(t), opsFreePort(t)
	}
	reps := make([]*rollingReplica, 3)
	var backends []haproxyBackend
	for i := range reps {
		path := opsChildConfig(t, w, dir, fmt.Sprintf("replica%d.toml", i),
			fmt.Sprintf("proxy_protocol = \"on\"\nproxy_protocol_trusted = [\"127.0.0.1/32\"]\ndrain_delay = %q\nshutdown_timeout = \"20s\"", drainDelay))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// The same ports on every run: HAProxy's server lines and the
		// peers name them.
		text := string(data)
		text = rePort.ReplaceAllString(text, fmt.Sprintf("port = %d", ports[i]))
		text = strings.Replace(text, `listen_address = "127.0.0.1:0"`, fmt.Sprintf(`listen_address = "127.0.0.1:%d"`, admins[i]), 1)
		var peers []string
		for j := range ports {
			if j != i {
				peers = append(peers, fmt.Sprintf(`"127.0.0.1:%d"`, ports[j]))
			}
		}
		text += fmt.Sprintf("\n[cluster]\nreplica_id = %d\npeers = [%s]\n", i, strings.Join(peers, ", "))
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		reps[i] = &rollingReplica{cfgPath: path, log: &syncBuffer{}}
		if out, err := exec.Command(pgcertgateBinary(t), "check", "--config", path).CombinedOutput(); err != nil {
			t.Fatalf("replica %d configuration: %v\n%s", i, err, out)
		}
		reps[i].start(t)
		backends = append(backends, haproxyBackend{addr: fmt.Sprintf("127.0.0.1:%d", ports[i]), adminPort: admins[i]})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, r := range reps {
				t.Logf("replica %d log:\n%s", i, r.log.String())
			}
		}
	})
	bind := fmt.Sprintf("127.0.0.1:%d", opsFreePort(t))
	cfg := renderHAProxyCfg(t, bind, backends)
	if !strings.Contains(cfg, " inter 2s ") {
		t.Fatal("the deploy file's default-server no longer says inter 2s")
	}
	// The deploy file's 2s × 3 would make this test slow; drain_delay
	// scales with it.
	cfg = strings.Replace(cfg, " inter 2s ", " inter "+inter+" ", 1)
	h := startHAProxy(t, cfg)
	alice := conn{user: "alice", cert: "alice"}
	waitBalancerUp(t, h, w, bind, alice)

	pcfg, err := pgconn.ParseConfig(w.conninfo(proxy, alice))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(bind)
	pcfg.Host = host
	fmt.Sscan(port, &pcfg.Port)
	pcfg.DialFunc = proxyDial("127.0.0.3", nil, false)

	var ok, failed atomic.Int64
	var mu sync.Mutex
	failures := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := func() error {
					pc, err := pgconn.ConnectConfig(ctx, pcfg)
					if err != nil {
						return err
					}
					defer pc.Close(ctx)
					_, err = pc.Exec(ctx, "SELECT 1").ReadAll()
					return err
				}()
				cancel()
				if err == nil {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				mu.Lock()
				failures[err.Error()]++
				mu.Unlock()
			}
		}()
	}
	began := time.Now()
	for i, r := range reps {
		before := ok.Load()
		r.stop(t, drainDelay+30*time.Second)
		drainLog := r.log.String()
		after := drainLog[strings.LastIndex(drainLog, "received SIGTERM"):]
		servedDraining := strings.Count(after, "connection authorized")
		refused := strings.Count(after, "shutting_down")
		mark := len(r.log.String())
		r.start(t)
		// The next replica goes once this one is back in rotation:
		// HAProxy has sent it a login.
		fleetWait(t, 30*time.Second, fmt.Sprintf("replica %d to serve a login through HAProxy", i), func() bool {
			return strings.Contains(r.log.String()[mark:], "connection authorized")
		})
		t.Logf("replica %d restarted at %v: %d logins meanwhile; it served %d logins after SIGTERM and refused %d with 57P03",
			i, time.Since(began).Round(time.Millisecond), ok.Load()-before, servedDraining, refused)
	}
	close(stop)
	wg.Wait()
	t.Logf("rolling restart of 3 replicas in %v under %d login loops: %d logins succeeded, %d failed %v",
		time.Since(began).Round(time.Millisecond), workers, ok.Load(), failed.Load(), failures)
	if failed.Load() != 0 {
		t.Errorf("%d logins failed during the rolling restart: %v", failed.Load(), failures)
	}
	if ok.Load() < 50 {
		t.Errorf("only %d logins: was there any load?", ok.Load())
	}
}
