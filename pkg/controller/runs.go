package controller

import (
	"context"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

func (c *Controller) currentRun(spec string) *runState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[spec]
}

func (c *Controller) setRun(spec string, rs *runState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.freedSlots.replaceRun(c.runs[spec], rs)
	if rs == nil {
		delete(c.runs, spec)
		c.pulls.reset(spec, nil)
		return
	}
	c.runs[spec] = rs
}

// runFor returns the state of the spec's current run. A new run ID (spec edited, or
// first sight after a restart) loads the status ConfigMap, resumes when it belongs to
// the same run, and cancels every other run of the spec.
func (c *Controller) runFor(ctx context.Context, cm *corev1.ConfigMap, spec *config.Spec) (*runState, error) {
	runID := runIDFor(cm.Name, spec)
	rs := c.currentRun(cm.Name)
	if rs != nil && rs.runID == runID {
		rs.spec, rs.invalid = spec, ""
		return rs, nil
	}
	stored, err := c.loadStatus(ctx, cm.Name)
	if err != nil {
		return nil, err
	}
	fresh := &runState{
		runID: runID, spec: spec, owner: ownerOf(cm),
		status:       &status.Status{Spec: cm.Name, RunID: runID, Results: map[string]status.Result{}, Started: time.Now()},
		finishedJobs: map[types.UID]bool{}, active: map[string]int{}, awaiting: map[string]awaitedJob{},
		pullErrors: map[string]string{}, unlanded: map[string]unlanded{},
		listed: map[string]bool{}, lacking: map[string]bool{}, rewarms: map[string]rewarm{}, settled: map[string]string{},
	}
	if rs != nil { // the previous run's kept failures keep their time, its deletions their dedup
		fresh.keptSince, fresh.deleting = rs.keptSince, rs.deleting
	}
	if stored != nil {
		c.statuses.known(cm.Name, stored.objs)
		c.reportDamage(ctx, cm, stored)
		if stored.status.RunID == runID {
			fresh.status = stored.status
			fresh.status.Finished = time.Time{}
			logging.FromContext(ctx).Info("resuming run", logging.KeyRun, runID, "reported", len(stored.status.Results))
		}
	}
	// Cancel the previous run: its Jobs and its Secret. Old run IDs come from the Jobs
	// that still exist, the run in memory and the one in the status ConfigMap. Its
	// creates in flight return first, so their Jobs are among those cancelled.
	c.creates.settle(cm.Name)
	if err := c.cleanupSpecLabel(ctx, jobs.SpecLabelValue(cm.Name), runID); err != nil {
		return nil, err
	}
	for _, old := range []string{previousRun(rs), previousStoredRun(stored)} {
		if old != "" && old != runID {
			if err := c.deleteSecret(ctx, cm, old); err != nil {
				return nil, err
			}
		}
	}
	if fresh.status.Phase == "" {
		c.recorder.Eventf(cm, corev1.EventTypeNormal, "RunStarted", "run %s: %d images", runID, len(spec.References()))
	}
	c.pulls.reset(cm.Name, fresh.status.Sizes) // a resumed run keeps what its status knew
	for _, reg := range runRegistries(spec) {
		metrics.PulledBytes.WithLabelValues(reg) // at 0 from the start, so rates work before the first pull
	}
	metrics.Rewarms.WithLabelValues(cm.Name) // likewise
	metrics.RefillLatency.WithLabelValues(cm.Name)
	c.setRun(cm.Name, fresh)
	return fresh, nil
}

// reportDamage says once per load what of the stored status could not be read.
func (c *Controller) reportDamage(ctx context.Context, cm *corev1.ConfigMap, stored *storedStatus) {
	if stored.damage == nil {
		return
	}
	msg := truncate(stored.damage.Error(), maxEventLen)
	c.recorder.Eventf(cm, corev1.EventTypeWarning, "StatusDamaged", "resuming from the readable part of the stored status: %s", msg)
	logging.FromContext(ctx).Info("stored status partly unreadable; resuming with the rest", "error", msg, "readable", len(stored.status.Results))
}

func previousRun(rs *runState) string {
	if rs == nil {
		return ""
	}
	return rs.runID
}

func previousStoredRun(s *storedStatus) string {
	if s == nil {
		return ""
	}
	return s.status.RunID
}

// runJobs returns the run's Jobs by node name. The index by run skips the Jobs of the
// spec's earlier runs (their kept failures, and Jobs that finished as the run changed).
func (c *Controller) runJobs(spec, runID string) map[string]*batchv1.Job {
	objs, _ := c.jobInformer.GetIndexer().ByIndex(indexByRun, runID)
	specLabel := jobs.SpecLabelValue(spec)
	out := make(map[string]*batchv1.Job, len(objs))
	for _, obj := range objs {
		if job := obj.(*batchv1.Job); isRunJob(job, specLabel) {
			out[jobs.NodeOf(job)] = job
		}
	}
	return out
}

