package controller

import (
	"fmt"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

const heldImage = "harbor.example.com/ml/model:1"

func pullsFrom(j *batchv1.Job, image string) bool {
	for _, c := range j.Spec.Template.Spec.InitContainers {
		if c.Image == image {
			return true
		}
	}
	return false
}

// failRejected fails the unfinished Jobs that pull heldImage as kubelet's 401 would,
// and completes the rest. It returns how many it failed.
func failRejected(t *testing.T, client *fake.Clientset) int {
	return failRejectedOn(t, client, func(string) bool { return true })
}

// failRejectedOn is failRejected on the nodes onNode picks; the others' Jobs complete.
func failRejectedOn(t *testing.T, client *fake.Clientset, onNode func(string) bool) int {
	t.Helper()
	failed := 0
	for _, j := range listJobs(t, client) {
		if jobs.Finished(&j) {
			continue
		}
		cond := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}
		if pullsFrom(&j, heldImage) && onNode(jobs.NodeOf(&j)) {
			failed++
			cond.Type, cond.Reason = batchv1.JobFailed, "PullFailed"
			cond.Message = fmt.Sprintf(`ErrImagePull: Failed to pull image %q: failed to authorize: 401 Unauthorized`, heldImage)
		}
		j.Status.Conditions = []batchv1.JobCondition{cond}
		_, _ = client.BatchV1().Jobs(ns).UpdateStatus(t.Context(), &j, metav1.UpdateOptions{})
	}
	return failed
}

// readyNodes are n Ready nodes n00, n01, …
func readyNodes(n int) []any {
	var objs []any
	for i := range n {
		objs = append(objs, node(fmt.Sprintf("n%02d", i), ready))
	}
	return objs
}

// heldAndOtherSpec pulls heldImage, from a registry with credentials, and an image of
// another registry, four nodes at a time.
func heldAndOtherSpec(name string) *corev1.ConfigMap {
	return specConfigMap(name, fmt.Sprintf(`registries: [{server: harbor.example.com, credentialsSecret: robot}]
images: [%s, nginx:1.27]
rollout: {maxConcurrentNodes: 4}
`, heldImage))
}

func readStatus(t *testing.T, client *fake.Clientset, spec string) *status.Status {
	t.Helper()
	st, _, err := status.Read(t.Context(), client, ns, spec)
	if err != nil || st == nil {
		return &status.Status{}
	}
	return st
}

// Issue 14: after three nodes fail authentication against harbor, no new node pulls
// from it, the other registry's image still reaches every node, the run says Paused
// with one Event and the gauge, and a person's resume lets every node finish.
func TestRejectedCredentialsHoldTheRegistryOthersContinue(t *testing.T) {
	objs := readyNodes(12)
	spec := heldAndOtherSpec("held")
	client := startFake(t, append(objs, basicAuth("robot"), spec)...)
	attempted := 0
	eventually(t, "every node waits with nginx pulled", func() bool {
		attempted += failRejected(t, client)
		return readStatus(t, client, "held").Counts["Paused"] == 12
	})
	st := readStatus(t, client, "held")
	if st.Phase != status.PhasePaused || len(st.Holds) != 1 || st.Holds[0].Registry != "harbor.example.com" || !strings.Contains(st.Message, config.AnnotationResume) {
		t.Fatalf("phase %s, holds %+v, message %q", st.Phase, st.Holds, st.Message)
	}
	if attempted > 4 {
		t.Fatalf("%d nodes tried the rejected registry, want at most the window (4)", attempted)
	}
	if got := testutil.ToFloat64(metrics.PullsHeld.WithLabelValues("held", status.HoldCredentials)); got != 1 {
		t.Fatalf("pulls_held = %v", got)
	}
	if n := countEvents(t, client, "PullsPaused"); n != 1 {
		t.Fatalf("%d PullsPaused Events", n)
	}
	t.Logf("%d nodes tried harbor before the hold; 12 nodes got nginx", attempted)

	cm, _ := client.CoreV1().ConfigMaps(ns).Get(t.Context(), "held", metav1.GetOptions{})
	cm.Annotations = map[string]string{config.AnnotationResume: "fixed"}
	if _, err := client.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every node succeeds after the resume", func() bool {
		completeAll(t, client)
		st := readStatus(t, client, "held")
		return st.Phase == status.PhaseSucceeded && st.Counts["Succeeded"] == 12
	})
	if got := testutil.ToFloat64(metrics.PullsHeld.WithLabelValues("held", status.HoldCredentials)); got != 0 {
		t.Fatalf("pulls_held after the resume = %v", got)
	}
}

// Rejections on some nodes while another node pulls with the same credentials are the
// nodes' own: no hold lasts, the failures stay ordinary, and no node gets a second Job.
func TestRejectionsOnSomeNodesOnlyAreOrdinaryFailures(t *testing.T) {
	objs := readyNodes(12)
	spec := heldAndOtherSpec("mixed")
	client := startFake(t, append(objs, basicAuth("robot"), spec)...)
	bad := map[string]bool{"n00": true, "n01": true, "n02": true}
	eventually(t, "the run completes with the three failures", func() bool {
		failRejectedOn(t, client, func(n string) bool { return bad[n] })
		st := readStatus(t, client, "mixed")
		return st.Phase == status.PhaseCompletedFailed && st.Counts["Failed"] == 3 && st.Counts["Succeeded"] == 9
	})
	if n := createdJobs(client); n != 12 {
		t.Fatalf("%d Jobs created for 12 nodes", n)
	}
	eventually(t, "one NodeFailed Event per failed node", func() bool { return countEvents(t, client, "NodeFailed") == 3 })
}

// With no other node left to protect, a rejection is an ordinary failure: a one-node
// run completes with it rather than pause.
func TestRejectionOfTheLastNodeIsAFailure(t *testing.T) {
	spec := specConfigMap("single", fmt.Sprintf(`registries: [{server: harbor.example.com, credentialsSecret: robot}]
images: [%s]
rollout: {maxConcurrentNodes: 1}
`, heldImage))
	client := startFake(t, node("only", ready), basicAuth("robot"), spec)
	eventually(t, "the run completes with the failure", func() bool {
		failRejected(t, client)
		st := readStatus(t, client, "single")
		return st.Phase == status.PhaseCompletedFailed && strings.Contains(st.Results["only"].Reason, "401")
	})
}

// One image not found holds back that image only, not its registry.
func TestImageNotFoundHoldsTheImageOnly(t *testing.T) {
	rs := &runState{spec: &config.Spec{Images: []string{"harbor.example.com/a:1", "harbor.example.com/b:1"}}}
	h := holdFor(rs, `ErrImagePull: Failed to pull image "harbor.example.com/a:1": not found`)
	if h == nil || h.Kind != status.HoldNotFound || len(h.images) != 1 || !h.images["harbor.example.com/a:1"] {
		t.Fatalf("hold %+v", h)
	}
	if h := holdFor(rs, "DeadlineExceeded: Job was active longer than specified deadline"); h != nil {
		t.Fatalf("a timeout made a hold: %+v", h)
	}
}

func countEvents(t *testing.T, client *fake.Clientset, reason string) int {
	t.Helper()
	list, err := client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Reason == reason {
			n++
		}
	}
	return n
}
