package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// runState is what the controller remembers of a spec's current run between reconciles.
// Everything here can be rebuilt from the cluster (Jobs and the status ConfigMap), which
// is what makes a restart safe.
type runState struct {
	runID  string
	spec   *config.Spec
	owner  metav1.OwnerReference
	status *status.Status
	// secret is whether the pull Secret exists (unknown after a restart). Atomic: other
	// specs' reconciles read it for the active-Secrets gauge.
	secret       atomic.Int32
	lastWrite    time.Time         // when the status was last handed to the writer
	written      map[string]string // what was handed over
	writeSeq     uint64            // the writer's sequence number for it
	finishedJobs map[types.UID]bool
	// unlanded holds the results recorded since the last stored status write: their
	// nodes' Jobs stay until it lands. awaitingStatus says some Job waits for that, so
	// the write landing queues a reconcile (atomic: the status writer reads it).
	unlanded       map[string]unlanded
	awaitingStatus atomic.Bool
	// keptSince holds the failed Jobs kept for debugging and when they failed; deleting
	// the Jobs whose deletion is queued, and when. Both outlive a run (see cleanup.go).
	keptSince map[jobRef]time.Time
	deleting  map[jobRef]time.Time
	// awaiting holds nodes whose Job this controller created (or handed to the creator)
	// and the Job informer has not shown yet; they count as running, so a refill in
	// between cannot overfill the window.
	awaiting map[string]awaitedJob
	// pullErrors holds each running node's latest transient pull error: when the Job's
	// deadline fails it, the pod that showed the error may already be gone.
	pullErrors map[string]string
	// listed: held nodes seen listing every image in status.images (keepwarm.go);
	// rewarms: the nodes prewarmed again, for their back-off.
	listed  map[string]bool
	lacking map[string]bool // listed nodes that lack an image now, waiting for their rewarm
	rewarms map[string]rewarm
	// settled: held nodes keep warm found nothing to do for, at this resourceVersion:
	// a node that has not changed since is not judged again on every reconcile.
	settled map[string]string
	// active counts this run's running Jobs per registry, for caps across specs.
	active     map[string]int
	capBlocked bool
	// holds are pulls held back after nodes failed alike; waiting the nodes that wait
	// for them; secretsChecked when held credentials' Secrets were last read (holds.go).
	holds          map[string]*hold
	waiting        map[string]bool
	proven         map[string]bool // hold keys a Job of this run pulled: never held
	secretsChecked time.Time
	window         int // the window of the last decision
	view           viewState
	collect        collectPass // the last walk of the spec's Jobs (cleanup.go)
	completed      bool        // a completion Event was emitted for the current set of nodes
	invalid        string
	failure        string
}

// awaitTimeout: a Job created but never seen (deleted at once by someone else) stops
// holding its slot after this long, and the node is started again.
const awaitTimeout = 30 * time.Second

// awaitedJob is a Job created and not shown yet: since when, and whether it leaves
// out held images (a hold counts the others as Jobs that may yet prove it wrong).
type awaitedJob struct {
	since time.Time
	held  bool
}

func (rs *runState) awaitingJob(node string) bool {
	created, ok := rs.awaiting[node]
	if ok && time.Since(created.since) > awaitTimeout {
		delete(rs.awaiting, node)
		return false
	}
	return ok
}

// Values of runState.secret.
const (
	secretUnknown int32 = iota
	secretPresent
	secretAbsent
)

// runIDFor names a run: a hash of the spec's name and content, so a restarted controller
// derives the same object names and two specs with equal content never collide.
func runIDFor(specName string, spec *config.Spec) string {
	sum := sha256.Sum256([]byte(specName + "\x00" + spec.RunID()))
	return hex.EncodeToString(sum[:])[:10]
}

func (c *Controller) sync(ctx context.Context, name string) error {
	if value, ok := strings.CutPrefix(name, orphanPrefix); ok {
		return c.cleanupSpecLabel(ctx, value, "")
	}
	obj, exists, err := c.specInformer.GetStore().GetByKey(c.opts.Namespace + "/" + name)
	if err != nil {
		return err
	}
	if !exists {
		return c.teardown(ctx, name)
	}
	cm := obj.(*corev1.ConfigMap)
	spec, err := config.FromConfigMap(cm)
	rs := c.currentRun(name)
	if err != nil {
		return c.rejectSpec(ctx, cm, rs, err)
	}
	metrics.ConfigValid.WithLabelValues(name).Set(1)
	rs, err = c.runFor(ctx, cm, spec)
	if err != nil {
		return err
	}
	return c.reconcileRun(ctx, cm, rs)
}

