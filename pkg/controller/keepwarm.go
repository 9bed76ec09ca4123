package controller

import (
	"context"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
)

// Keep warm: a node that succeeded (or was skipped) in the current run and later lacks
// one of the spec's images in status.images is prewarmed again: its result is dropped,
// it counts as pending, and the window starts its Job like any other's. Two things in
// status.images could fake a loss, and neither may start a loop:
//   - kubelet lists at most nodeStatusMaxImages (default 50) images, largest first, so
//     on a node that lists that many a small image can be present yet unlisted: such a
//     node is not judged at all;
//   - kubelet reports a pull with its next status update, in practice up to ~40 s
//     later: a node is judged only heldGrace after its result was recorded (or after
//     this controller started, for results it loaded).
// Each node's next rewarm waits twice as long as its last (from rewarmBackoff up to
// maxRewarmBackoff), so an image that kubelet's GC keeps removing costs one Job per
// back-off, not a loop; node_rewarms_total counts them.

const (
	heldGrace        = time.Minute
	maxListedImages  = 50 // kubelet's default nodeStatusMaxImages
	rewarmBackoff    = time.Minute
	maxRewarmBackoff = time.Hour
)

// rewarm is a node's last rewarm and the back-off before the next.
type rewarm struct {
	at      time.Time
	backoff time.Duration
}

// lostImages reports whether the node, recorded as holding the images, has lost one and
// is due to be prewarmed again; it then drops the node's result.
func (c *Controller) lostImages(ctx context.Context, cm *corev1.ConfigMap, rs *runState, sel selection, n *corev1.Node, job *batchv1.Job) bool {
	r := rs.status.Results[n.Name]
	if rs.spec.Once || !holdsImages(rollout.Phase(r.Phase)) || job != nil || !sel.eligible(n) ||
		imageCount(n) >= maxListedImages || sel.hasAllImages(n) {
		return false
	}
	now := time.Now()
	since := rs.heldSince[n.Name]
	if since.IsZero() {
		since = c.gate.started
	}
	due := since.Add(heldGrace)
	last := rs.rewarms[n.Name]
	if next := last.at.Add(last.backoff); next.After(due) {
		due = next
	}
	if now.Before(due) {
		c.queue.AddAfter(cm.Name, due.Sub(now))
		c.gateRecord(cm.Name, n.Name, rollout.Pending) // it lacks the images: no label meanwhile
		return false
	}
	backoff := rewarmBackoff
	if last.backoff > 0 {
		backoff = min(2*last.backoff, maxRewarmBackoff)
	}
	rs.rewarms[n.Name] = rewarm{at: now, backoff: backoff}
	delete(rs.status.Results, n.Name)
	delete(rs.heldSince, n.Name)
	delete(rs.unlanded, n.Name)
	c.gateRecord(cm.Name, n.Name, "")
	metrics.Rewarms.WithLabelValues(cm.Name).Inc()
	c.recorder.Eventf(cm, corev1.EventTypeNormal, "NodeRewarm", "node %s no longer lists every image of run %s: prewarming it again", n.Name, rs.runID)
	logging.FromContext(ctx).Info("node lost an image; prewarming it again", logging.KeyNode, n.Name, logging.KeyRun, rs.runID)
	return true
}

// gateRecord tells the node gate of a node's outcome ("" when dropped).
func (c *Controller) gateRecord(spec, node string, phase rollout.Phase) {
	if c.gate.record(spec, node, phase) {
		c.gateQueue.Add(node)
	}
}
