package realnode

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

// Show 1, 3 and 5 of the real-node issue: a private image pulled with the run's
// ephemeral Secret only; the next run skips the node; then workloads and KEP-2535.
func TestPrivateImagePulledWithEphemeralSecret(t *testing.T) {
	e := newEnv(t)
	e.basicAuth("registry-robot", cluster.RegistryUser, kube.Registry.Password)
	e.startController()
	image := ref(appRepo)
	since := time.Now()
	e.spec("app", []string{registryEntry("registry-robot")}, []string{image}, "rollout: {pullTimeout: 5m}\n")
	first := e.waitStatus("app", "first run done", 4*time.Minute, done)
	if first.Phase != status.PhaseSucceeded || first.Results[node.Name].Phase != string(rollout.Succeeded) {
		t.Fatalf("first run: phase %s, results %v", first.Phase, first.Results)
	}
	e.assertAuthenticatedPull(since, appRepo)
	e.eventually("ephemeral Secret reaped", time.Minute, func(context.Context) (bool, error) {
		return len(e.pullSecrets()) == 0, nil
	})
	e.nodeLists(image)

	// A new revision of the spec is a new run; the node's status.images already lists
	// the image, so it is skipped without a Job.
	e.spec("app", []string{registryEntry("registry-robot")}, []string{image}, "rollout: {pullTimeout: 5m, retries: 2}\n")
	second := e.waitStatus("app", "second run done", 2*time.Minute, func(s *status.Status) bool {
		return s.RunID != first.RunID && s.Done()
	})
	if got := second.Results[node.Name].Phase; got != string(rollout.Skipped) {
		t.Fatalf("second run: node %s, want Skipped (results %v)", got, second.Results)
	}
	if n := e.jobsOfRun(second.RunID); n != 0 {
		t.Fatalf("second run created %d Jobs, want 0", n)
	}
	e.assertNoPassword(kube.Registry.Password)

	t.Run("workload with the same credentials uses the prewarmed image", func(t *testing.T) {
		e.workloadUsesPrewarmedImage(t, image)
	})
	t.Run("workload without credentials is refused the image", func(t *testing.T) {
		e.workloadWithoutCredentialsFails(t, image)
	})
}

// assertAuthenticatedPull checks the registry's log: manifest and blob requests for repo
// since the given time, each answered 200 to the test user.
func (e *env) assertAuthenticatedPull(since time.Time, repo string) {
	e.t.Helper()
	manifests, blobs, err := requestsFor(since, repo)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(manifests) == 0 || len(blobs) == 0 {
		e.t.Fatalf("registry saw %d manifest and %d blob requests for %s, want both", len(manifests), len(blobs), repo)
	}
	ok := 0
	for _, r := range append(manifests, blobs...) {
		if r.Status == 200 && r.User == cluster.RegistryUser {
			ok++
		}
	}
	if ok == 0 {
		e.t.Fatalf("no authenticated 200 for %s: %+v", repo, append(manifests, blobs...))
	}
	for _, r := range blobs {
		if r.Status == 200 && r.User != cluster.RegistryUser {
			e.t.Errorf("blob served to %q, not the test user: %+v", r.User, r)
		}
	}
}

func (e *env) jobsOfRun(runID string) int { return len(e.jobs.OfRun(runID)) }

// Show 2: kubelet's real failure texts reach the status fast; an unreachable registry
// is transient and retried until the deadline.
func TestPullFailuresOnRealNode(t *testing.T) {
	e := newEnv(t)
	e.basicAuth("right", cluster.RegistryUser, kube.Registry.Password)
	e.basicAuth("wrong", cluster.RegistryUser, "Wrong-"+kube.Registry.Password)
	e.startController()
	// A long deadline: failing "in seconds, not at pullTimeout" must be the fail-fast
	// path. Init containers here; the image-volume method's 401 is in imagevolume_test.
	const slow = "rollout: {pullTimeout: 30m, method: initContainers}\n"
	cases := map[string]struct {
		secret, repo string
		want         string
	}{
		"wrong-password": {secret: "wrong", repo: lockedRepo, want: "401 Unauthorized"},
		"missing-image":  {secret: "right", repo: missingRepo, want: "not found"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			e.spec(name, []string{registryEntry(tc.secret)}, []string{ref(tc.repo)}, slow)
			st := e.waitStatus(name, name+" reported", 3*time.Minute, done)
			r := st.Results[node.Name]
			if r.Phase != string(rollout.Failed) || !strings.Contains(r.Reason, tc.want) {
				t.Fatalf("node result %+v, want Failed with %q", r, tc.want)
			}
			t.Logf("%s: failed after %v with %q", name, time.Since(start).Round(time.Second), r.Reason)
		})
	}
	t.Run("registry-stopped", func(t *testing.T) { e.registryOutageIsTransient(t) })
}