// nodesJobs is runJobs for some nodes only: a Job's name follows from its run and node,
// so each is one lookup rather than a walk of the run's Jobs, thousands of which wait
// for the status to land at a time.
func (c *Controller) nodesJobs(spec, runID string, nodes map[string]bool) map[string]*batchv1.Job {
	specLabel := jobs.SpecLabelValue(spec)
	out := make(map[string]*batchv1.Job, len(nodes))
	for node := range nodes {
		obj, ok, _ := c.jobInformer.GetStore().GetByKey(c.opts.Namespace + "/" + jobs.JobName(runID, node))
		if job, isJob := obj.(*batchv1.Job); ok && isJob && isRunJob(job, specLabel) && jobs.NodeOf(job) == node {
			out[node] = job
		}
	}
	return out
}

// isRunJob: a Job of the spec, not marked for deletion.
func isRunJob(job *batchv1.Job, specLabel string) bool {
	return job.Labels[jobs.LabelSpec] == specLabel && job.DeletionTimestamp == nil
}

func (c *Controller) jobPods(job string) []*corev1.Pod {
	objs, _ := c.podInformer.GetIndexer().ByIndex(indexByJob, job)
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, obj := range objs {
		pods = append(pods, obj.(*corev1.Pod))
	}
	return pods
}

// runRegistries returns the registries the run's Jobs pull from.
func runRegistries(spec *config.Spec) []string {
	seen := map[string]bool{}
	var regs []string
	for _, img := range spec.References() {
		if host := registryLabel(spec, img); !seen[host] {
			seen[host] = true
			regs = append(regs, host)
		}
	}
	return regs
}

// registryLabel is an image's registry as a bounded metric label and cap key.
func registryLabel(spec *config.Spec, image string) string {
	if r := spec.RegistryFor(image); r != nil {
		return config.CanonicalHost(r.Server)
	}
	host, err := config.RegistryHost(image)
	if err != nil {
		return "unknown"
	}
	return config.CanonicalHost(host)
}

func registryCaps(spec *config.Spec) map[string]int {
	caps := map[string]int{}
	for _, r := range spec.Registries {
		if r.MaxConcurrentPulls > 0 {
			caps[config.CanonicalHost(r.Server)] = r.MaxConcurrentPulls
		}
	}
	return caps
}

func needsSecret(spec *config.Spec) bool {
	if spec.PullSecret != "" {
		return true
	}
	for _, r := range spec.Registries {
		if r.CredentialsSecret != "" {
			return true
		}
	}
	return false
}

// inUseElsewhere sums other specs' running Jobs per registry.
func (c *Controller) inUseElsewhere(spec string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := map[string]int{}
	for name, rs := range c.runs {
		if name == spec {
			continue
		}
		for reg, n := range rs.active {
			sum[reg] += n
		}
	}
	return sum
}

// recordActive remembers this run's running Jobs per registry; when a slot frees up,
// specs held back by a registry cap are re-examined.
func (c *Controller) recordActive(rs *runState, regs []string) {
	running := rs.view.tally[rollout.Running]
	c.mu.Lock()
	before := 0
	for _, reg := range regs {
		before = max(before, rs.active[reg])
	}
	rs.active = make(map[string]int, len(regs))
	for _, reg := range regs {
		rs.active[reg] = running
	}
	var blocked []string
	if running < before {
		for name, other := range c.runs {
			if other.capBlocked && other != rs {
				blocked = append(blocked, name)
			}
		}
	}
	c.mu.Unlock()
	for _, name := range blocked {
		c.queue.Add(name)
	}
}

func (c *Controller) jobParams(rs *runState, node string) jobs.JobParams {
	spec := rs.spec
	held := rs.heldImages()
	var images []jobs.ImagePull
	for _, img := range spec.References() {
		if !held[img] {
			images = append(images, jobs.ImagePull{Image: img, PullPolicy: spec.PullPolicyFor(img)})
		}
	}
	p := jobs.JobParams{
		Ref:            jobs.RunRef{Namespace: c.opts.Namespace, Spec: rs.status.Spec, RunID: rs.runID},
		Node:           node,
		Images:         images,
		Tolerations:    spec.JobTolerations(),
		NoopImage:      c.opts.NoopImage,
		NoopPullPolicy: corev1.PullIfNotPresent,
		PullTimeout:    spec.Rollout.PullTimeout.Duration,
		// The controller deletes the Job once recorded; the TTL is for no controller.
		TTLAfterFinished: spec.KeepFailedJobs() + backstopGrace,
		Method:           c.pullMethod(spec, node),
		Held:             len(images) < len(spec.References()),
	}
	if spec.Rollout.Retries != nil {
		p.Retries = *spec.Rollout.Retries
	}
	if needsSecret(spec) {
		p.PullSecret = pullSecretName(rs)
	}
	return p
}

var backgroundDeletion = metav1.DeleteOptions{PropagationPolicy: new(metav1.DeletePropagationBackground)}

// pullSecretName is the run's pull Secret: the task's own, or one per run.
func pullSecretName(rs *runState) string {
	if rs.spec.PullSecret != "" {
		return rs.spec.PullSecret
	}
	return jobs.SecretName(rs.runID)
}
