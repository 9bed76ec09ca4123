package cluster_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/image-prewarm/image-prewarm/test/cluster"
)

const (
	pullDelay   = 2 * time.Second
	failPattern = `^registry\.invalid/`
	namespace   = "cluster-test"
)

var testCluster *cluster.Cluster

func TestMain(m *testing.M) {
	pulls := cluster.PullBehaviour{Delay: pullDelay, Jitter: time.Second, FailImagePattern: failPattern}
	os.Exit(cluster.RunTests(m, cluster.Options{Pulls: pulls}, func(c *cluster.Cluster) {
		testCluster = c
		if err := c.Namespace(context.Background(), namespace, nil); err != nil {
			panic(err)
		}
	}))
}

func TestThreeNodesReadyAndJobRunsOnPinnedNode(t *testing.T) {
	ctx := t.Context()
	specs := cluster.FakeNodes("pin", 3)
	if err := testCluster.CreateNodes(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	if err := testCluster.WaitNodesReady(ctx, cluster.Names(specs)...); err != nil {
		t.Fatal(err)
	}
	job := pinnedJob("pinned", "pin-001", "example.com/app:1")
	if _, err := testCluster.Client.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Job pinned complete", func(ctx context.Context) (bool, error) {
		j, err := testCluster.Client.BatchV1().Jobs(namespace).Get(ctx, "pinned", metav1.GetOptions{})
		return err == nil && j.Status.Succeeded == 1, nil
	})
	pod := onlyPod(t, "pinned")
	if pod.Spec.NodeName != "pin-001" {
		t.Fatalf("pod ran on %q, want pin-001", pod.Spec.NodeName)
	}
}

func TestPullFailureStage(t *testing.T) {
	ctx := t.Context()
	if err := testCluster.CreateNodes(ctx, cluster.NodeSpec{Name: "fail-000"}); err != nil {
		t.Fatal(err)
	}
	job := pinnedJob("failing", "fail-000", "registry.invalid/private/app:1")
	if _, err := testCluster.Client.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var waiting *corev1.ContainerStateWaiting
	waitFor(t, "ErrImagePull on the pull init container", func(ctx context.Context) (bool, error) {
		pods, err := testCluster.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=failing"})
		if err != nil || len(pods.Items) == 0 || len(pods.Items[0].Status.InitContainerStatuses) == 0 {
			return false, nil
		}
		waiting = pods.Items[0].Status.InitContainerStatuses[0].State.Waiting
		return waiting != nil && waiting.Reason == "ErrImagePull", nil
	})
	if want := `"registry.invalid/private/app:1"`; !contains(waiting.Message, want) || !contains(waiting.Message, "401 Unauthorized") {
		t.Fatalf("message %q lacks the image or the 401", waiting.Message)
	}
}

func TestPullDelayObserved(t *testing.T) {
	ctx := t.Context()
	if err := testCluster.CreateNodes(ctx, cluster.NodeSpec{Name: "delay-000"}); err != nil {
		t.Fatal(err)
	}
	job := pinnedJob("delayed", "delay-000", "example.com/big:1")
	if _, err := testCluster.Client.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Job delayed complete", func(ctx context.Context) (bool, error) {
		j, err := testCluster.Client.BatchV1().Jobs(namespace).Get(ctx, "delayed", metav1.GetOptions{})
		return err == nil && j.Status.Succeeded == 1, nil
	})
	term := onlyPod(t, "delayed").Status.InitContainerStatuses[0].State.Terminated
	if term == nil {
		t.Fatal("init container not terminated")
	}
	// Timestamps have second precision, so allow for rounding by one second.
	if took := term.FinishedAt.Sub(term.StartedAt.Time); took < pullDelay-time.Second {
		t.Fatalf("pull took %v, want at least the configured %v", took, pullDelay)
	}
}

func pinnedJob(name, node, image string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
						MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
					}}},
				}},
				InitContainers: []corev1.Container{{Name: "pull", Image: image}},
				Containers:     []corev1.Container{{Name: "done", Image: "example.com/noop:1"}},
			}},
		},
	}
}

func onlyPod(t *testing.T, job string) corev1.Pod {
	t.Helper()
	pods, err := testCluster.Client.CoreV1().Pods(namespace).List(t.Context(), metav1.ListOptions{LabelSelector: "job-name=" + job})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of job %s: %v (%d pods)", job, err, len(pods.Items))
	}
	return pods.Items[0]
}

func waitFor(t *testing.T, what string, cond wait.ConditionWithContextFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// A real node leaves nothing on the machine: its processes (kubelet, containerd, the
// shims and containers of a running pod), mounts, cgroups, bridge and CNI cache are gone
// after Stop.
func TestRealNodeLeavesNothingBehind(t *testing.T) {
	ctx := t.Context()
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), RealNodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	n := c.RealNodes()[0]
	if err := c.Namespace(ctx, "footprint", nil); err != nil {
		t.Fatal(err)
	}
	// The pause image is on the node already (imported): it runs without a pull.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "runs", Namespace: "footprint"},
		Spec: corev1.PodSpec{NodeName: n.Name, Containers: []corev1.Container{{
			Name: "pause", Image: cluster.SandboxImage, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	if _, err := c.Client.CoreV1().Pods("footprint").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod Running on the real node", func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("footprint").Get(ctx, "runs", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	footprint, err := n.Footprint()
	if err != nil {
		t.Fatal(err)
	}
	if len(footprint.PIDs) < 4 || len(footprint.Mounts) == 0 {
		t.Fatalf("a running pod should show kubelet, containerd, shim and container processes and mounts: %+v", footprint)
	}
	c.Stop()
	stopped = true
	if left := footprint.Leftovers(); len(left) > 0 {
		t.Fatalf("left behind after Stop: %v", left)
	}
}