// registryOutageIsTransient stops the registry: the pull keeps being retried (the node
// is not failed while kubelet backs off) until the Job's deadline, then the node is
// reported with the reason.
func (e *env) registryOutageIsTransient(t *testing.T) {
	kube.Registry.Stop()
	t.Cleanup(func() {
		if err := kube.Registry.Start(context.Background()); err != nil {
			t.Errorf("restart registry: %v", err)
		}
	})
	start := time.Now()
	e.spec("outage", []string{registryEntry("right")}, []string{ref("private/outage")}, "rollout: {pullTimeout: 1m, method: initContainers}\n")
	e.eventually("kubelet reports the failed pull", time.Minute, func(ctx context.Context) (bool, error) {
		return e.podWaitingOnPull(ctx, "outage"), nil
	})
	if st := e.currentStatus("outage"); st != nil && st.Done() {
		t.Fatalf("an unreachable registry failed the node at once: %+v", st.Results)
	}
	st := e.waitStatus("outage", "deadline reported", 3*time.Minute, done)
	r := st.Results[node.Name]
	if r.Phase != string(rollout.Failed) || !strings.Contains(r.Reason, "DeadlineExceeded") || !strings.Contains(r.Reason, "last pull error") {
		t.Fatalf("node result %+v, want Failed at the deadline, naming the last pull error", r)
	}
	if elapsed := time.Since(start); elapsed < time.Minute {
		t.Fatalf("reported after %v, before the 1m deadline: not treated as transient", elapsed)
	}
	t.Logf("registry stopped: reported after %v with %q", time.Since(start).Round(time.Second), r.Reason)
}

// podWaitingOnPull: a pod of the spec waits on a failed pull (failed nodes' pods of
// other specs are kept for debugging, and keep waiting too).
func (e *env) podWaitingOnPull(ctx context.Context, spec string) bool {
	pods, err := kube.Client.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: jobs.LabelSpec + "=" + jobs.SpecLabelValue(spec)})
	if err != nil {
		return false
	}
	for _, p := range pods.Items {
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if w := s.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				return true
			}
		}
	}
	return false
}

func (e *env) currentStatus(spec string) *status.Status {
	st, _ := prewarmtest.Status(e.t.Context(), kube.Client, e.ns, spec)
	return st
}

// Show 4: a scratch image and a 200 MiB image prewarm; an image for another
// architecture fails with kubelet's reason; a node of a platform the noop image does
// not serve is never targeted.
func TestScratchLargeAndForeignArch(t *testing.T) {
	e := newEnv(t)
	e.basicAuth("right", cluster.RegistryUser, kube.Registry.Password)
	s390x := e.fakeNode("s390x", map[string]string{cluster.RealNodeLabel: "true", "kubernetes.io/arch": "s390x"})
	e.startController()
	// Init containers: the case the noop binary exists for, shell-less images run it.
	e.spec("big", []string{registryEntry("right")}, []string{ref(scratchRepo), ref(largeRepo)}, "rollout: {pullTimeout: 10m, method: initContainers}\n")
	st := e.waitStatus("big", "scratch and large prewarmed", 8*time.Minute, done)
	if st.Phase != status.PhaseSucceeded || st.Total != 1 {
		t.Fatalf("phase %s, total %d, results %v; want Succeeded on the real node only", st.Phase, st.Total, st.Results)
	}
	if _, ok := st.Results[s390x]; ok {
		t.Fatalf("the s390x node was targeted: %v", st.Results)
	}
	e.spec("foreign", []string{registryEntry("right")}, []string{ref(foreignRepo)}, "rollout: {pullTimeout: 30m}\n")
	st = e.waitStatus("foreign", "foreign-arch image reported", 3*time.Minute, done)
	if r := st.Results[node.Name]; r.Phase != string(rollout.Failed) || !strings.Contains(r.Reason, "platform") {
		t.Fatalf("node result %+v, want Failed naming the platform mismatch", r)
	}
	t.Logf("foreign architecture: %q", st.Results[node.Name].Reason)
}

// fakeNode creates a Ready kwok node with the labels; it is deleted after the test.
func (e *env) fakeNode(suffix string, labels map[string]string) string {
	e.t.Helper()
	spec := cluster.NodeSpec{Name: e.ns + "-" + suffix, Labels: labels}
	if err := kube.CreateNodes(e.t.Context(), spec); err != nil {
		e.t.Fatal(err)
	}
	if err := kube.WaitNodesReady(e.t.Context(), spec.Name); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = kube.DeleteNode(context.Background(), spec.Name) })
	return spec.Name
}
