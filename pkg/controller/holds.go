package controller

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// A rejected password answers the same on every node: trying it on thousands of nodes
// only locks or rate-limits the robot account. A hold stops that, in three steps:
//
//   - Suspected: from the first node whose pull a registry rejects (401, 403, denied),
//     the run starts no new Job; only the Jobs already under way (at most the window)
//     go on trying. A Job that pulled every image succeeding proves the credentials
//     (the failures were the nodes' own: they stay ordinary failures) and lifts it, as
//     does the last Job under way ending below the threshold.
//   - Paused: once holdAfterNodes of them (never more than the window) failed so, the
//     run says so: phase Paused, one PullsPaused Event, the pulls_held gauge. A success
//     under way still proves the credentials and resumes.
//   - Confirmed: when no Job that pulls everything is left, the other registries' images
//     go on: new nodes get Jobs without the held images (AnnotationHeld) and then wait,
//     Paused, neither started nor reported; the nodes that failed so wait too, their
//     results dropped and Jobs deleted, so that after the fix they are prewarmed like
//     the rest.
//
// A pull not found holds that one image the same way. Held pulls resume when the spec
// changes (a new run), when the credentials Secret of the registry changes (read every
// secretCheckInterval while paused), or when a person sets config.AnnotationResume on
// the spec to a new value. Holds live in memory: after a restart a held registry is
// tried again by the Jobs of at most one window.
const (
	holdAfterNodes      = 3
	secretCheckInterval = 10 * time.Second
)

func holdThreshold(window int) int { return max(1, min(holdAfterNodes, window)) }

type hold struct {
	status.Hold
	images map[string]bool // the references held back
	nodes  map[string]bool // the nodes that failed so
	// active: the run is paused (the threshold was reached); confirmed: no Job that
	// pulls everything is left, so Jobs without the held images start.
	active, confirmed bool
	// secrets maps the registry's credentials Secrets to their resourceVersion when
	// the hold began; token is the spec's resume annotation then.
	secrets map[string]string
	token   string
}

// holdKey names a hold: a registry's credentials or one image.
func holdKey(kind, scope string) string { return kind + "/" + scope }

// holdFor returns the hold a failed pull counts towards, or nil when the failure is
// not one a hold covers (a timeout, a node's own trouble).
func holdFor(rs *runState, reason string) *hold {
	image := failedImage(rs.spec, reason)
	if image == "" {
		return nil
	}
	var kind, scope string
	switch metrics.ReasonClass(reason, "") {
	case metrics.ReasonUnauthorized:
		kind, scope = status.HoldCredentials, registryLabel(rs.spec, image)
	case metrics.ReasonNotFound:
		kind, scope = status.HoldNotFound, image
	default:
		return nil
	}
	key := holdKey(kind, scope)
	if rs.proven[key] { // a node pulled it in this run: this failure is the node's own
		return nil
	}
	if rs.holds == nil {
		rs.holds = map[string]*hold{}
	}
	if h := rs.holds[key]; h != nil {
		return h
	}
	h := &hold{Hold: status.Hold{Kind: kind, Reason: reason}, images: map[string]bool{}, nodes: map[string]bool{}}
	if kind == status.HoldCredentials {
		h.Registry = scope
		for _, ref := range rs.spec.References() {
			if registryLabel(rs.spec, ref) == scope {
				h.images[ref] = true
			}
		}
	} else {
		h.Image, h.images[image] = image, true
	}
	rs.holds[key] = h
	rs.view.stale = true // nodes whose every image is held now wait
	return h
}

// failedImage finds the reference a pull failure names: kubelet (and kwok) quote it,
// as in `Failed to pull image "harbor.example.com/ml/model:1": …`.
func failedImage(spec *config.Spec, reason string) string {
	for _, ref := range spec.References() {
		if strings.Contains(reason, `"`+ref+`"`) {
			return ref
		}
	}
	return ""
}

