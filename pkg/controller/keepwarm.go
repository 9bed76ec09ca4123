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

// Keep warm: a node that succeeded (or was skipped) in the current run, whose
// status.images then listed every image of the spec, and that later lacks one, is
// prewarmed again: its result is dropped, it counts as pending, and the window starts
// its Job like any other's. Judging only nodes seen holding the images avoids the false
// loops status.images could cause:
//   - kubelet reports a pull with a later status update (up to ~40 s): until the list
//     shows the images, nothing is judged, however long that takes;
//   - kubelet lists at most nodeStatusMaxImages (default 50) images, largest first, so
//     on a node that lists that many, one of ours can be present yet unlisted: such a
//     node is not judged;
//   - a node that never lists them (kwok, or a runtime that reports other names) is
//     never judged.
// After a restart a node must be seen holding the images again before it is judged.
// Each node's next rewarm waits twice as long as its last (rewarmBackoff up to
// maxRewarmBackoff), so an image that kubelet's GC keeps removing costs one Job per
// back-off, not a loop; node_rewarms_total counts them.

const (
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
func (c *Controller) lostImages(ctx context.Context, cm *corev1.ConfigMap, rs *runState, sel selection, n *nodeRecord, job *batchv1.Job) bool {
	r := rs.status.Results[n.Name]
	if rs.spec.Once || !holdsImages(rollout.Phase(r.Phase)) || job != nil || settled(rs, n) {
		return false
	}
	if sel.hasAllImages(n) {
		rs.listed[n.Name] = true
		rs.settled[n.Name] = n.ResourceVersion
		if rs.lacking[n.Name] { // back before its rewarm was due: labelled again
			delete(rs.lacking, n.Name)
			delete(rs.settled, n.Name)
			c.gateRecord(cm.Name, n.Name, rollout.Phase(r.Phase))
		}
		return false
	}
	if !rs.listed[n.Name] || imageCount(n) >= maxListedImages || !sel.eligible(n) {
		rs.settled[n.Name] = n.ResourceVersion
		return false
	}
	if !rs.lacking[n.Name] {
		rs.lacking[n.Name] = true
		c.gateRecord(cm.Name, n.Name, rollout.Pending) // no label while it lacks an image
	}
	now := time.Now()
	last := rs.rewarms[n.Name]
	if due := last.at.Add(last.backoff); now.Before(due) {
		rs.observeAgainAt(n.Name, due)
		c.queue.AddAfter(cm.Name, due.Sub(now))
		return false
	}
	backoff := rewarmBackoff
	if last.backoff > 0 {
		backoff = min(2*last.backoff, maxRewarmBackoff)
	}
	rs.rewarms[n.Name] = rewarm{at: now, backoff: backoff}
	rs.status.DropResult(n.Name)
	delete(rs.listed, n.Name)
	delete(rs.lacking, n.Name)
	delete(rs.settled, n.Name)
	delete(rs.unlanded, n.Name)
	metrics.Rewarms.WithLabelValues(cm.Name).Inc()
	c.recorder.Eventf(cm, corev1.EventTypeNormal, "NodeRewarm", "node %s no longer lists every image of run %s: prewarming it again", n.Name, rs.runID)
	logging.FromContext(ctx).Info("node lost an image; prewarming it again", logging.KeyNode, n.Name, logging.KeyRun, rs.runID)
	return true
}

// settled: keep warm found nothing to do for the node at its current resourceVersion.
// A node without one (never from an API server) is always judged.
func settled(rs *runState, n *nodeRecord) bool {
	v, ok := rs.settled[n.Name]
	return ok && v != "" && v == n.ResourceVersion
}

// gateRecord tells the node gate of a node's outcome ("" when dropped).
func (c *Controller) gateRecord(spec, node string, phase rollout.Phase) {
	if c.gate.record(spec, node, phase) {
		c.gateQueue.Add(node)
	}
}
