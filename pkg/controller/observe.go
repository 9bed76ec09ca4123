package controller

import (
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
)

// maxReasonLen bounds a failure reason kept in status and Events; maxEventLen any
// Event message.
const (
	maxReasonLen = 300
	maxEventLen  = 1000
)

// pullErrorReasons are kubelet's waiting reasons for a pull that did not work.
var pullErrorReasons = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
}

// Errors that retrying cannot fix: wrong credentials and missing images, as
// metrics.ReasonClass tells them, and the kubelet messages below for references it
// cannot pull at all. Others (timeouts, 5xx) are left to kubelet's own back-off until
// the Job's deadline.
var permanentPullMarkers = []string{"invalid reference", "neverpull", "invalidimagename"}

// observation is what the cluster says about one node's Job.
type observation struct {
	phase  rollout.Phase
	reason string
	active bool
	// failFast: the Job is still active but its pod hit a permanent pull error; the
	// controller deletes the Job rather than wait for the deadline.
	failFast bool
}

// observeJob derives a node's phase from its Job and the Job's pods.
func observeJob(job *batchv1.Job, pods []*corev1.Pod) observation {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return observation{phase: rollout.Succeeded}
		case batchv1.JobFailed:
			return observation{phase: rollout.Failed, reason: truncate(c.Reason+": "+c.Message, maxReasonLen)}
		}
	}
	for _, pod := range pods {
		if reason, ok := permanentPullError(pod); ok {
			return observation{phase: rollout.Failed, reason: reason, active: true, failFast: true}
		}
	}
	return observation{phase: rollout.Running, active: true}
}

// permanentPullError finds a container stuck on a pull error that retrying cannot fix.
func permanentPullError(pod *corev1.Pod) (string, bool) {
	for _, st := range pullingStatuses(pod) {
		w := st.State.Waiting
		if w == nil || !pullErrorReasons[w.Reason] {
			continue
		}
		text := strings.ToLower(w.Reason + " " + w.Message)
		class := metrics.ReasonClass(text, "")
		if class == metrics.ReasonUnauthorized || class == metrics.ReasonNotFound || slices.ContainsFunc(permanentPullMarkers, func(m string) bool { return strings.Contains(text, m) }) {
			return truncate(w.Reason+": "+w.Message, maxReasonLen), true
		}
	}
	return "", false
}

// pullDurations returns, per image index, how long its pull took. A real kubelet pulls
// before starting the container, so the pull shows as the gap after the previous init
// container finished; a simulated kubelet shows it as the container's own run time.
// The larger of the two is the pull.
func pullDurations(pod *corev1.Pod) map[int]time.Duration {
	out := map[int]time.Duration{}
	var prevFinished time.Time
	for _, st := range pod.Status.InitContainerStatuses {
		t := st.State.Terminated
		if t == nil {
			return out
		}
		if i, ok := jobs.PullContainerIndex(st.Name); ok {
			own := t.FinishedAt.Sub(t.StartedAt.Time)
			gap := t.FinishedAt.Sub(prevFinished)
			if prevFinished.IsZero() || own > gap {
				gap = own
			}
			out[i] = max(gap, 0)
		}
		prevFinished = t.FinishedAt.Time
	}
	return out
}

// truncate keeps at most n runes of s. Runes, not bytes: a cut multi-byte character
// would be invalid UTF-8, which a ConfigMap refuses.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// jobChanged reports an update that matters to the window: the Job finished, or is
// being deleted.
func jobChanged(old, cur any) bool {
	o, ok1 := old.(*batchv1.Job)
	n, ok2 := cur.(*batchv1.Job)
	if !ok1 || !ok2 {
		return true
	}
	return jobs.Finished(o) != jobs.Finished(n) || (o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil)
}

// lastPullError is the pull error an init container of the pods waits on ("Reason:
// message"), or "". A Job failed by its deadline while kubelet retried an unreachable
// registry then says why: "DeadlineExceeded: …; last pull error: ErrImagePull: … refused".
func lastPullError(pods []*corev1.Pod) string {
	for _, pod := range pods {
		for _, st := range pullingStatuses(pod) {
			if w := st.State.Waiting; w != nil && pullErrorReasons[w.Reason] {
				return w.Reason + ": " + w.Message
			}
		}
	}
	return ""
}

// pullingStatuses are the statuses that show a pull: the init containers (one per
// image) and the main container, which waits on its image volumes' pulls.
func pullingStatuses(pod *corev1.Pod) []corev1.ContainerStatus {
	return append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
}

// hasPullError: an init container waits on a failed pull (permanent or not yet known).
func hasPullError(pod *corev1.Pod) bool { return lastPullError([]*corev1.Pod{pod}) != "" }
