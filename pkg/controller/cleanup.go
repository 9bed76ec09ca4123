package controller

import (
	"cmp"
	"context"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
)

// A finished Job leaves once the status ConfigMap holds its outcome, not before: the
// status is the durable record, and a restarted controller resumes from it. Every node
// therefore has, at any moment, its result in the stored status or its Job in the
// cluster (or both), so a restart loses no outcome and creates no second Job.
//
// The controller deletes the Job itself, with background propagation (the garbage
// collector removes its pods): one write per node, issued as soon as the status write
// that carries the outcome has landed. A short ttlSecondsAfterFinished would save that
// request (the API server does the same delete either way, for the TTL controller), but
// it counts from the Job's end, not from the record: a controller down, or its status
// writes failing, for longer than the TTL would find neither the result nor the Job,
// lose the outcome and prewarm the node again. It is also fixed at creation, before the
// outcome is known, so it cannot keep failures longer than successes.
//
// Successful Jobs go at once. A failed node's Job and pods stay keepFailedJobs after
// the failure was recorded, at most config.FailedJobsKeptPerRun of a run at a time: a
// failure takes a place only when one is free, never a kept Job's, and the rest go at
// once. A kept Job whose pod waits on a permanent pull error keeps being retried by
// kubelet with its back-off until the Job's deadline; the same count bounds that. Each
// Job still carries a ttlSecondsAfterFinished of keepFailedJobs + backstopGrace, for
// the case of no controller at all.

// backstopGrace: a finished Job's TTL is keepFailedJobs plus this much, so it only fires
// when no controller deleted the Job in time, and a controller that was away for less
// than this still finds every unrecorded Job.
const backstopGrace = time.Hour

// deleteWorkers delete finished Jobs in parallel, off the reconcile: when a status
// write lands it may release a few dozen Jobs at once, and the refill must not wait.
const deleteWorkers = 4

// jobRef names one Job; the UID keeps a later Job of the same name apart.
type jobRef struct {
	name string
	uid  types.UID
}

func refOf(job *batchv1.Job) jobRef { return jobRef{name: job.Name, uid: job.UID} }

// unlanded is a node's result recorded since the run's last stored status write.
type unlanded struct {
	at  time.Time // when it was recorded
	seq uint64    // the status write that carries it; 0 until one is handed over
}

// handedOver marks the results recorded so far as carried by status write seq.
func (rs *runState) handedOver(seq uint64) {
	for node, u := range rs.unlanded {
		if u.seq == 0 {
			u.seq = seq
			rs.unlanded[node] = u
		}
	}
}

// failedJob is a failed node's Job that may be kept.
type failedJob struct {
	job   *batchv1.Job
	since time.Time
	// fresh: its failure landed in this pass. Fresh Jobs only take the places that
	// kept ones leave free, so a kept Job is never deleted early for a later failure.
	fresh bool
}

// outcome is what collectJobs needs to know of a Job's node.
type outcome struct {
	done   bool      // the node has a final result
	landed bool      // the stored status holds it
	failed bool      // the result is a failure
	fresh  bool      // it has landed since the last pass
	since  time.Time // when it was recorded, if known
}

// collectJobs queues for deletion the spec's finished Jobs whose outcome the stored
// status holds, keeps failed ones within the spec's keepFailedJobs and the per-run
// count, and asks for a reconcile when the next kept Job is due. It makes no API call.
func (c *Controller) collectJobs(ctx context.Context, cm *corev1.ConfigMap, rs *runState) {
	p := &rs.collect
	if p.walk == nil {
		stored := c.statuses.landed(cm.Name)
		if !p.due(stored, rs.view.lastFull) {
			// Nothing landed and no timer is due: no Job can have become collectable.
			// The Jobs of results recorded since wait for the status to land.
			if len(rs.unlanded) > 0 {
				rs.awaitingStatus.Store(true)
			}
			return
		}
		objs, _ := c.jobInformer.GetIndexer().ByIndex(indexBySpec, jobs.SpecLabelValue(cm.Name))
		p.walk = &collectWalk{stored: stored, began: time.Now(), objs: objs,
			failed: map[string][]failedJob{}, requested: map[jobRef]time.Time{}, sweep: newSweep(rs.runID)}
	}
	w := p.walk
	if !c.collectSome(ctx, rs, w) {
		rs.awaitingStatus.Store(true)
		c.queue.Add(cm.Name) // the rest in the next reconcile
		return
	}
	next := c.finishCollect(ctx, cm, rs, w)
	*p = collectPass{landed: w.stored, at: w.began, next: next}
}

