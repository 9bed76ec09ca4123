// Package realnode runs the controller, as the built binary, against a real kubelet and
// containerd that pull from a real password-protected registry (test/cluster with
// RealNodes: 1). Every claim kwok cannot back is checked here: the ephemeral Secret
// really authenticates a pull, kubelet's real failure texts, status.images, and what
// KEP-2535 means for workloads once the Secret is gone.
package realnode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

var (
	kube *cluster.Cluster
	// binary is image-prewarm built from this tree, run as a process like in a pod.
	binary string
	node   *cluster.RealNode
)

func TestMain(m *testing.M) {
	os.Exit(cluster.RunTests(m, cluster.Options{RealNodes: 1}, func(c *cluster.Cluster) {
		kube, node = c, c.RealNodes()[0]
		var err error
		if binary, err = prewarmtest.BuildController(c.Dir); err != nil {
			panic(err)
		}
		if err := pushTestImages(context.Background()); err != nil {
			panic(err)
		}
	}))
}

// env is one test's namespace and its controller process.
type env struct {
	t          *testing.T
	ns         string
	logFile    string
	taskURL    string
	metricsURL string
	jobs       *prewarmtest.JobRecord // every Job of the namespace: recorded ones are deleted
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "_", "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	if err := kube.Namespace(t.Context(), ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ns: ns}
	ctx, stop := context.WithCancel(context.Background())
	var err error
	if e.jobs, err = prewarmtest.RecordJobs(ctx, kube.Client, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	t.Cleanup(func() {
		_ = kube.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return e
}

// startController runs the built binary with the task API on plain HTTP (loopback) and
// no webhook, as one replica without leader election.
func (e *env) startController() {
	e.t.Helper()
	ports := freePorts(e.t, 2)
	e.taskURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	e.metricsURL = "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/metrics"
	e.logFile = filepath.Join(e.t.TempDir(), "controller.log")
	log, err := os.Create(e.logFile)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(binary, "--kubeconfig="+kube.Kubeconfig, "--namespace="+e.ns,
		"--noop-image="+kube.NoopImage, "--leader-elect=false", "--webhook=false",
		"--task-api-plain-http", "--task-api-addr=127.0.0.1:"+strconv.Itoa(ports[0]),
		"--metrics-addr=127.0.0.1:"+strconv.Itoa(ports[1]), "--metrics-secure=false", "-v=2")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		log.Close()
	})
}

func (e *env) controllerLog() string {
	raw, _ := os.ReadFile(e.logFile)
	return string(raw)
}

// spec applies a prewarm spec that targets the real node only; extra is appended
// as written (rollout, artifacts).
func (e *env) spec(name string, registries []string, images []string, extra string) {
	e.t.Helper()
	var b strings.Builder
	if len(registries) > 0 {
		b.WriteString("registries:\n")
		for _, r := range registries {
			b.WriteString("  - " + r + "\n")
		}
	}
	if len(images) > 0 {
		b.WriteString("images:\n")
	}
	for _, img := range images {
		b.WriteString("  - " + img + "\n")
	}
	b.WriteString("nodeSelector: {" + cluster.RealNodeLabel + ": \"true\"}\n" + extra)
	if err := prewarmtest.ApplySpec(e.t.Context(), kube.Client, e.ns, name, b.String()); err != nil {
		e.t.Fatal(err)
	}
}

// registryEntry is a registries[] item for the test registry with a credentials Secret.
func registryEntry(secret string) string {
	return fmt.Sprintf("{server: %q, credentialsSecret: %s}", kube.Registry.Host, secret)
}

func (e *env) basicAuth(name, user, password string) {
	e.t.Helper()
	if err := prewarmtest.BasicAuth(e.t.Context(), kube.Client, e.ns, name, user, password); err != nil {
		e.t.Fatal(err)
	}
}

// waitStatus polls the spec's status until cond holds or timeout passes.
func (e *env) waitStatus(spec, what string, timeout time.Duration, cond func(*status.Status) bool) *status.Status {
	e.t.Helper()
	var last *status.Status
	e.eventually(what, timeout, func(ctx context.Context) (bool, error) {
		st, err := prewarmtest.Status(ctx, kube.Client, e.ns, spec)
		if err == nil {
			last = st
		}
		return err == nil && cond(st), nil
	})
	return last
}

func (e *env) eventually(what string, timeout time.Duration, cond wait.ConditionWithContextFunc) {
	e.t.Helper()
	if err := wait.PollUntilContextTimeout(e.t.Context(), 250*time.Millisecond, timeout, true, cond); err != nil {
		e.t.Fatalf("waiting for %s: %v\ncontroller log tail:\n%s", what, err, tail(e.controllerLog(), 3000))
	}
}

func done(s *status.Status) bool { return s.Done() }

// pullSecrets lists the run's ephemeral Secrets.
func (e *env) pullSecrets() []corev1.Secret {
	e.t.Helper()
	list, err := kube.Client.CoreV1().Secrets(e.ns).List(e.t.Context(), metav1.ListOptions{LabelSelector: jobs.LabelApp + "=" + jobs.AppName})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// nodeLists waits until the real node's status.images names image: kubelet refreshes
// its image list every 30 s and its status every 10 s, so this takes up to ~40 s.
func (e *env) nodeLists(image string) {
	e.t.Helper()
	e.eventually("node status.images lists "+image, 2*time.Minute, func(ctx context.Context) (bool, error) {
		n, err := kube.Client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, img := range n.Status.Images {
			for _, name := range img.Names {
				if name == image {
					return true, nil
				}
			}
		}
		return false, nil
	})
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := cluster.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// assertNoPassword fails if the password appears in the controller's log or in any
// object of the namespace other than the ephemeral pull Secret.
func (e *env) assertNoPassword(password string) {
	e.t.Helper()
	if strings.Contains(e.controllerLog(), password) {
		e.t.Error("the password appears in the controller's log")
	}
	ctx := e.t.Context()
	var dump bytes.Buffer
	if cms, err := kube.Client.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		fmt.Fprintf(&dump, "%v", cms.Items)
	}
	if evs, err := kube.Client.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		fmt.Fprintf(&dump, "%v", evs.Items)
	}
	if js, err := kube.Client.BatchV1().Jobs(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		fmt.Fprintf(&dump, "%v", js.Items)
	}
	if pods, err := kube.Client.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		fmt.Fprintf(&dump, "%v", pods.Items)
	}
	if strings.Contains(dump.String(), password) {
		e.t.Error("the password appears in a ConfigMap, Event, Job or pod of the namespace")
	}
}
