package integration

// The deployment examples under deploy/ cannot run here (no Docker, no
// Kubernetes, no systemd as PID 1). This test parses them with the YAML
// library lineage kubectl uses (go-yaml v2: YAML 1.1, so 0440 is octal)
// and checks the details that matter: the configuration they embed loads,
// the probes reach the admin port, the key's mode passes the key check,
// and the shutdown timings nest.

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/identmap"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

type k8sMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	SecurityContext struct {
		RunAsUser              *int64 `yaml:"runAsUser"`
		RunAsGroup             *int64 `yaml:"runAsGroup"`
		ReadOnlyRootFilesystem bool   `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

func (c *k8sContainer) port(ref any) int {
	switch v := ref.(type) {
	case int:
		return v
	case string:
		for _, p := range c.Ports {
			if p.Name == v {
				return p.ContainerPort
			}
		}
	}
	return 0
}

func (c *k8sContainer) mount(volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

type k8sDeployment struct {
	Spec struct {
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					FSGroup      *int64 `yaml:"fsGroup"`
					RunAsNonRoot bool   `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName  string `yaml:"secretName"`
						DefaultMode *int   `yaml:"defaultMode"`
					} `yaml:"secret"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
					EmptyDir any `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// k8sDocs reads every YAML document of every file named by the
// kustomization, keyed by kind/name.
func k8sDocs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &kust); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(kust.Resources, base) {
			t.Errorf("%s is not listed in kustomization.yaml", base)
		}
	}
	docs := map[string][]byte{}
	for _, res := range kust.Resources {
		data, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var raw yaml.MapSlice
			if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			doc, err := yaml.Marshal(raw)
			if err != nil {
				t.Fatal(err)
			}
			var m k8sMeta
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Fatal(err)
			}
			if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
				t.Errorf("%s: a document lacks apiVersion, kind or metadata.name", res)
			}
			docs[m.Kind+"/"+m.Metadata.Name] = doc
		}
	}
	return docs
}