// collectPass is when the spec's Jobs were last walked, and what makes the next walk
// due. A Job becomes collectable only when a status write lands, when a kept failure
// or a deletion request times out, or, for an earlier run's Job, when it finishes,
// which the walk after each full observation (every fullObserveInterval) catches.
// Walking on every reconcile cost more than all else a reconcile did at 5000 nodes:
// the Jobs of a second's results wait for the status to land, thousands at a time.
type collectPass struct {
	landed uint64    // the stored status write the last walk judged by
	at     time.Time // when it began
	next   time.Duration
	walk   *collectWalk // a walk under way
}

func (p collectPass) due(stored uint64, lastFull time.Time) bool {
	return p.at.IsZero() || stored != p.landed || lastFull.After(p.at) ||
		(p.next > 0 && time.Since(p.at) >= p.next) || time.Since(p.at) >= requeueDeletion
}

// collectWalk is a walk of the spec's Jobs, as listed when it began, taken a chunk
// per reconcile: a walk of thousands of Jobs in one reconcile held up every refill
// behind it (issue 14's refill tail). What it gathers is used once it has seen all.
type collectWalk struct {
	stored    uint64
	began     time.Time
	objs      []any
	done      int
	failed    map[string][]failedJob // by run
	requested map[jobRef]time.Time
	waiting   bool
	sweep     *sweep
}

// collectChunk is how many Jobs a reconcile walks: a few hundred microseconds' work.
const collectChunk = 256

// collectSome walks the next chunk; true once the walk has seen every Job.
func (c *Controller) collectSome(ctx context.Context, rs *runState, w *collectWalk) bool {
	end := min(w.done+collectChunk, len(w.objs))
	for _, obj := range w.objs[w.done:end] {
		job := obj.(*batchv1.Job)
		if job.DeletionTimestamp != nil {
			continue
		}
		if at, ok := rs.deleting[refOf(job)]; ok && time.Since(at) < requeueDeletion {
			w.requested[refOf(job)] = at // on its way out: it holds no place among the kept
			w.sweep.alsoLanded(job)
			continue
		}
		switch o := rs.outcomeOf(job, w.stored); {
		case !o.done:
		case !o.landed:
			w.waiting = true
		case o.failed:
			run := job.Labels[jobs.LabelRun]
			w.failed[run] = append(w.failed[run], failedJob{job: job, since: o.since, fresh: o.fresh})
		case !w.sweep.add(job):
			c.queueDeletion(ctx, w.requested, job, "succeeded")
		}
	}
	w.done = end
	return end == len(w.objs)
}

// finishCollect queues the walk's sweep, applies the kept failures' limits and asks
// for a reconcile when the next kept Job is due, which it returns.
func (c *Controller) finishCollect(ctx context.Context, cm *corev1.ConfigMap, rs *runState, w *collectWalk) time.Duration {
	c.queueSweep(ctx, w.requested, w.sweep)
	next := c.keepFailed(ctx, rs, w.failed, w.requested)
	rs.deleting = w.requested
	for node, u := range rs.unlanded {
		if u.seq != 0 && u.seq <= w.stored {
			delete(rs.unlanded, node)
		}
	}
	// Results recorded after the walk began have Jobs it did not list: they wait too.
	rs.awaitingStatus.Store(w.waiting || len(rs.unlanded) > 0)
	if next > 0 {
		c.queue.AddAfter(cm.Name, next)
	}
	return next
}

// outcomeOf tells what the run knows of the Job's node, stored being the sequence
// number of the spec's last stored status write. A Job of an earlier run is done once
// finished: that run's record was replaced by the current one.
func (rs *runState) outcomeOf(job *batchv1.Job, stored uint64) outcome {
	kept := rs.keptSince[refOf(job)]
	if job.Labels[jobs.LabelRun] != rs.runID {
		cond := finishedCondition(job)
		if cond == nil {
			return outcome{} // running: cancelled when the run changed
		}
		return outcome{done: true, landed: true, failed: cond.Type == batchv1.JobFailed, since: kept}
	}
	r, ok := rs.status.Results[jobs.NodeOf(job)]
	if !ok {
		return outcome{}
	}
	o := outcome{done: true, landed: true, failed: r.Phase == string(rollout.Failed), since: kept}
	if u, ok := rs.unlanded[jobs.NodeOf(job)]; ok { // else loaded from the stored status, or landed
		o.landed = u.seq != 0 && u.seq <= stored
		o.fresh = o.since.IsZero()
		if o.fresh {
			o.since = u.at
		}
	}
	return o
}

