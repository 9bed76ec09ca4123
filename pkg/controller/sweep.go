package controller

import (
	"context"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
)

// A run's succeeded Jobs leave in one DeleteCollection per status write instead of one
// DELETE each: a node then costs about one write (its Job's create), not two.
//
// DeleteCollection deletes by name whatever its list selects, so it must select only
// Jobs whose success the stored status holds. The sweep lists the run's succeeded Jobs
// (status.successful=1) at exactly the resourceVersion of the newest Job it holds as
// landed: the informer delivers Jobs in resourceVersion order, so every Job that had
// succeeded by then was seen, recorded and handed over no later than that one. The
// list is a read; only if every Job it returns is one the sweep holds as landed does
// the DeleteCollection follow, with the same selectors at the same resourceVersion,
// which select the same set. Anything else (a relist that delivered Jobs out of order,
// a resourceVersion already compacted, an error) falls back to one DELETE per Job.

// sweep is the run's succeeded Jobs whose outcome has landed.
type sweep struct {
	run    string
	rv     uint64               // the newest resourceVersion among them
	landed map[types.UID]bool   // every landed success, also those already on their way out
	fresh  map[types.UID]jobRef // those not yet queued for deletion
}

func newSweep(run string) *sweep {
	return &sweep{run: run, landed: map[types.UID]bool{}, fresh: map[types.UID]jobRef{}}
}

// add takes a landed, succeeded Job; false if the sweep cannot serve it (another run's
// Job, or a resourceVersion that is not a number), which then goes on its own.
func (s *sweep) add(job *batchv1.Job) bool {
	rv, err := strconv.ParseUint(job.ResourceVersion, 10, 64)
	if err != nil || job.Labels[jobs.LabelRun] != s.run || !succeeded(job) {
		return false
	}
	s.rv = max(s.rv, rv)
	s.landed[job.UID] = true
	s.fresh[job.UID] = refOf(job)
	return true
}

// alsoLanded notes a landed success already queued for deletion: a list at the
// sweep's resourceVersion may still return it.
func (s *sweep) alsoLanded(job *batchv1.Job) {
	if job.Labels[jobs.LabelRun] == s.run && succeeded(job) {
		s.landed[job.UID] = true
	}
}

func succeeded(job *batchv1.Job) bool {
	cond := finishedCondition(job)
	return cond != nil && cond.Type == batchv1.JobComplete
}

func (c *Controller) queueSweep(ctx context.Context, requested map[jobRef]time.Time, s *sweep) {
	if len(s.fresh) == 0 {
		return
	}
	now := time.Now()
	for _, ref := range s.fresh {
		requested[ref] = now
	}
	logging.FromContext(ctx).V(2).Info("succeeded Jobs recorded; deleting them", logging.KeyRun, s.run, "jobs", len(s.fresh))
	c.deletions.Add(deletion{sweep: s})
}

// sweepSucceeded deletes the sweep's Jobs with one DeleteCollection when a list at its
// resourceVersion shows that this selects nothing else, else one by one.
func (c *Controller) sweepSucceeded(ctx context.Context, s *sweep) error {
	api := c.client.BatchV1().Jobs(c.opts.Namespace)
	opts := metav1.ListOptions{
		LabelSelector:        jobs.LabelApp + "=" + jobs.AppName + "," + jobs.LabelRun + "=" + s.run,
		FieldSelector:        "status.successful=1",
		ResourceVersion:      strconv.FormatUint(s.rv, 10),
		ResourceVersionMatch: metav1.ResourceVersionMatchExact,
	}
	list, err := api.List(ctx, opts)
	if err == nil && s.covers(list.Items) {
		if err = api.DeleteCollection(ctx, backgroundDeletion, opts); err == nil {
			return nil
		}
	}
	logging.FromContext(ctx).V(2).Info("deleting succeeded Jobs one by one", logging.KeyRun, s.run, "jobs", len(s.fresh), "reason", sweepFallbackReason(err))
	for _, ref := range s.fresh {
		c.deletions.Add(deletion{job: ref})
	}
	return nil
}

// covers: every listed Job is one whose success has landed.
func (s *sweep) covers(listed []batchv1.Job) bool {
	for i := range listed {
		if !s.landed[listed[i].UID] {
			return false
		}
	}
	return true
}

func sweepFallbackReason(err error) string {
	if err != nil {
		return err.Error()
	}
	return "the list holds a Job whose outcome has not landed"
}
