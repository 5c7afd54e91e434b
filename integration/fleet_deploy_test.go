package integration

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

// TestOpsDeployGateway checks deploy/k8s/gateway as TestOpsDeployKubernetes
// checks deploy/kubernetes: every document parses; the ConfigMap's
// configuration passes `pgcertgate check` with the Secrets' files where
// the pod mounts them; the StatefulSet, both Services and the
// PodDisruptionBudget agree on names, labels and ports; the drain's
// timings nest inside the grace period with a margin; and the image is
// pinned.
func TestOpsDeployGateway(t *testing.T) {
	docs := k8sDocs(t, "../deploy/k8s/gateway")
	need := func(key string, into any) {
		t.Helper()
		doc, ok := docs[key]
		if !ok {
			t.Fatalf("no %s in deploy/k8s/gateway", key)
		}
		if err := yaml.Unmarshal(doc, into); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	var dep k8sDeployment
	need("StatefulSet/pgcertgate-gateway", &dep)
	var sts struct {
		Spec struct {
			ServiceName string `yaml:"serviceName"`
			Replicas    int    `yaml:"replicas"`
			Selector    struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	need("StatefulSet/pgcertgate-gateway", &sts)
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	need("ConfigMap/pgcertgate-gateway-config", &cm)
	type service struct {
		Spec struct {
			ClusterIP                string            `yaml:"clusterIP"`
			PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
			Selector                 map[string]string `yaml:"selector"`
			Ports                    []struct {
				Port       int `yaml:"port"`
				TargetPort any `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	var svc, peersSvc service
	need("Service/pgcertgate-gateway", &svc)
	need("Service/"+sts.Spec.ServiceName, &peersSvc)
	var pdb struct {
		Spec struct {
			MaxUnavailable any `yaml:"maxUnavailable"`
			MinAvailable   any `yaml:"minAvailable"`
			Selector       struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
		} `yaml:"spec"`
	}
	need("PodDisruptionBudget/pgcertgate-gateway", &pdb)
	type certificate struct {
		Spec struct {
			SecretName string   `yaml:"secretName"`
			Usages     []string `yaml:"usages"`
		} `yaml:"spec"`
	}
	var serverCert, peerCert certificate
	need("Certificate/pgcertgate-gateway-server", &serverCert)
	need("Certificate/pgcertgate-gateway-peer", &peerCert)

	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "pgcertgate" {
		t.Fatalf("the pod needs exactly one pgcertgate container")
	}
	gate := &pod.Containers[0]
	if sts.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3", sts.Spec.Replicas)
	}
	labels := sts.Spec.Template.Metadata.Labels
	for what, sel := range map[string]map[string]string{"StatefulSet selector": sts.Spec.Selector.MatchLabels, "Service": svc.Spec.Selector, "peers Service": peersSvc.Spec.Selector, "PodDisruptionBudget": pdb.Spec.Selector.MatchLabels} {
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not carry (%v)", what, k, v, labels)
			}
		}
	}
	if fmtAny(pdb.Spec.MaxUnavailable) != "1" && fmtAny(pdb.Spec.MinAvailable) != "2" {
		t.Errorf("PodDisruptionBudget maxUnavailable %v minAvailable %v: want one replica down at a time", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
	if peersSvc.Spec.ClusterIP != "None" || !peersSvc.Spec.PublishNotReadyAddresses {
		t.Errorf("peers Service clusterIP %q publishNotReadyAddresses %v: want a headless Service that lists draining replicas", peersSvc.Spec.ClusterIP, peersSvc.Spec.PublishNotReadyAddresses)
	}

	// The configuration, with the Secrets' files where the pod mounts
	// them, passes `pgcertgate check`.
	if len(gate.Args) != 3 || gate.Args[0] != "serve" || gate.Args[1] != "--config" {
		t.Fatalf("pgcertgate args %q", gate.Args)
	}
	cfgPath := gate.Args[2]
	if dir := gate.mount("config"); filepath.Dir(cfgPath) != dir {
		t.Errorf("--config %s is not in the ConfigMap mount %s", cfgPath, dir)
	}
	text := cm.Data[filepath.Base(cfgPath)]
	cfg, err := config.Parse(cfgPath, []byte(strings.Replace(text, `replica_id = "auto"`, "replica_id = 0", 1)))
	if err != nil {
		t.Fatalf("the ConfigMap's %s: %v", filepath.Base(cfgPath), err)
	}
	if !strings.Contains(text, `replica_id = "auto"`) {
		t.Error(`replica_id is not "auto": the StatefulSet's ordinals give each replica its id`)
	}
	root := t.TempDir()
	ca, err := testpki.NewRootCA(pkix.Name{CommonName: "gateway test CA"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.NewServer("pgcertgate-gateway", []string{"pgcertgate-gateway"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The peer certificate serves as client and as server; check
	// verifies it against the peers' CA for both.
	peerLeaf, err := ca.NewClient(pkix.Name{CommonName: "pgcertgate-gateway-0"}, testpki.WithEKU(x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth))
	if err != nil {
		t.Fatal(err)
	}
	secretOf := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret == nil {
			continue
		}
		secretOf[v.Name] = v.Secret.SecretName
		if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440 {
			t.Errorf("Secret volume %s: defaultMode %v, want 0440", v.Name, v.Secret.DefaultMode)
		}
		dir := filepath.Join(root, gate.mount(v.Name))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		l := leaf
		if v.Name == "peer" {
			l = peerLeaf
		}
		if err := l.WriteFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
			t.Fatal(err)
		}
		if err := testpki.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if pod.SecurityContext.FSGroup == nil {
		t.Error("no fsGroup: the non-root gateway could not read the 0440 keys")
	}
	inMount := func(volume string, files ...string) {
		t.Helper()
		for _, f := range files {
			if dir := gate.mount(volume); dir == "" || filepath.Dir(f) != dir {
				t.Errorf("%s is not in the %s volume's mount %q", f, volume, dir)
			}
		}
	}
	inMount("tls", cfg.SSLCertFile, cfg.SSLKeyFile, cfg.SSLCAFile)
	inMount("peer", cfg.Cluster.PeerSSLCertFile, cfg.Cluster.PeerSSLKeyFile, cfg.Cluster.PeerSSLCAFile)
	if secretOf["tls"] != serverCert.Spec.SecretName || secretOf["peer"] != peerCert.Spec.SecretName {
		t.Errorf("Secret volumes %v, Certificates' Secrets %q and %q", secretOf, serverCert.Spec.SecretName, peerCert.Spec.SecretName)
	}
	for _, u := range []string{"server auth", "client auth"} {
		if !slices.Contains(peerCert.Spec.Usages, u) {
			t.Errorf("the peer Certificate lacks %q: each replica is client and server on the peer channel", u)
		}
	}
	local := strings.ReplaceAll(text, `"/etc/pgcertgate/`, `"`+root+`/etc/pgcertgate/`)
	local = strings.ReplaceAll(local, `=/etc/pgcertgate/`, `=`+root+`/etc/pgcertgate/`)
	// The test host's name ends in no ordinal.
	local = strings.Replace(local, `replica_id = "auto"`, "replica_id = 0", 1)
	cfgDir := filepath.Join(root, gate.mount("config"))
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{filepath.Base(cfgPath): local, "pg_hba.conf": cm.Data["pg_hba.conf"], "pg_ident.conf": cm.Data["pg_ident.conf"]} {
		if err := os.WriteFile(filepath.Join(cfgDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(pgcertgateBinary(t), "check", "--config", filepath.Join(cfgDir, filepath.Base(cfgPath))).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("pgcertgate check: %v\n%s", err, out)
	}

	// Cluster: the replicas find each other through the headless
	// Service on the client port, and a peer certificate is required.
	if !cfg.ClusterOn() || cfg.Cluster.PeersDNS == "" || !cfg.PeerSSLRequired() {
		t.Errorf("[cluster]: replica_id %v, peers_dns %q, peer_ssl %q", cfg.Cluster.ReplicaID, cfg.Cluster.PeersDNS, cfg.Cluster.PeerSSL)
	}
	host, port, _ := net.SplitHostPort(cfg.Cluster.PeersDNS)
	if first, _, _ := strings.Cut(host, "."); first != sts.Spec.ServiceName {
		t.Errorf("peers_dns %q is not the StatefulSet's headless Service %q", cfg.Cluster.PeersDNS, sts.Spec.ServiceName)
	}
	if port != strconv.Itoa(cfg.Port) || gate.port("postgresql") != cfg.Port {
		t.Errorf("peers_dns port %s, configuration port %d, container port %d", port, cfg.Port, gate.port("postgresql"))
	}
	for name, s := range map[string]service{"Service": svc, "peers Service": peersSvc} {
		for _, sp := range s.Spec.Ports {
			if gate.port(sp.TargetPort) == 0 {
				t.Errorf("%s targetPort %v is no container port", name, sp.TargetPort)
			}
		}
	}
	if _, p, err := net.SplitHostPort(cfg.Admin.ListenAddress); err != nil || p != "9930" {
		t.Errorf("admin listen_address %q", cfg.Admin.ListenAddress)
	}
	rp := gate.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || gate.port(rp.HTTPGet.Port) != 9930 {
		t.Fatal("readiness probe does not GET /readyz on the admin port")
	}

	// The drain's timings nest: the readiness probe notices the drain
	// within drain_delay, and the grace period covers any preStop sleep,
	// drain_delay and shutdown_timeout.
	var probe struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						ReadinessProbe struct {
							PeriodSeconds    int `yaml:"periodSeconds"`
							FailureThreshold int `yaml:"failureThreshold"`
						} `yaml:"readinessProbe"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	need("StatefulSet/pgcertgate-gateway", &probe)
	rps := probe.Spec.Template.Spec.Containers[0].ReadinessProbe
	if notice := time.Duration(rps.PeriodSeconds*max(rps.FailureThreshold, 1)) * time.Second; notice <= 0 || notice >= cfg.DrainDelay.Duration {
		t.Errorf("readiness period × failureThreshold %v, drain_delay %v: the probe must notice first", notice, cfg.DrainDelay.Duration)
	}
	var preStop time.Duration
	if ps := gate.Lifecycle.PreStop; ps != nil && ps.Sleep != nil {
		preStop = time.Duration(ps.Sleep.Seconds) * time.Second
	}
	// After the drain, serve gives the admin endpoint up to 5s to close
	// (cmd/pgcertgate); past all that, a margin keeps a slow exit from
	// SIGKILL.
	const adminClose, margin = 5 * time.Second, 10 * time.Second
	grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
	if need := preStop + cfg.DrainDelay.Duration + cfg.ShutdownTimeout.Duration + adminClose + margin; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + drain_delay %v + shutdown_timeout %v + admin close %v + margin %v = %v", grace, preStop, cfg.DrainDelay.Duration, cfg.ShutdownTimeout.Duration, adminClose, margin, need)
	}
	// A rolling update replaces pods one by one: with a moving tag they
	// could run different builds.
	if ref := gate.Image; !strings.Contains(ref, "@sha256:") {
		if i := strings.LastIndex(ref, ":"); i < 0 || i < strings.LastIndex(ref, "/") || ref[i+1:] == "latest" {
			t.Errorf("image %q: pin a version tag (or a digest), not latest or none", ref)
		}
	}
	if !pod.SecurityContext.RunAsNonRoot || gate.SecurityContext.RunAsUser == nil || *gate.SecurityContext.RunAsUser == 0 || !gate.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("pgcertgate must run as a non-root user on a read-only root file system")
	}
}

func fmtAny(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case int:
		return strconv.Itoa(x)
	case string:
		return x
	}
	return ""
}