// holdBack handles a finished Job the run's holds concern: a held Job's success, a
// full one's (proof), or a failure that counts towards a hold. held says the outcome
// is not recorded (the node waits); counted says a recorded failure counts towards a
// hold.
func (c *Controller) holdBack(ctx context.Context, cm *corev1.ConfigMap, rs *runState, node string, job *batchv1.Job, obs observation) (n rollout.Node, held, counted bool) {
	switch {
	case obs.phase == rollout.Succeeded && job.Annotations[jobs.AnnotationHeld] != "":
		return c.wait(ctx, rs, node, job, rs.holding()), true, false // lifted meanwhile: pull the rest
	case obs.phase == rollout.Succeeded:
		c.prove(cm, rs, node)
		return n, false, false
	case obs.phase != rollout.Failed:
		return n, false, false
	}
	h := holdFor(rs, obs.reason)
	if h == nil {
		return n, false, false
	}
	h.nodes[node] = true
	if !h.active && len(h.nodes) >= holdThreshold(cmp.Or(rs.window, holdAfterNodes)) && othersToStart(rs, h) {
		c.activate(ctx, cm, rs, h)
	}
	if !h.confirmed {
		return n, false, true // a failure until the hold is confirmed
	}
	return c.wait(ctx, rs, node, job, true), true, true
}

// othersToStart reports whether a node beside those that failed so is still to be
// started: a hold protects them; with none left the failures are simply failures.
func othersToStart(rs *runState, h *hold) bool {
	for _, n := range rs.view.nodes {
		if (n.Phase == rollout.Pending || n.Phase == rollout.Paused) && !n.JobActive && !h.nodes[n.Name] {
			return true
		}
	}
	return false
}

// prove records that a Job pulled every image: no failure of this run counts towards a
// hold any more, and the holds not yet confirmed are lifted.
func (c *Controller) prove(cm *corev1.ConfigMap, rs *runState, node string) {
	if rs.proven == nil {
		rs.proven = map[string]bool{}
	}
	for _, ref := range rs.spec.References() {
		rs.proven[holdKey(status.HoldCredentials, registryLabel(rs.spec, ref))] = true
		rs.proven[holdKey(status.HoldNotFound, ref)] = true
	}
	for key, h := range rs.holds {
		if h.confirmed {
			continue
		}
		delete(rs.holds, key)
		rs.view.stale = true
		c.announceFailures(cm, rs, h)
		if h.active {
			c.resumed(cm, rs, h, "node "+node+" pulled every image with the same credentials")
		}
	}
}

// announceFailures emits the NodeFailed Events a lifted hold's failures were recorded
// without: they turned out ordinary failures, each worth its Event.
func (c *Controller) announceFailures(cm *corev1.ConfigMap, rs *runState, h *hold) {
	for _, node := range slices.Sorted(maps.Keys(h.nodes)) {
		if r := rs.status.Results[node]; r.Phase == string(rollout.Failed) {
			c.recorder.Eventf(cm, corev1.EventTypeWarning, "NodeFailed", "node %s: %s", node, truncate(r.Reason, maxEventLen))
		}
	}
}

// wait deletes a node's finished Job (its name is needed again when the pulls resume)
// and leaves the node waiting, or, when nothing is held any more, pending.
func (c *Controller) wait(ctx context.Context, rs *runState, node string, job *batchv1.Job, waiting bool) rollout.Node {
	if job != nil {
		if err := c.deleteJob(ctx, job.Name); err != nil {
			logging.FromContext(ctx).Error(err, "delete Job of a waiting node", logging.KeyNode, node)
		}
	}
	delete(rs.pullErrors, node)
	if !waiting {
		return rollout.Node{Name: node, Phase: rollout.Pending, JobActive: job != nil}
	}
	if rs.waiting == nil {
		rs.waiting = map[string]bool{}
	}
	rs.waiting[node] = true
	return rollout.Node{Name: node, Phase: rollout.Paused, JobActive: job != nil}
}

// activate pauses h's pulls: the run says so.
func (c *Controller) activate(ctx context.Context, cm *corev1.ConfigMap, rs *runState, h *hold) {
	h.active, h.Since, h.token = true, time.Now(), cm.Annotations[config.AnnotationResume]
	h.secrets = c.secretVersions(ctx, rs, h)
	scope := h.Registry + h.Image
	msg := fmt.Sprintf("pulls of %s held back after %d nodes failed alike (%s): %s", scope, len(h.nodes), h.Kind, truncate(h.Reason, maxReasonLen))
	c.recorder.Event(cm, corev1.EventTypeWarning, "PullsPaused", msg+"; "+resumeHint(rs, h))
	logging.FromContext(ctx).Info("pulls held back", logging.KeyRun, rs.runID, "kind", h.Kind, "scope", scope, "nodes", len(h.nodes), "reason", h.Reason)
	c.exportHolds(cm.Name, rs)
}

