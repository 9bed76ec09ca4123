package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/pullsecret"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// apply creates the Jobs the window starts and deletes the ones that must stop: nodes
// gone mid-pull. Finished Jobs are collectJobs' business.
func (c *Controller) apply(ctx context.Context, cm *corev1.ConfigMap, rs *runState, d rollout.Decision, gone []string) error {
	c.createJobs(ctx, cm, rs, d.Start)
	c.settleStamps(ctx, rs, d.Limit)
	for _, node := range append(d.Cancel, gone...) {
		if err := c.deleteJob(ctx, jobs.JobName(rs.runID, node)); err != nil {
			return err
		}
		metrics.JobsFinished.WithLabelValues(cm.Name, "cancelled").Inc()
	}
	return nil
}

// createJobs hands the nodes' Jobs to the creator (creates.go). Each node counts as
// running from now, and each takes the oldest freed slot's stamp for the refill
// latency: claimed here, in order, before settleStamps drops what is left.
func (c *Controller) createJobs(ctx context.Context, cm *corev1.ConfigMap, rs *runState, nodes []string) {
	for _, node := range nodes {
		job := jobs.BuildJob(c.jobParams(rs, node))
		job.OwnerReferences = []metav1.OwnerReference{rs.owner}
		rs.awaiting[node] = awaitedJob{since: time.Now(), held: job.Annotations[jobs.AnnotationHeld] != ""}
		freed, _ := c.freedSlots.claim(rs.runID)
		c.creates.send(ctx, pendingCreate{spec: cm.Name, runID: rs.runID, node: node, job: job, freed: freed})
	}
}

func (c *Controller) deleteJob(ctx context.Context, name string) error {
	err := c.client.BatchV1().Jobs(c.opts.Namespace).Delete(ctx, name, backgroundDeletion)
	return wrapf(ignoreNotFound(err), "delete Job %s", name)
}

// ensureSecret creates the run's pull Secret from the registries' credentials Secrets
// before any Job needs it. A failure fails the run with a clear Event; no Job starts.
func (c *Controller) ensureSecret(ctx context.Context, cm *corev1.ConfigMap, rs *runState) error {
	if rs.secret.Load() == secretPresent {
		return nil
	}
	if rs.spec.PullSecret != "" {
		return c.checkTaskSecret(ctx, cm, rs)
	}
	data, err := c.dockerConfig(ctx, rs)
	if err == nil {
		secret := jobs.BuildSecret(jobs.RunRef{Namespace: c.opts.Namespace, Spec: cm.Name, RunID: rs.runID}, data)
		secret.OwnerReferences = []metav1.OwnerReference{rs.owner}
		_, err = c.client.CoreV1().Secrets(c.opts.Namespace).Create(ctx, secret, metav1.CreateOptions{})
		if err == nil {
			metrics.SecretsCreated.WithLabelValues().Inc()
			c.recorder.Eventf(cm, corev1.EventTypeNormal, "PullSecretCreated", "Secret %s created for run %s", secret.Name, rs.runID)
		}
		err = ignoreAlreadyExists(err)
		if err != nil {
			metrics.SecretFailures.WithLabelValues("create").Inc()
		}
	}
	if err != nil {
		rs.failure = "pull Secret: " + err.Error()
		c.recorder.Event(cm, corev1.EventTypeWarning, "PullSecretFailed", truncate(rs.failure, maxEventLen))
		return err
	}
	rs.secret.Store(secretPresent)
	return nil
}

// dockerConfig builds the .dockerconfigjson from every registry's credentials Secret.
// Errors name the registry and Secret, never a value.
func (c *Controller) dockerConfig(ctx context.Context, rs *runState) ([]byte, error) {
	var creds []pullsecret.Credential
	for i, reg := range rs.spec.Registries {
		if reg.CredentialsSecret == "" {
			continue
		}
		s, err := c.client.CoreV1().Secrets(c.opts.Namespace).Get(ctx, reg.CredentialsSecret, metav1.GetOptions{})
		if err != nil {
			metrics.SecretFailures.WithLabelValues("read").Inc()
			return nil, fmt.Errorf("registries[%d] (%s): credentialsSecret %q: %w", i, reg.Server, reg.CredentialsSecret, err)
		}
		cred, err := pullsecret.FromSecret(reg.Server, s)
		if err != nil {
			metrics.SecretFailures.WithLabelValues("read").Inc()
			return nil, fmt.Errorf("registries[%d] (%s): %w", i, reg.Server, err)
		}
		creds = append(creds, cred)
	}
	return pullsecret.DockerConfigJSON(creds)
}

// reapSecret deletes the run's Secret once every node has reported.
func (c *Controller) reapSecret(ctx context.Context, cm *corev1.ConfigMap, rs *runState) error {
	if !needsSecret(rs.spec) || (rs.secret.Load() == secretAbsent) {
		return nil
	}
	if err := c.deleteSecretNamed(ctx, cm, pullSecretName(rs), rs.runID); err != nil {
		return err
	}
	rs.secret.Store(secretAbsent)
	return nil
}

// taskSecretGrace is how long a task's Secret may lag behind its ConfigMap.
const taskSecretGrace = 30 * time.Second

// errWaitForSecret: no Job starts yet; the spec is examined again shortly.
var errWaitForSecret = errors.New("waiting for the task's pull Secret")