func TestOpsDeployKubernetes(t *testing.T) {
	docs := k8sDocs(t, "../deploy/kubernetes")
	need := func(key string, into any) {
		t.Helper()
		doc, ok := docs[key]
		if !ok {
			t.Fatalf("no %s in deploy/kubernetes (have %v)", key, slices.Sorted(func(yield func(string) bool) {
				for k := range docs {
					if !yield(k) {
						return
					}
				}
			}))
		}
		if err := yaml.Unmarshal(doc, into); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	var dep k8sDeployment
	need("Deployment/postgres", &dep)
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	need("ConfigMap/pgcertgate-config", &cm)
	var cert struct {
		Spec struct {
			SecretName string   `yaml:"secretName"`
			Usages     []string `yaml:"usages"`
		} `yaml:"spec"`
	}
	need("Certificate/pgcertgate-server", &cert)
	var svc struct {
		Spec struct {
			Ports []struct {
				TargetPort any `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	need("Service/postgres", &svc)

	pod := dep.Spec.Template.Spec
	var gate, pg *k8sContainer
	for i := range pod.Containers {
		switch pod.Containers[i].Name {
		case "pgcertgate":
			gate = &pod.Containers[i]
		case "postgres":
			pg = &pod.Containers[i]
		}
	}
	if gate == nil || pg == nil {
		t.Fatal("the pod needs a postgres and a pgcertgate container")
	}

	// The configuration the ConfigMap carries loads, at the path the
	// container is told.
	if len(gate.Args) != 3 || gate.Args[0] != "serve" || gate.Args[1] != "--config" {
		t.Fatalf("pgcertgate args %q", gate.Args)
	}
	cfgPath := gate.Args[2]
	if dir := gate.mount("config"); filepath.Dir(cfgPath) != dir {
		t.Errorf("--config %s is not in the ConfigMap mount %s", cfgPath, dir)
	}
	cfg, err := config.Parse(cfgPath, []byte(cm.Data[filepath.Base(cfgPath)]))
	if err != nil {
		t.Fatalf("the ConfigMap's %s: %v", filepath.Base(cfgPath), err)
	}
	tmp := t.TempDir()
	for _, name := range []string{"pg_hba.conf", "pg_ident.conf"} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(cm.Data[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if filepath.Base(cfg.HBAFile) != "pg_hba.conf" || filepath.Base(cfg.IdentFile) != "pg_ident.conf" {
		t.Errorf("hba_file %s, ident_file %s", cfg.HBAFile, cfg.IdentFile)
	}
	if _, err := hba.Load(filepath.Join(tmp, "pg_hba.conf"), authfile.ReadOptions{}); err != nil {
		t.Errorf("the ConfigMap's pg_hba.conf: %v", err)
	}
	if _, err := identmap.Load(filepath.Join(tmp, "pg_ident.conf"), authfile.ReadOptions{}); err != nil {
		t.Errorf("the ConfigMap's pg_ident.conf: %v", err)
	}
	if !cfg.WatchFiles {
		t.Error("watch_files is off: ConfigMap and Secret updates would need a SIGHUP")
	}

	// Certificates come from cert-manager's Secret, mounted where the
	// configuration looks, with a mode the key check accepts.
	tlsDir := gate.mount("tls")
	for _, f := range []string{cfg.SSLCertFile, cfg.SSLKeyFile, cfg.SSLCAFile} {
		if filepath.Dir(f) != tlsDir {
			t.Errorf("%s is not in the Secret mount %s", f, tlsDir)
		}
	}
	var secretMode int
	for _, v := range pod.Volumes {
		if v.Name == "tls" {
			if v.Secret == nil || v.Secret.SecretName != cert.Spec.SecretName {
				t.Errorf("the tls volume is not the Certificate's Secret %q", cert.Spec.SecretName)
			} else if v.Secret.DefaultMode != nil {
				secretMode = *v.Secret.DefaultMode
			}
		}
	}
	// Secret files are owned by root with group fsGroup. PostgreSQL's
	// check_ssl_key_file_permissions (and pgcertgate's) allows a
	// root-owned key at most u=rw,g=r; the proxy reads it through the
	// group.
	if secretMode != 0o440 {
		t.Errorf("Secret defaultMode %#o, want 0440", secretMode)
	}
	if secretMode&0o037 != 0 || secretMode&0o040 == 0 {
		t.Errorf("Secret defaultMode %#o fails the key check or is unreadable by the group", secretMode)
	}
	if pod.SecurityContext.FSGroup == nil {
		t.Error("no fsGroup: the non-root proxy could not read the 0440 key")
	}
	if !slices.Contains(cert.Spec.Usages, "server auth") {
		t.Errorf("Certificate usages %v lack server auth", cert.Spec.Usages)
	}

	// The backend is the socket on the shared emptyDir.
	backend, err := config.ParseBackendDSN(cfg.Backend.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if sock := gate.mount("socket"); sock == "" || backend.Host != sock || pg.mount("socket") != sock {
		t.Errorf("backend host %s; socket mounts: pgcertgate %q, postgres %q", backend.Host, sock, pg.mount("socket"))
	}

	// Probes reach the admin endpoint, which listens on every address.
	host, port, err := net.SplitHostPort(cfg.Admin.ListenAddress)
	if err != nil || (host != "" && host != "0.0.0.0" && host != "::") || port != "9930" {
		t.Errorf("admin listen_address %q: kubelet probes the pod IP on 9930", cfg.Admin.ListenAddress)
	}
	for _, p := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{{"readiness", gate.ReadinessProbe, "/readyz"}, {"liveness", gate.LivenessProbe, "/healthz"}, {"startup", gate.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || gate.port(p.probe.HTTPGet.Port) != 9930 {
			t.Errorf("%s probe does not GET %s on 9930", p.name, p.path)
		}
	}
	if gate.port("postgresql") != cfg.Port {
		t.Errorf("container port postgresql = %d, configuration port = %d", gate.port("postgresql"), cfg.Port)
	}
	for _, sp := range svc.Spec.Ports {
		if gate.port(sp.TargetPort) == 0 {
			t.Errorf("Service targetPort %v is no pgcertgate container port", sp.TargetPort)
		}
	}

	// Shutdown timings nest: the grace period covers the preStop sleep
	// plus the drain, and PostgreSQL waits for the proxy to be gone.
	if gate.Lifecycle.PreStop == nil || gate.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("pgcertgate has no preStop sleep")
	}
	preStop := time.Duration(gate.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
	if grace <= preStop+cfg.ShutdownTimeout.Duration {
		t.Errorf("terminationGracePeriodSeconds %v <= preStop %v + shutdown_timeout %v", grace, preStop, cfg.ShutdownTimeout.Duration)
	}
	if pg.Lifecycle.PreStop == nil || pg.Lifecycle.PreStop.Exec == nil || !strings.Contains(strings.Join(pg.Lifecycle.PreStop.Exec.Command, " "), "9930") {
		t.Error("postgres has no preStop waiting for pgcertgate (its admin port) to exit")
	} else if m := regexp.MustCompile(`seq (\d+)`).FindStringSubmatch(strings.Join(pg.Lifecycle.PreStop.Exec.Command, " ")); m == nil {
		t.Error("postgres's preStop wait is unbounded")
	} else if n, _ := strconv.Atoi(m[1]); time.Duration(n)*time.Second < preStop+cfg.ShutdownTimeout.Duration || time.Duration(n)*time.Second >= grace {
		t.Errorf("postgres waits %ds for the proxy: want between preStop+shutdown_timeout and the grace period", n)
	}

	// Non-root, read-only.
	if !pod.SecurityContext.RunAsNonRoot || gate.SecurityContext.RunAsUser == nil || *gate.SecurityContext.RunAsUser == 0 || !gate.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("pgcertgate must run as a non-root user on a read-only root file system")
	}
}

func TestOpsDeploySystemdAndDocker(t *testing.T) {
	unit, err := os.ReadFile("../deploy/systemd/pgcertgate.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(unit), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("pgcertgate.service:%d: not key=value: %q", i+1, line)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	for key, want := range map[string]string{
		"Service.ExecReload": "/bin/kill -HUP $MAINPID",
		"Service.ExecStart":  "/usr/local/bin/pgcertgate serve --config /etc/pgcertgate/pgcertgate.toml",
		"Service.KillSignal": "SIGTERM",
		"Install.WantedBy":   "multi-user.target",
	} {
		if got := keys[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if stop, err := time.ParseDuration(strings.Join(keys["Service.TimeoutStopSec"], "")); err != nil || stop <= config.Defaults().ShutdownTimeout.Duration {
		t.Errorf("TimeoutStopSec %v must exceed the default shutdown_timeout %v", keys["Service.TimeoutStopSec"], config.Defaults().ShutdownTimeout.Duration)
	}

	df, err := os.ReadFile("../deploy/docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from, user string
	for _, line := range strings.Split(string(df), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			switch strings.ToUpper(f[0]) {
			case "FROM":
				from, user = f[1], ""
			case "USER":
				user = f[1]
			}
		}
	}
	if !strings.HasPrefix(from, "gcr.io/distroless/static") && from != "scratch" {
		t.Errorf("final stage FROM %s: want distroless static or scratch", from)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("final stage USER %q: want a non-root user", user)
	}
	if !strings.Contains(string(df), "CGO_ENABLED=0") {
		t.Error("the build is not static (CGO_ENABLED=0)")
	}
}