// rejectSpec reports an invalid spec. A run already under way keeps going under its last
// valid spec: a bad edit must not lose work in progress.
func (c *Controller) rejectSpec(ctx context.Context, cm *corev1.ConfigMap, rs *runState, err error) error {
	// Once per revision: every node event reconciles the spec again, and a log line and
	// an Event each time would bury the one that matters.
	if metrics.RejectConfig(cm.Name, cm.ResourceVersion) {
		c.recorder.Event(cm, corev1.EventTypeWarning, "InvalidSpec", truncate(err.Error(), maxEventLen))
		logging.FromContext(ctx).Info("prewarm spec rejected", "error", err.Error())
	}
	if rs == nil {
		rs = &runState{status: &status.Status{Spec: cm.Name, Results: map[string]status.Result{}}, owner: ownerOf(cm)}
		c.setRun(cm.Name, rs)
	}
	rs.invalid = err.Error()
	if rs.spec == nil {
		c.gateRun(cm.Name, rs)
		return c.writeStatus(ctx, cm.Name, rs)
	}
	return c.reconcileRun(ctx, cm, rs)
}

// reconcileRun starts again the nodes whose Job create failed, then reconciles the
// run; the failed creates' error is returned after the run's status is written.
func (c *Controller) reconcileRun(ctx context.Context, cm *corev1.ConfigMap, rs *runState) error {
	failedCreates := c.restartFailedCreates(cm.Name, rs)
	return errors.Join(failedCreates, c.reconcileNodes(ctx, cm, rs))
}

// reconcileNodes observes the run's nodes, decides, applies and reports.
func (c *Controller) reconcileNodes(ctx context.Context, cm *corev1.ConfigMap, rs *runState) error {
	if err := c.resumeHolds(ctx, cm, rs); err != nil {
		return err
	}
	sel := newSelection(rs.spec)
	nodes, gone := c.observe(ctx, cm, rs, sel)
	// A hold that began, settled or ended in this pass changes what every node waits
	// for: observe them all again (a hold changes at most twice a pass).
	c.settleHolds(ctx, cm, rs)
	for pass := 0; rs.view.stale && pass < 3; pass++ {
		var more []string
		nodes, more = c.observe(ctx, cm, rs, sel)
		gone = append(gone, more...)
		c.settleHolds(ctx, cm, rs)
	}
	if rs.view.stale {
		c.queue.Add(cm.Name)
	}
	regs := runRegistries(rs.spec)
	rs.window = rs.spec.WindowSize(len(nodes))
	decision := rollout.Decide(rollout.Input{
		Nodes:          nodes,
		Window:         rs.window,
		Registries:     regs,
		Caps:           registryCaps(rs.spec),
		InUseElsewhere: c.inUseElsewhere(cm.Name),
	})
	if rs.spec.Once && rs.status.Done() {
		decision.Start = nil // a one-shot task never grows after it ended
	}
	var capErr *rollout.RegistryCapError
	rs.capBlocked = errors.As(decision.Limit, &capErr)
	counts := rs.view.counts()
	if needsSecret(rs.spec) && (len(decision.Start) > 0 || counts[rollout.Running] > 0) {
		err := c.ensureSecret(ctx, cm, rs)
		if errors.Is(err, errWaitForSecret) {
			c.queue.AddAfter(cm.Name, 200*time.Millisecond)
			return nil
		}
		if err != nil {
			return errors.Join(err, c.writeStatus(ctx, cm.Name, rs))
		}
	}
	rs.failure = ""
	if err := c.apply(ctx, cm, rs, decision, gone); err != nil {
		return err
	}
	c.collectJobs(ctx, cm, rs) // before the status is handed over: see awaitingStatus
	rs.view.started(decision.Start)
	c.recordActive(rs, regs)
	counts = rs.view.counts()
	if counts.Done(len(nodes)) {
		if err := c.reapSecret(ctx, cm, rs); err != nil {
			return err
		}
		c.announceCompletion(cm, rs, counts, len(nodes))
	} else {
		rs.completed = false
	}
	c.gateRun(cm.Name, rs)
	return c.writeStatus(ctx, cm.Name, rs)
}

