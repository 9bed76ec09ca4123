package controller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
)

// The refill latency (metrics.RefillLatency) is the controller's own share of keeping
// the window full: from the informer handler that sees a slot freed to the create of the
// Job that takes it. A freed slot is stamped, per run, in a FIFO; each Job handed to the
// creator pops the oldest stamp, and the creator observes the latency as it sends the
// create (creates.go). Creates without a stamp (the first fill, a new node) observe
// nothing.
//
// A Job frees its slot once, at the first of:
//   - its Complete or Failed condition turning true;
//   - a pod of it showing a permanent pull error: the controller fails the node at once
//     rather than wait for the Job (observeJob's failFast);
//   - its deletion or deletion mark while it ran on a node that still exists (deleted by
//     someone else: the node is started again).
//
// Not stamped: a Job cancelled because its node left. That slot freed when the node
// went, and the refill is created in the reconcile that cancels the Job, before its
// deletion is seen.
//
// After its creates, a reconcile drops the stamps no later create may claim
// (settleStamps): all of them when no node waits, so a node that joins hours later pops
// none; and, when it filled the window, those from before it began. The handler stamps
// after the informer's store holds the change, so a reconcile may see a finish and
// refill its slot before the stamp exists; claimed later, that stamp would be charged
// to a slot freed after it, and each such race would add to the lag of every later
// refill. Those refills go unobserved instead: the figure errs high, not low.

// maxStampsPerRun bounds a run's stamps: far above any window whose slots all free at
// once; past it the oldest go, and refills read a little short rather than grow memory.
const maxStampsPerRun = 1024

// freedSlots holds the stamps of the current runs, by run ID. Only runs opened by
// setRun take stamps, so Jobs of old or unknown runs leave nothing behind.
type freedSlots struct {
	mu   sync.Mutex
	runs map[string]*runSlots
}

type runSlots struct {
	freedAt []time.Time // oldest first
	// stamped: the Jobs whose slot was stamped, so a Job frees its slot once (a pull
	// failed fast, then the Job's own failure). An entry leaves with its Job.
	stamped map[jobRef]bool
}

func newFreedSlots() *freedSlots { return &freedSlots{runs: map[string]*runSlots{}} }

// replaceRun forgets the stamps of the run being replaced and opens the new one.
func (f *freedSlots) replaceRun(old, cur *runState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old != nil && (cur == nil || old.runID != cur.runID) {
		delete(f.runs, old.runID)
	}
	if cur != nil && cur.runID != "" && f.runs[cur.runID] == nil {
		f.runs[cur.runID] = &runSlots{stamped: map[jobRef]bool{}}
	}
}

// stamp records that job's slot freed at, once per Job.
func (f *freedSlots) stamp(job *batchv1.Job, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rs := f.runs[job.Labels[jobs.LabelRun]]
	if rs == nil || rs.stamped[refOf(job)] {
		return
	}
	if len(rs.stamped) >= maxStampsPerRun*4 {
		clear(rs.stamped) // deletions missed somehow: at worst a Job is stamped twice
	}
	rs.stamped[refOf(job)] = true
	if len(rs.freedAt) == maxStampsPerRun {
		rs.freedAt = append(rs.freedAt[:0], rs.freedAt[1:]...)
	}
	rs.freedAt = append(rs.freedAt, at)
}

// jobGone forgets a deleted Job: a later Job of its name is another Job.
func (f *freedSlots) jobGone(job *batchv1.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rs := f.runs[job.Labels[jobs.LabelRun]]; rs != nil {
		delete(rs.stamped, refOf(job))
	}
}

// claim pops the run's oldest stamp.
func (f *freedSlots) claim(runID string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rs := f.runs[runID]
	if rs == nil || len(rs.freedAt) == 0 {
		return time.Time{}, false
	}
	at := rs.freedAt[0]
	rs.freedAt = rs.freedAt[1:]
	return at, true
}

// dropBefore forgets the run's stamps from before t.
func (f *freedSlots) dropBefore(runID string, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rs := f.runs[runID]; rs != nil {
		rs.freedAt = slices.DeleteFunc(rs.freedAt, func(at time.Time) bool { return at.Before(t) })
	}
}

// pending is how many stamps wait for a refill (tests).
func (f *freedSlots) pending(runID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rs := f.runs[runID]; rs != nil {
		return len(rs.freedAt)
	}
	return 0
}

// holdsSlot: a Job holds its node's window slot from its creation until it finishes or
// is marked for deletion (observe then no longer counts it).
func holdsSlot(job *batchv1.Job) bool {
	return !jobs.Finished(job) && job.DeletionTimestamp == nil
}

// jobUpdated stamps a Job that has just stopped holding its slot.
func (c *Controller) jobUpdated(old, cur any) {
	o, ok1 := old.(*batchv1.Job)
	n, ok2 := cur.(*batchv1.Job)
	if ok1 && ok2 && holdsSlot(o) && !holdsSlot(n) {
		c.freedSlots.stamp(n, time.Now())
	}
}

// jobDeleted stamps a Job deleted while it ran on a node that still exists.
func (c *Controller) jobDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		if job, ok := tomb.Obj.(*batchv1.Job); ok {
			c.freedSlots.jobGone(job) // its last state is stale: no stamp
		}
		return
	}
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	if _, nodeExists, _ := c.nodeInformer.GetStore().GetByKey(jobs.NodeOf(job)); holdsSlot(job) && nodeExists {
		c.freedSlots.stamp(job, time.Now())
	}
	c.freedSlots.jobGone(job)
}

// podPullFailed stamps the Job of a pod that shows a permanent pull error, while the
// Job still holds its slot: the next reconcile fails the node and refills the slot.
func (c *Controller) podPullFailed(pod *corev1.Pod) {
	if _, permanent := permanentPullError(pod); !permanent {
		return
	}
	obj, ok, _ := c.jobInformer.GetStore().GetByKey(pod.Namespace + "/" + pod.Labels[podJobLabel])
	if job, isJob := obj.(*batchv1.Job); ok && isJob && holdsSlot(job) {
		c.freedSlots.stamp(job, time.Now())
	}
}

// settleStamps drops, after a decision's creates, the stamps no later create may claim
// (see the top of this file). A run held back by a registry cap keeps them: its slots
// wait for the cap.
func (c *Controller) settleStamps(ctx context.Context, rs *runState, limit error) {
	var full *rollout.WindowFullError
	switch {
	case limit == nil:
		c.freedSlots.dropBefore(rs.runID, time.Now())
	case errors.As(limit, &full):
		if began, ok := ctx.Value(reconcileBegan{}).(time.Time); ok {
			c.freedSlots.dropBefore(rs.runID, began)
		}
	}
}

// reconcileBegan keys the time a spec's reconcile began in its context.
type reconcileBegan struct{}