// keepFailed applies keepFailedJobs and the per-run count to the failed Jobs by run; it
// returns when the next kept Job is due, 0 if none is kept.
func (c *Controller) keepFailed(ctx context.Context, rs *runState, failed map[string][]failedJob, requested map[jobRef]time.Time) time.Duration {
	keep := rs.spec.KeepFailedJobs()
	now := time.Now()
	kept := map[jobRef]time.Time{}
	var next time.Duration
	for _, list := range failed {
		for i := range list {
			if list[i].since.IsZero() {
				list[i].since = failedAt(list[i].job, c.jobPods(list[i].job.Name))
			}
		}
		slices.SortFunc(list, func(a, b failedJob) int {
			if a.fresh != b.fresh {
				return cmp.Compare(boolInt(a.fresh), boolInt(b.fresh))
			}
			if c := a.since.Compare(b.since); c != 0 {
				return c
			}
			return cmp.Compare(a.job.Name, b.job.Name)
		})
		for i, f := range list {
			left := f.since.Add(keep).Sub(now)
			if i >= config.FailedJobsKeptPerRun || left <= 0 {
				c.queueDeletion(ctx, requested, f.job, "failed")
				continue
			}
			kept[refOf(f.job)] = f.since
			if next == 0 || left < next {
				next = left
			}
		}
	}
	rs.keptSince = kept
	return next
}

// failedAt is when a failed Job failed as far as the cluster tells, for a Job this
// controller did not record (it restarted since): its Failed condition; or, when it is
// still active, its pod waiting on a permanent pull error, when the pull began: the
// previous init container's end (an authentication or not-found error comes back
// within a second of that), else the Job's start.
func failedAt(job *batchv1.Job, pods []*corev1.Pod) time.Time {
	if cond := finishedCondition(job); cond != nil && !cond.LastTransitionTime.IsZero() {
		return cond.LastTransitionTime.Time
	}
	var pullBegan time.Time
	for _, pod := range pods {
		for _, st := range pod.Status.InitContainerStatuses {
			if t := st.State.Terminated; t != nil && t.FinishedAt.After(pullBegan) {
				pullBegan = t.FinishedAt.Time
			}
		}
	}
	switch {
	case !pullBegan.IsZero():
		return pullBegan
	case job.Status.StartTime != nil:
		return job.Status.StartTime.Time
	}
	return job.CreationTimestamp.Time
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func finishedCondition(job *batchv1.Job) *batchv1.JobCondition {
	for i := range job.Status.Conditions {
		cond := &job.Status.Conditions[i]
		if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
			return cond
		}
	}
	return nil
}

// requeueDeletion: a Job the informer still shows this long after its deletion was
// queued is queued again (the delete queue retries errors by itself; this covers
// anything else).
const requeueDeletion = time.Minute

// queueDeletion queues the Job's deletion and remembers it in requested: reconciles
// between the delete and the informer showing it must not send the same DELETE again.
func (c *Controller) queueDeletion(ctx context.Context, requested map[jobRef]time.Time, job *batchv1.Job, outcome string) {
	ref := refOf(job)
	requested[ref] = time.Now()
	logging.FromContext(ctx).V(2).Info("finished Job recorded; deleting it", logging.KeyJob, job.Name, "outcome", outcome)
	c.deletions.Add(deletion{job: ref})
}

// deletion is one item of the cleanup queue: one Job, or a sweep of a run's succeeded
// Jobs.
type deletion struct {
	job   jobRef
	sweep *sweep
}

func (c *Controller) deleteRecorded(ctx context.Context, d deletion) error {
	if d.sweep != nil {
		return c.sweepSucceeded(ctx, d.sweep)
	}
	return c.deleteFinishedJob(ctx, d.job)
}

// deleteFinishedJob deletes one recorded Job; gone already, or replaced by another Job
// of that name (the UID precondition fails with a conflict), is success.
func (c *Controller) deleteFinishedJob(ctx context.Context, ref jobRef) error {
	opts := metav1.DeleteOptions{
		PropagationPolicy: backgroundDeletion.PropagationPolicy,
		Preconditions:     &metav1.Preconditions{UID: &ref.uid},
	}
	err := c.client.BatchV1().Jobs(c.opts.Namespace).Delete(ctx, ref.name, opts)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		logging.FromContext(ctx).Error(err, "deleting a finished Job failed; retrying", logging.KeyJob, ref.name)
	}
	return wrapf(err, "delete Job %s", ref.name)
}