// confirm lets the other images go on once no Job that pulls everything is left: the
// nodes that failed so wait instead of staying failed, with their Jobs deleted.
func (c *Controller) confirm(ctx context.Context, rs *runState, h *hold) {
	h.confirmed = true
	rs.view.stale = true
	if rs.waiting == nil {
		rs.waiting = map[string]bool{}
	}
	for node := range h.nodes {
		if r, ok := rs.status.Results[node]; ok && r.Phase == string(rollout.Failed) {
			rs.status.DropResult(node)
			delete(rs.unlanded, node)
			if err := c.deleteJob(ctx, jobs.JobName(rs.runID, node)); err != nil {
				logging.FromContext(ctx).Error(err, "delete Job of a waiting node", logging.KeyNode, node)
			}
		}
		rs.waiting[node] = true
	}
}

func (c *Controller) resumed(cm *corev1.ConfigMap, rs *runState, h *hold, why string) {
	c.recorder.Eventf(cm, corev1.EventTypeNormal, "PullsResumed", "pulls of %s resumed: %s", h.Registry+h.Image, why)
	c.exportHolds(cm.Name, rs)
}

func resumeHint(rs *runState, h *hold) string {
	hint := fmt.Sprintf("other images continue; resumes when the spec changes or annotation %s is set to a new value", config.AnnotationResume)
	if h.Kind == status.HoldCredentials && len(credentialSecrets(rs.spec, h.Registry)) > 0 {
		hint += ", or when Secret " + strings.Join(credentialSecrets(rs.spec, h.Registry), ", ") + " changes"
	}
	return hint
}

// credentialSecrets are the Secrets the run reads credentials for registry from.
func credentialSecrets(spec *config.Spec, registry string) []string {
	if spec.PullSecret != "" {
		return []string{spec.PullSecret}
	}
	var names []string
	for _, r := range spec.Registries {
		if r.CredentialsSecret != "" && config.CanonicalHost(r.Server) == registry {
			names = append(names, r.CredentialsSecret)
		}
	}
	return names
}

func (c *Controller) secretVersions(ctx context.Context, rs *runState, h *hold) map[string]string {
	versions := map[string]string{}
	if h.Kind != status.HoldCredentials {
		return versions
	}
	for _, name := range credentialSecrets(rs.spec, h.Registry) {
		s, err := c.client.CoreV1().Secrets(c.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			versions[name] = s.ResourceVersion
		} else {
			versions[name] = "" // absent or unreadable: its creation is a change
		}
	}
	return versions
}

// resumeHolds lets held pulls go again on a person's request or, for rejected
// credentials, once their Secret changed. A changed Secret also drops the run's pull
// Secret, so it is built again from the new credentials.
func (c *Controller) resumeHolds(ctx context.Context, cm *corev1.ConfigMap, rs *runState) error {
	if !rs.holding() {
		return nil
	}
	checkSecrets := time.Since(rs.secretsChecked) >= secretCheckInterval
	if checkSecrets {
		rs.secretsChecked = time.Now()
	}
	rebuild := false
	for key, h := range rs.holds {
		why := ""
		switch {
		case cm.Annotations[config.AnnotationResume] != h.token && h.active:
			why = "asked by annotation " + config.AnnotationResume
		case checkSecrets && h.active && h.Kind == status.HoldCredentials && !maps.Equal(h.secrets, c.secretVersions(ctx, rs, h)):
			why, rebuild = "credentials Secret changed", true
		}
		if why == "" {
			continue
		}
		delete(rs.holds, key)
		rs.view.stale = true
		c.resumed(cm, rs, h, why)
		logging.FromContext(ctx).Info("held pulls resumed", logging.KeyRun, rs.runID, "scope", h.Registry+h.Image, "why", why)
	}
	if !rs.holding() {
		rs.waiting = map[string]bool{}
	}
	c.exportHolds(cm.Name, rs)
	if rebuild && rs.spec.PullSecret == "" {
		if err := c.deleteSecret(ctx, nil, rs.runID); err != nil {
			return err
		}
		rs.secret.Store(secretAbsent)
	}
	if rs.paused() {
		c.queue.AddAfter(cm.Name, secretCheckInterval)
	}
	return nil
}

