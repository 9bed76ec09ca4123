package realnode

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

const startupTaint = "image-prewarm.io/prewarming"

// Issue 12 on the real node: with the startup taint on the node, a workload that does
// not tolerate it is scheduled only after the prewarm Job succeeded, and kubelet finds
// the image "already present". Then the image is removed from containerd (as kubelet's
// GC would): the controller prewarms the node again, the registry serves a new
// authenticated pull, and the label comes back.
func TestStartupTaintAndKeepWarmOnRealNode(t *testing.T) {
	e := newEnv(t)
	e.basicAuth("registry-robot", cluster.RegistryUser, kube.Registry.Password)
	e.dockerConfigSecret(t, "workload-cred", cluster.RegistryUser, kube.Registry.Password)
	image := ref(gateRepo)
	taintNode(t)
	order := prewarmtest.WatchOrdering(t.Context(), kube.Client, e.ns, "app=gated")
	pod := e.createScheduledWorkload(t, "gated", image, "workload-cred")
	e.startController()
	e.spec("gate", []string{registryEntry("registry-robot")}, []string{image},
		"rollout: {pullTimeout: 5m, startupTaint: "+startupTaint+", nodeLabel: true}\n")
	e.eventually("workload Running", 3*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := kube.Client.CoreV1().Pods(e.ns).Get(ctx, pod, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	if msg := e.podEvent(t.Context(), pod, "Pulled"); !strings.Contains(msg, "already present on machine") {
		t.Fatalf("Pulled event %q: the workload did not find the prewarmed image", msg)
	}
	completed, bound := order.Snapshot()
	if b := bound[pod]; b.RV <= completed[node.Name] || completed[node.Name] == 0 {
		t.Fatalf("workload bound at resourceVersion %d, the node's prewarm Job succeeded at %d", b.RV, completed[node.Name])
	}
	e.waitGate("taint gone and label set")
	first := e.waitStatus("gate", "run done", time.Minute, done)

	e.nodeLists(image) // keep warm judges only a node seen holding the images
	if err := kube.Client.CoreV1().Pods(e.ns).Delete(t.Context(), pod, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	e.eventually("workload gone", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := kube.Client.CoreV1().Pods(e.ns).Get(ctx, pod, metav1.GetOptions{})
		return err != nil, nil
	})
	removed := time.Now()
	if out, err := node.Ctr(t.Context(), "images", "rm", "--sync", image); err != nil {
		t.Fatalf("remove %s from containerd: %v (%s)", image, err, out)
	}
	e.eventually("the node prewarmed again", 3*time.Minute, func(context.Context) (bool, error) {
		return len(e.jobs.OfRun(first.RunID)) == 2, nil
	})
	e.waitStatus("gate", "the rewarm done", 3*time.Minute, func(s *status.Status) bool { return s.Done() && s.RunID == first.RunID })
	e.waitGate("label set again")
	e.assertPulledAgain(removed, gateRepo)
	t.Logf("image removed; rewarmed by Job %d of the run, label back %v after the removal", len(e.jobs.OfRun(first.RunID)), time.Since(removed).Round(time.Second))
	e.assertNoPassword(kube.Registry.Password)
}

// assertPulledAgain: the rewarm asked the registry for the manifest, authenticated.
// containerd may still hold the layers (it removes content lazily), so blob requests
// are not required.
func (e *env) assertPulledAgain(since time.Time, repo string) {
	e.t.Helper()
	manifests, _, err := requestsFor(since, repo)
	if err != nil {
		e.t.Fatal(err)
	}
	if !slices.ContainsFunc(manifests, func(r cluster.RegistryRequest) bool { return r.Status == 200 && r.User == cluster.RegistryUser }) {
		e.t.Fatalf("no authenticated manifest pull of %s since the image was removed: %+v", repo, manifests)
	}
}

// taintNode puts the startup taint on the real node, as a node pool would on a new
// node, and makes sure the node is left without it.
func taintNode(t *testing.T) {
	patch := `[{"op":"add","path":"/spec/taints","value":[{"key":"` + startupTaint + `","effect":"NoSchedule"}]}]`
	if _, err := kube.Client.CoreV1().Nodes().Patch(t.Context(), node.Name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n, err := kube.Client.CoreV1().Nodes().Get(context.Background(), node.Name, metav1.GetOptions{})
		if err != nil {
			return
		}
		if slices.ContainsFunc(n.Spec.Taints, func(tt corev1.Taint) bool { return tt.Key == startupTaint }) {
			t.Errorf("the real node kept the startup taint")
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(tt corev1.Taint) bool { return tt.Key == startupTaint })
		}
		delete(n.Labels, jobs.NodeLabelKey("gate")) // the stopped controller's last word
		_, _ = kube.Client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
	})
}

// waitGate waits for the node to be untainted and labelled.
func (e *env) waitGate(what string) {
	e.t.Helper()
	e.eventually(what, 2*time.Minute, func(ctx context.Context) (bool, error) {
		n, err := kube.Client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		tainted := slices.ContainsFunc(n.Spec.Taints, func(tt corev1.Taint) bool { return tt.Key == startupTaint })
		return !tainted && n.Labels[jobs.NodeLabelKey("gate")] == jobs.NodeLabelReady, nil
	})
}