// checkTaskSecret verifies that a task's pre-made Secret exists; the controller cannot
// re-create it because the credentials were never stored anywhere else.
func (c *Controller) checkTaskSecret(ctx context.Context, cm *corev1.ConfigMap, rs *runState) error {
	_, err := c.client.CoreV1().Secrets(c.opts.Namespace).Get(ctx, rs.spec.PullSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && time.Since(cm.CreationTimestamp.Time) < taskSecretGrace {
		// The task API creates the Secret right after the ConfigMap that owns it.
		return errWaitForSecret
	}
	if err != nil {
		metrics.SecretFailures.WithLabelValues("read").Inc()
		rs.failure = fmt.Sprintf("pull Secret: pullSecret %q: %v", rs.spec.PullSecret, err)
		c.recorder.Event(cm, corev1.EventTypeWarning, "PullSecretFailed", truncate(rs.failure, maxEventLen))
		return fmt.Errorf("pullSecret %q: %w", rs.spec.PullSecret, err)
	}
	rs.secret.Store(secretPresent)
	return nil
}

func (c *Controller) deleteSecret(ctx context.Context, cm *corev1.ConfigMap, runID string) error {
	return c.deleteSecretNamed(ctx, cm, jobs.SecretName(runID), runID)
}

func (c *Controller) deleteSecretNamed(ctx context.Context, cm *corev1.ConfigMap, name, runID string) error {
	err := c.client.CoreV1().Secrets(c.opts.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		metrics.SecretFailures.WithLabelValues("delete").Inc()
		return wrapf(err, "delete Secret %s", name)
	}
	metrics.SecretsDeleted.WithLabelValues().Inc()
	if cm != nil {
		c.recorder.Eventf(cm, corev1.EventTypeNormal, "PullSecretDeleted", "Secret %s deleted: every node of run %s reported", name, runID)
	}
	return nil
}

// teardown removes everything of a deleted spec: Jobs, Secrets, status.
func (c *Controller) teardown(ctx context.Context, spec string) error {
	rs := c.currentRun(spec)
	if rs != nil && rs.spec != nil && needsSecret(rs.spec) {
		if err := c.deleteSecretNamed(ctx, nil, pullSecretName(rs), rs.runID); err != nil {
			return err
		}
	}
	c.creates.settle(spec)
	if err := c.cleanupSpecLabel(ctx, jobs.SpecLabelValue(spec), ""); err != nil {
		return err
	}
	c.statuses.remove(spec)
	c.setRun(spec, nil)
	c.gate.remove(spec)
	c.enqueueAllNodes() // its labels go, its taint may

	metrics.ForgetSpec(spec)
	logging.FromContext(ctx).Info("spec deleted; its Jobs and Secrets are gone")
	return nil
}

// cleanupSpecLabel deletes the Jobs of the spec (by label value) not in keepRun, and
// the Secrets of their runs. When a run is superseded (keepRun set) only its active Jobs
// are cancelled: finished ones are collectJobs' (kept failures stay their time). When
// the spec is gone (keepRun empty) every Job goes at once.
func (c *Controller) cleanupSpecLabel(ctx context.Context, value, keepRun string) error {
	objs, _ := c.jobInformer.GetIndexer().ByIndex(indexBySpec, value)
	runs := map[string]bool{}
	for _, obj := range objs {
		job := obj.(*batchv1.Job)
		run := job.Labels[jobs.LabelRun]
		if run == keepRun || job.DeletionTimestamp != nil {
			continue
		}
		runs[run] = true
		if keepRun != "" && jobs.Finished(job) {
			continue
		}
		if err := c.deleteJob(ctx, job.Name); err != nil {
			return err
		}
	}
	for run := range runs {
		if err := c.deleteSecret(ctx, nil, run); err != nil {
			return err
		}
	}
	return nil
}

func ignoreAlreadyExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// storedStatus is the status as found in the cluster: the summary and its segments.
type storedStatus struct {
	objs   []*corev1.ConfigMap
	status *status.Status
	// damage says what could not be read (an older version's broken or cut-short
	// field, a lost segment): the run resumes with the rest, and the nodes whose
	// results were lost are observed afresh (their Jobs, or their images).
	damage error
}

func (c *Controller) loadStatus(ctx context.Context, spec string) (*storedStatus, error) {
	s, objs, err := status.Read(ctx, c.client, c.opts.Namespace, spec)
	switch {
	case s == nil && err != nil:
		return nil, err
	case s == nil:
		return nil, nil
	}
	return &storedStatus{objs: objs, status: s, damage: err}, nil
}

// writeStatus hands the run's status to the status writer when it changed, at most once
// per StatusInterval; a change held back is handed over by a requeue when the interval
// has passed. The ConfigMaps (pkg/status) are only built when one is due.
func (c *Controller) writeStatus(ctx context.Context, spec string, rs *runState) error {
	c.fillStatus(rs)
	rs.status.Sizes = c.pulls.sizesOf(spec)
	c.exportMetrics(spec, rs)
	if wait := c.opts.StatusInterval - time.Since(rs.lastWrite); wait > 0 {
		c.queue.AddAfter(spec, wait) // one deferred reconcile writes what changed meanwhile
		return nil
	}
	objs, err := rs.status.ConfigMaps(c.opts.Namespace, map[string]string{jobs.LabelApp: jobs.AppName})
	if err != nil {
		return err
	}
	summary := objs[len(objs)-1]
	if len(objs) == 1 && maps.Equal(summary.Data, rs.written) {
		rs.handedOver(rs.writeSeq) // nothing new to write: what was handed over holds it
		return nil
	}
	if rs.owner.UID != "" {
		for _, cm := range objs {
			cm.OwnerReferences = []metav1.OwnerReference{rs.owner}
		}
	}
	rs.writeSeq = c.statuses.write(spec, objs...)
	rs.handedOver(rs.writeSeq)
	rs.written, rs.lastWrite = summary.Data, time.Now()
	return nil
}