// observe derives the nodes' phases in this run from nodes, Jobs and pods, recording
// final results, and returns the view of every node (view.go: only the nodes marked
// since the last reconcile are observed again, unless a full observation is due). It
// returns the names of nodes that are gone while their Job still runs. A Job whose pod
// hit a permanent pull error fails its node at once; the Job itself goes, or is kept
// for debugging, once the failure is recorded (collectJobs).
func (c *Controller) observe(ctx context.Context, cm *corev1.ConfigMap, rs *runState, sel selection) (nodes []rollout.Node, gone []string) {
	names, full, jobsByNode := c.toObserve(cm, rs)
	if full {
		rs.view.reset()
	}
	rebuild := full
	for name := range names {
		n, shown, isGone := c.observeOne(ctx, cm, rs, sel, name, jobsByNode[name])
		if isGone {
			gone = append(gone, name)
		}
		n.Name = name
		rebuild = rs.view.update(n, shown) || rebuild
	}
	if rebuild {
		rs.view.sortView()
	}
	return rs.view.nodes, gone
}

// observeOne derives one node's phase; shown is false for a node the run does not
// show (not eligible, or gone without a result).
func (c *Controller) observeOne(ctx context.Context, cm *corev1.ConfigMap, rs *runState, sel selection, name string, job *batchv1.Job) (n rollout.Node, shown, gone bool) {
	obj, exists, _ := c.nodeInformer.GetStore().GetByKey(name)
	if !exists {
		return c.observeGone(ctx, cm, rs, name, job)
	}
	node := obj.(*nodeRecord)
	if r, ok := rs.status.Results[name]; ok && !c.lostImages(ctx, cm, rs, sel, node, job) {
		return rollout.Node{Phase: rollout.Phase(r.Phase)}, true, false
	}
	if job != nil {
		delete(rs.awaiting, name)
		return c.observeNodeJob(ctx, cm, rs, name, job), true, false
	}
	switch {
	case rs.awaitingJob(name):
		rs.observeAgainAt(name, rs.awaiting[name].since.Add(awaitTimeout))
		return rollout.Node{Phase: rollout.Running, JobActive: true}, true, false
	case !sel.eligible(node):
		return rollout.Node{}, false, false
	case sel.hasAllImages(node):
		c.record(ctx, cm, rs, name, rollout.Skipped, "")
		return rollout.Node{Phase: rollout.Skipped}, true, false
	case rs.waits(name):
		return rollout.Node{Phase: rollout.Paused}, true, false
	}
	return rollout.Node{Phase: rollout.Pending}, true, false
}

// observeGone handles a node that left the cluster: its result stays shown; a Job
// still running for it is cancelled and the node recorded Gone.
func (c *Controller) observeGone(ctx context.Context, cm *corev1.ConfigMap, rs *runState, name string, job *batchv1.Job) (n rollout.Node, shown, gone bool) {
	if job != nil && rs.status.Results[name].Phase == "" {
		obs := c.observeNodeJob(ctx, cm, rs, name, job)
		if obs.Phase != rollout.Succeeded && obs.Phase != rollout.Failed { // else it finished before the node left
			gone = observeJob(job, nil).active
			c.record(ctx, cm, rs, name, rollout.Gone, "node deleted while its prewarm Job ran")
		}
	}
	if r, ok := rs.status.Results[name]; ok {
		return rollout.Node{Phase: rollout.Phase(r.Phase)}, true, gone
	}
	return rollout.Node{}, false, gone
}

