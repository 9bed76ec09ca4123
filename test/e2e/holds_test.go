package e2e

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// rejectedNodes is the size of the all-401 run; IMAGE_PREWARM_REJECTED_NODES changes it.
func rejectedNodes(t *testing.T) int {
	if v := os.Getenv("IMAGE_PREWARM_REJECTED_NODES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("IMAGE_PREWARM_REJECTED_NODES=%q", v)
		}
		return n
	}
	return 2000
}

const rejectedImage = "harbor.example.com/fail/model:1"

// Issue 14: a rejected password on 2000 nodes. Harbor is tried by at most the window's
// Jobs, the run pauses its pulls (phase, one Event), the other registry's image still
// reaches every node, the status fits, and a changed Secret resumes the pulls, which,
// still rejected, pause again as early. No credential leaks on the way.
func TestRejectedPasswordPausesEarly(t *testing.T) {
	e := newEnv(t)
	n, window := rejectedNodes(t), 50
	e.nodes("bad", n) // kwok answers 401 for harbor.example.com/fail/ on "bad" nodes
	e.credentials("harbor-robot", "robot", sentinel)
	e.startController()
	start := time.Now()
	e.applySpec("rejected", e.privateSpec(window, rejectedImage, "nginx:1.27"))
	paused := e.waitStatus("rejected", "the run paused", phaseIs(status.PhasePaused))
	tookToPause := time.Since(start)
	if len(paused.Holds) != 1 || paused.Holds[0].Registry != "harbor.example.com" || !strings.Contains(paused.Holds[0].Reason, "401") {
		t.Fatalf("holds %+v", paused.Holds)
	}
	st := e.waitLong("rejected", "every node got nginx and waits for harbor", func(s *status.Status) bool { return s.Counts["Paused"] == n })
	tried := e.nodesPulling(rejectedImage)
	if tried > window {
		t.Fatalf("%d nodes tried the rejected password, want at most the window (%d)", tried, window)
	}
	if got := e.nodesPulling("nginx:1.27"); got != n {
		t.Fatalf("%d nodes got a Job pulling nginx, want all %d", got, n)
	}
	total, largest := e.statusBytes()
	t.Logf("%d nodes: %d tried harbor before the pause; paused %v after the spec; status %d bytes in all, largest object %d; message %q",
		n, tried, tookToPause.Round(100*time.Millisecond), total, largest, st.Message)
	if e.countEvents("PullsPaused") != 1 {
		t.Fatalf("%d PullsPaused Events, want 1", e.countEvents("PullsPaused"))
	}

	rotated := time.Now()
	e.rotatePassword("harbor-robot", sentinel+"-rotated") // still wrong for kwok
	again := e.waitLong("rejected", "pulls resumed on the Secret change, then paused again", func(s *status.Status) bool {
		return s.Phase == status.PhasePaused && len(s.Holds) == 1 && s.Holds[0].Since.After(rotated.Add(-time.Second))
	})
	if e.countEvents("PullsResumed") < 1 {
		t.Fatalf("no PullsResumed Event after the Secret changed")
	}
	t.Logf("paused again %v after the Secret changed", again.Holds[0].Since.Sub(rotated).Round(100*time.Millisecond))
	if tried := e.nodesPulling(rejectedImage); tried > 2*window {
		t.Fatalf("%d nodes tried harbor over both rounds, want at most twice the window", tried)
	}
	e.assertNoCredentialLeak()
}

// waitLong is waitStatus with room for a 2000-node run on a busy machine.
func (e *env) waitLong(spec, what string, cond func(*status.Status) bool) *status.Status {
	e.t.Helper()
	var last *status.Status
	e.eventually(what, 6*time.Minute, func(ctx context.Context) (bool, error) {
		st, _, err := status.Read(ctx, kube.Client, e.ns, spec)
		if err == nil && st != nil {
			last = st
		}
		return last != nil && cond(last), nil
	})
	return last
}

// nodesPulling counts the nodes that ever got a Job pulling image.
func (e *env) nodesPulling(image string) int {
	seen := map[string]bool{}
	for _, j := range e.createdJobs() {
		if jobPulls(&j, image) {
			seen[jobs.NodeOf(&j)] = true
		}
	}
	return len(seen)
}

func jobPulls(j *batchv1.Job, image string) bool {
	for _, c := range append(j.Spec.Template.Spec.InitContainers, j.Spec.Template.Spec.Containers...) {
		if c.Image == image {
			return true
		}
	}
	return false
}

// statusBytes sums the status objects' data and finds the largest one.
func (e *env) statusBytes() (total, largest int) {
	list, err := kube.Client.CoreV1().ConfigMaps(e.ns).List(e.t.Context(), metav1.ListOptions{LabelSelector: status.LabelStatusOf})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, cm := range list.Items {
		size := 0
		for k, v := range cm.Data {
			size += len(k) + len(v)
		}
		total += size
		largest = max(largest, size)
	}
	return total, largest
}

func (e *env) countEvents(reason string) int {
	n := 0
	for _, ev := range e.events() {
		if ev.Reason == reason && ev.Type != "" {
			n += max(1, int(ev.Count))
		}
	}
	return n
}

func (e *env) rotatePassword(name, password string) {
	e.t.Helper()
	secrets := kube.Client.CoreV1().Secrets(e.ns)
	s, err := secrets.Get(e.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	s.Data[corev1.BasicAuthPasswordKey] = []byte(password)
	if _, err := secrets.Update(e.t.Context(), s, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}
