package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/image-prewarm/image-prewarm/pkg/app"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/logging/logtest"
	"github.com/image-prewarm/image-prewarm/test/cluster"
)

// kwok plays pods without running them, and the test cluster has no kube-proxy or
// cluster DNS. So a chart replica here is the real binary's app.Run in this process,
// started with the Deployment's own args (addresses and certificate directory made
// local) as the chart's ServiceAccount; and its pod is a stand-in: a pod from the
// Deployment's template on a node kwok ignores, whose status this test writes as the
// kubelet would: Running, and Ready exactly when the chart's readinessProbe (path,
// scheme, port) answers 200. The EndpointSlice and Endpoints controllers are the real
// ones.

// replica is one image-prewarm process run with the chart's Deployment args.
type replica struct {
	t       *testing.T
	name    string
	podIP   string // what its stand-in pod reports; nothing listens there
	certDir string
	webhook int    // port of the webhook
	metrics string // host:port of /metrics, /healthz, /readyz
	probe   *corev1.HTTPGetAction
	logs    *logtest.Buffer
}

// startReplica runs app.Run with d's container args until the test ends.
func startReplica(t *testing.T, d *appsv1.Deployment, name, podIP string, restCfg *rest.Config) *replica {
	t.Helper()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	r := &replica{t: t, name: name, podIP: podIP, certDir: t.TempDir(), webhook: ports[0],
		metrics: "127.0.0.1:" + strconv.Itoa(ports[2]), logs: &logtest.Buffer{}}
	c := d.Spec.Template.Spec.Containers[0]
	r.probe = c.ReadinessProbe.HTTPGet
	checkProbePort(t, c, r.probe)
	args := localArgs(c.Args, map[string]string{
		"--cert-dir": r.certDir, "--webhook-port": strconv.Itoa(ports[0]),
		"--task-api-addr": "127.0.0.1:" + strconv.Itoa(ports[1]), "--metrics-addr": r.metrics,
	})
	cfg, err := app.Parse(append(args, "--identity="+name), io.Discard)
	if err != nil {
		t.Fatalf("the Deployment's args %q: %v", c.Args, err)
	}
	logger, err := logging.New(logging.FormatJSON, 1, r.logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, restCfg, logger) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("replica %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("replica %s log tail:\n%s", name, r.logs.Tail(3000))
		}
	})
	return r
}

// localArgs replaces the value of each flag in repl (every one must be there).
func localArgs(args []string, repl map[string]string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		if v, ok := repl[name]; ok {
			a = name + "=" + v
			delete(repl, name)
		}
		out = append(out, a)
	}
	for name := range repl {
		panic("the Deployment has no " + name)
	}
	return out
}

// checkProbePort: the probe's named port is the container port --metrics-addr serves.
func checkProbePort(t *testing.T, c corev1.Container, probe *corev1.HTTPGetAction) {
	t.Helper()
	var metricsPort string
	for _, a := range c.Args {
		if addr, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
			metricsPort = strings.TrimPrefix(addr, ":")
		}
	}
	for _, p := range c.Ports {
		if p.Name == probe.Port.String() && strconv.Itoa(int(p.ContainerPort)) == metricsPort {
			return
		}
	}
	t.Fatalf("readinessProbe port %s is not the container port of --metrics-addr :%s (%+v)", probe.Port.String(), metricsPort, c.Ports)
}

// insecure is the kubelet's prober: HTTPS without verification.
var insecure = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as the kubelet probes

// get fetches path from the replica's probe port with the probe's scheme.
func (r *replica) get(path string) (int, string) {
	url := strings.ToLower(string(r.probe.Scheme)) + "://" + r.metrics + path
	resp, err := insecure.Get(url) //nolint:noctx // bounded by the client's timeout
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// ready is what the kubelet's readiness prober would decide now.
func (r *replica) ready() bool {
	code, _ := r.get(r.probe.Path)
	return code >= 200 && code < 400
}

// standInNode is a node kwok ignores: the stand-in pods are bound to it, and only this
// test writes their status.
func standInNode(t *testing.T, ns string) string {
	t.Helper()
	name := ns + "-stand-in"
	if err := kube.CreateNodes(t.Context(), cluster.NodeSpec{Name: name, Unmanaged: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.DeleteNode(context.Background(), name) })
	return name
}

// createStandIn creates the replica's pod from the Deployment's template on node.
func (r *replica) createStandIn(d *appsv1.Deployment, node string) {
	r.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: d.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = node
	if _, err := kube.Client.CoreV1().Pods(d.Namespace).Create(r.t.Context(), pod, metav1.CreateOptions{}); err != nil {
		r.t.Fatalf("stand-in pod %s: %v", r.name, err)
	}
}

// syncStandIn writes the pod status the kubelet would: Running, Ready as probed now.
func (r *replica) syncStandIn(ctx context.Context, ns string) (bool, error) {
	ready := r.ready()
	pods := kube.Client.CoreV1().Pods(ns)
	pod, err := pods.Get(ctx, r.name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: r.podIP, PodIPs: []corev1.PodIP{{IP: r.podIP}}, HostIP: "10.0.0.1", StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
			{Type: corev1.ContainersReady, Status: cond}, {Type: corev1.PodReady, Status: cond},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image, Ready: ready, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return ready, err
}

// endpointReady is the readiness the Service's EndpointSlices give the replica's pod:
// "missing" until the EndpointSlice controller lists it.
func endpointReady(t *testing.T, ns, service, pod string) string {
	t.Helper()
	slices, err := kube.Client.DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.TargetRef != nil && ep.TargetRef.Name == pod {
				return fmt.Sprintf("ready=%v", ep.Conditions.Ready != nil && *ep.Conditions.Ready)
			}
		}
	}
	return "missing"
}

// saConfig is the admin's configuration impersonating a ServiceAccount, with the
// groups a token of that ServiceAccount carries.
func saConfig(ns, sa string) *rest.Config {
	cfg := rest.CopyConfig(kube.Config)
	cfg.Impersonate.UserName = fmt.Sprintf("system:serviceaccount:%s:%s", ns, sa)
	cfg.Impersonate.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	return cfg
}