// observeNodeJob turns a node's Job into its rollout state, recording final outcomes
// and pull durations once.
func (c *Controller) observeNodeJob(ctx context.Context, cm *corev1.ConfigMap, rs *runState, node string, job *batchv1.Job) rollout.Node {
	pods := c.jobPods(job.Name)
	obs := observeJob(job, pods)
	if pullErr := lastPullError(pods); pullErr != "" {
		rs.pullErrors[node] = pullErr
	}
	if obs.phase == rollout.Failed && !obs.failFast && rs.pullErrors[node] != "" {
		obs.reason = truncate(obs.reason+"; last pull error: "+rs.pullErrors[node], maxReasonLen)
	}
	n, held, counted := c.holdBack(ctx, cm, rs, node, job, obs)
	if held {
		c.countFinished(cm.Name, rs, job, obs, pods)
		return n
	}
	if obs.phase == rollout.Succeeded || obs.phase == rollout.Failed {
		delete(rs.pullErrors, node)
		c.recordOutcome(ctx, cm, rs, node, obs.phase, obs.reason, !counted)
		c.countFinished(cm.Name, rs, job, obs, pods)
	}
	return rollout.Node{Name: node, Phase: obs.phase, JobActive: obs.active && !obs.failFast}
}

// record stores a node's final result for the run, once, with an Event for failures.
func (c *Controller) record(ctx context.Context, cm *corev1.ConfigMap, rs *runState, node string, phase rollout.Phase, reason string) {
	c.recordOutcome(ctx, cm, rs, node, phase, reason, true)
}

// recordOutcome is record; announce false leaves out the NodeFailed Event of a failure
// counted towards a hold: a pause's one PullsPaused Event tells of them all (fifty alike
// Events would spend the recorder's spam budget, 25 per object, and drop the Events
// that matter), and a hold lifted emits them then (announceFailures).
func (c *Controller) recordOutcome(ctx context.Context, cm *corev1.ConfigMap, rs *runState, node string, phase rollout.Phase, reason string, announce bool) {
	if _, done := rs.status.Results[node]; done {
		return
	}
	rs.status.SetResult(node, status.Result{Phase: string(phase), Reason: reason})
	c.gateRecord(cm.Name, node, phase)
	if phase == rollout.Skipped && rs.listed != nil {
		rs.listed[node] = true // skipped because status.images lists every image
	}
	if rs.unlanded == nil {
		rs.unlanded = map[string]unlanded{}
	}
	rs.unlanded[node] = unlanded{at: time.Now()}
	if phase == rollout.Failed || phase == rollout.Gone {
		class := metrics.ReasonClass(string(phase), reason)
		metrics.NodeFailures.WithLabelValues(cm.Name, class).Inc()
		if announce {
			c.recorder.Eventf(cm, corev1.EventTypeWarning, "NodeFailed", "node %s: %s", node, truncate(reason, maxEventLen))
		}
		logging.FromContext(ctx).Info("node failed to prewarm", logging.KeyNode, node, logging.KeyRun, rs.runID, "reason", reason)
	}
}

// countFinished updates Job metrics once per Job, and pull durations from container
// timestamps for the pods no Pulled Event described.
func (c *Controller) countFinished(spec string, rs *runState, job *batchv1.Job, obs observation, pods []*corev1.Pod) {
	if rs.finishedJobs[job.UID] {
		return
	}
	rs.finishedJobs[job.UID] = true
	result := "succeeded"
	if obs.phase == rollout.Failed {
		result = "failed"
	}
	metrics.JobsFinished.WithLabelValues(spec, result).Inc()
	for _, pod := range pods {
		if c.pulls.takeDescribed(spec, pod.Name) || obs.phase != rollout.Succeeded {
			continue // kubelet's Pulled Events gave its pulls, or it did not finish them
		}
		for i, d := range pullDurations(pod) {
			if refs := rs.spec.References(); i < len(refs) {
				metrics.PullDuration.WithLabelValues(registryLabel(rs.spec, refs[i])).Observe(d.Seconds())
			}
		}
	}
}

func (c *Controller) announceCompletion(cm *corev1.ConfigMap, rs *runState, counts rollout.Counts, total int) {
	if rs.completed {
		return
	}
	rs.completed = true
	failed := counts[rollout.Failed] + counts[rollout.Gone]
	reason, kind := "RolloutCompleted", corev1.EventTypeNormal
	if failed > 0 {
		reason, kind = "RolloutCompletedWithFailures", corev1.EventTypeWarning
	}
	c.recorder.Eventf(cm, kind, reason, "run %s: %d nodes: %d succeeded, %d skipped, %d failed, %d gone",
		rs.runID, total, counts[rollout.Succeeded], counts[rollout.Skipped], counts[rollout.Failed], counts[rollout.Gone])
}

func ownerOf(cm *corev1.ConfigMap) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID}
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
