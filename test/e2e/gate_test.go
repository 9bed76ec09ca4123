package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

const startupTaint = "image-prewarm.io/prewarming"

// Issue 12: 100 nodes join with the startup taint while a Deployment that does not
// tolerate it waits. No workload pod is bound to a node before that node's prewarm Job
// succeeded (compared by resourceVersion, etcd's global order), every taint goes, every
// node carries the spec's label, and the run costs at most 3 API writes per node. Three
// more nodes fail their pull (401): their taint goes too, each with a Warning Event, and
// they get no label.
func TestStartupTaintHoldsWorkloadsUntilPrewarmed(t *testing.T) {
	const n, failing = 100, 3
	e := newEnv(t)
	client, writes, err := prewarmtest.WriteCounting(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	order := prewarmtest.WatchOrdering(t.Context(), kube.Client, e.ns, "app=gated-workload")
	e.startControllerWith(client)
	e.applySpec("gated", fmt.Sprintf(`registries: [{server: harbor.example.com}]
images: [nginx:1.27, harbor.example.com/fail/model:1]
nodeSelector: {e2e: %s}
rollout: {maxConcurrentNodes: 20, startupTaint: %s, nodeLabel: true}
`, e.ns, startupTaint))
	e.workload("gated-workload", n)
	before := writes.Load()
	withTaint := func(s *cluster.NodeSpec) {
		s.Taints = append(s.Taints, corev1.Taint{Key: startupTaint, Effect: corev1.TaintEffectNoSchedule})
	}
	nodes, bad := e.nodes("gate", n, withTaint), e.nodes("bad", failing, withTaint)
	st := e.waitStatus("gated", "every node reported", func(s *status.Status) bool {
		return s.Counts["Succeeded"] == n && s.Counts["Failed"] == failing
	})
	e.eventually("every taint removed and every good node labelled", time.Minute, func(ctx context.Context) (bool, error) {
		return len(e.nodesGated(ctx, nodes, "gated")) == 0, nil
	})
	e.eventually("the workload's pods bound", time.Minute, func(ctx context.Context) (bool, error) {
		_, bound := order.Snapshot()
		return len(bound) == n, nil
	})
	perNode := float64(writes.Load()-before) / (n + failing)
	completed, bound := order.Snapshot()
	onGood := 0
	for pod, b := range bound {
		if slices.Contains(bad, b.Node) {
			continue // its taint went on the failure, without the images
		}
		onGood++
		if done, ok := completed[b.Node]; !ok || b.RV <= done {
			t.Errorf("pod %s bound to %s at resourceVersion %d, its Job's success at %d (seen: %v)", pod, b.Node, b.RV, done, ok)
		}
	}
	t.Logf("%d nodes: %d results; %d workload pods bound to prewarmed nodes, each after its node's Job succeeded; %.2f API writes per node", n+failing, len(st.Results), onGood, perNode)
	if perNode > 3 {
		t.Errorf("%.2f API writes per node, want ≤ 3", perNode)
	}
	e.checkFailedNodesUngated(bad, "gated")
}

// checkFailedNodesUngated: a failed node loses the taint, gets no label, and a Warning
// Event on the spec says why.
func (e *env) checkFailedNodesUngated(bad []string, spec string) {
	e.t.Helper()
	if left := e.nodesGated(e.t.Context(), bad, spec); len(left) != len(bad) {
		e.t.Errorf("failed nodes %v: only %v lack the label (or keep the taint), want all", bad, left)
	}
	for _, name := range bad {
		node, err := kube.Client.CoreV1().Nodes().Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, taint := range node.Spec.Taints {
			if taint.Key == startupTaint {
				e.t.Errorf("failed node %s keeps the startup taint", name)
			}
		}
	}
	e.eventually("a Warning Event per failed node", 30*time.Second, func(context.Context) (bool, error) {
		count := 0
		for _, ev := range e.events() {
			if ev.Reason == "StartupTaintRemoved" && ev.InvolvedObject.Name == spec && ev.Type == corev1.EventTypeWarning {
				count++
			}
		}
		return count == len(bad), nil
	})
}

// nodesGated returns the nodes that still carry the startup taint or lack the spec's
// label.
func (e *env) nodesGated(ctx context.Context, names []string, spec string) []string {
	var out []string
	for _, name := range names {
		node, err := kube.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			out = append(out, name)
			continue
		}
		tainted := false
		for _, taint := range node.Spec.Taints {
			tainted = tainted || taint.Key == startupTaint
		}
		if tainted || node.Labels[jobs.NodeLabelKey(spec)] != jobs.NodeLabelReady {
			out = append(out, name)
		}
	}
	return out
}

// workload creates a Deployment of replicas pods (restricted) on the test's nodes that
// tolerates no taint.
func (e *env) workload(name string, replicas int32) {
	e.t.Helper()
	labels := map[string]string{"app": name}
	no := false
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"e2e": e.ns},
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true), RunAsUser: new(int64(1000)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27", SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
				},
			},
		},
	}
	if _, err := kube.Client.AppsV1().Deployments(e.ns).Create(e.t.Context(), dep, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}