// settleHolds, called after the reconcile observed its Jobs (so failures seen in the
// same pass count first), ends the holds' wait for the Jobs under way: once none that
// pulls everything is left, a paused hold is confirmed and a mere suspicion lifted.
func (c *Controller) settleHolds(ctx context.Context, cm *corev1.ConfigMap, rs *runState) {
	if !rs.holding() || c.fullJobsUnderWay(rs) {
		return
	}
	for key, h := range rs.holds {
		switch {
		case h.confirmed:
		case h.active:
			c.confirm(ctx, rs, h)
		default:
			delete(rs.holds, key)
			rs.view.stale = true
			c.announceFailures(cm, rs, h)
		}
	}
	if !rs.holding() {
		rs.waiting = map[string]bool{}
	}
}

// fullJobsUnderWay reports whether a Job that pulls every image has an outcome still to
// count: its node not recorded yet (a finished Job's outcome is counted when its node
// is observed; a failure kept for debugging stays active but is recorded).
func (c *Controller) fullJobsUnderWay(rs *runState) bool {
	for node, job := range c.runJobs(rs.status.Spec, rs.runID) {
		if _, recorded := rs.status.Results[node]; !recorded && job.Annotations[jobs.AnnotationHeld] == "" && !rs.waiting[node] {
			return true
		}
	}
	// A create still on its way (creates.go) is a Job under way too.
	for node, a := range rs.awaiting {
		if _, recorded := rs.status.Results[node]; !recorded && !a.held && !rs.waiting[node] {
			return true
		}
	}
	return false
}

// holding reports whether any pull is held back, suspected or paused.
func (rs *runState) holding() bool { return len(rs.holds) > 0 }

// paused reports whether a hold has paused the run.
func (rs *runState) paused() bool {
	for _, h := range rs.holds {
		if h.active {
			return true
		}
	}
	return false
}

// heldImages are the references new Jobs leave out: the confirmed holds'.
func (rs *runState) heldImages() map[string]bool {
	held := map[string]bool{}
	for _, h := range rs.holds {
		if h.confirmed {
			for ref := range h.images {
				held[ref] = true
			}
		}
	}
	return held
}

// waits reports whether a node without a Job waits for held pulls: while a hold is
// not confirmed every node does; then a node that already pulled the rest, or whose
// every image is held.
func (rs *runState) waits(node string) bool {
	for _, h := range rs.holds {
		if !h.confirmed {
			return true
		}
	}
	return rs.holding() && (rs.waiting[node] || len(rs.heldImages()) >= len(rs.spec.References()))
}

// statusHolds renders the active holds for the status, in a stable order.
func (rs *runState) statusHolds() []status.Hold {
	var out []status.Hold
	for _, h := range rs.holds {
		if h.active {
			sh := h.Hold
			sh.Nodes = sortedSample(h.nodes)
			out = append(out, sh)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Kind+out[i].Registry+out[i].Image < out[j].Kind+out[j].Registry+out[j].Image
	})
	return out
}

func sortedSample(nodes map[string]bool) []string {
	names := slices.Sorted(maps.Keys(nodes))
	return names[:min(len(names), 10)]
}

// holdMessage says why the run is paused, for the status.
func (rs *runState) holdMessage() string {
	var parts []string
	for _, h := range rs.statusHolds() {
		parts = append(parts, fmt.Sprintf("%s: pulls of %s held back after %d nodes failed alike: %s", h.Kind, h.Registry+h.Image, len(rs.holds[holdKey(h.Kind, h.Registry+h.Image)].nodes), truncate(h.Reason, 200)))
	}
	return strings.Join(parts, "; ") + "; other images continue; resumes when the credentials Secret or the spec changes, or annotation " + config.AnnotationResume + " is set to a new value"
}

// exportHolds sets the held-pulls gauge: images held back per kind.
func (c *Controller) exportHolds(spec string, rs *runState) {
	byKind := map[string]int{status.HoldCredentials: 0, status.HoldNotFound: 0}
	for _, h := range rs.holds {
		if h.active {
			byKind[h.Kind] += len(h.images)
		}
	}
	for kind, n := range byKind {
		metrics.PullsHeld.WithLabelValues(spec, kind).Set(float64(n))
	}
}
