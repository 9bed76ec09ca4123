package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
)

// The node gate keeps, on each node, the startup taint (rollout.startupTaint) and the
// per-spec labels (rollout.nodeLabel) in line with what the specs' runs recorded. A taint
// key may be named by several specs, so the decision is per node across specs: the specs'
// reconciles tell the gate each node's outcome (gateBook), and a queue of node names
// patches the difference, taint and labels in one JSON patch per change. The patch tests
// the taints it replaces, so a taint someone else adds or removes meanwhile is never
// lost: the patch fails, and the node is decided again from the informer.
//
// A taint the gate removes goes when the node holds the images of every spec that names
// the taint and selects the node; at once when one of them failed there (unless
// keepTaintOnFailure); when none selects it; and at the latest the shortest
// startupTaintTimeout of those specs after the node was created. A node without the
// taint is only labelled. Only keys that some spec names are ever touched.

const gateStartGrace = time.Minute

// gateSpec is what the gate knows of one spec's current run.
type gateSpec struct {
	key      string // run ID and gate settings: a change redecides every node
	sel      selection
	taint    string
	timeout  time.Duration
	keep     bool   // keepTaintOnFailure
	labelKey string // empty unless rollout.nodeLabel
	results  map[string]rollout.Phase
}

// gateBook is shared by the specs' reconciles (writers) and the gate's workers.
type gateBook struct {
	mu      sync.Mutex
	specs   map[string]*gateSpec
	started time.Time // stands in for a node's creation time when it has none
}

func newGateBook() *gateBook { return &gateBook{specs: map[string]*gateSpec{}, started: time.Now()} }

func gateKey(runID string, spec *config.Spec) string {
	if spec == nil {
		return runID
	}
	r := spec.Rollout
	return fmt.Sprintf("%s|%s|%s|%t|%t", runID, r.StartupTaint, r.TaintTimeout(), r.KeepTaintOnFailure, r.NodeLabel)
}

// setRun takes a spec's run after a reconcile; true when the gate must decide every
// node again (a new run, other gate settings, a spec it did not know).
func (b *gateBook) setRun(name string, rs *runState) bool {
	key := gateKey(rs.runID, rs.spec)
	b.mu.Lock()
	defer b.mu.Unlock()
	if g := b.specs[name]; g != nil && g.key == key {
		return false
	}
	g := &gateSpec{key: key, results: map[string]rollout.Phase{}}
	if rs.spec != nil {
		g.sel, g.taint, g.timeout, g.keep = newSelection(rs.spec), rs.spec.Rollout.StartupTaint, rs.spec.Rollout.TaintTimeout(), rs.spec.Rollout.KeepTaintOnFailure
		if rs.spec.Rollout.NodeLabel {
			g.labelKey = jobs.NodeLabelKey(name)
		}
	}
	for node, r := range rs.status.Results {
		g.results[node] = rollout.Phase(r.Phase)
	}
	b.specs[name] = g
	return true
}

// record notes a node's outcome; false when the gate has nothing to do with it.
func (b *gateBook) record(name, node string, phase rollout.Phase) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.specs[name]
	if g == nil {
		return false
	}
	if phase == "" {
		delete(g.results, node)
	} else {
		g.results[node] = phase
	}
	return g.taint != "" || g.labelKey != ""
}

func (b *gateBook) remove(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.specs, name)
}

// idle: the gate has nothing to do with the node. No spec's run sets a taint or a
// label, and the node carries none of the gate's labels (which it would remove), so its
// plan is empty. Such a node is not queued: at 20 000 nodes and no gated spec, queueing
// them all, and requeueing each every second until every spec had its first
// reconcile, held about 10 MB of queue for nothing. A run that starts to gate queues
// every node again (gateRun), after the book knows it, so no node is missed.
func (b *gateBook) idle(n *nodeRecord) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.specs {
		if g.taint != "" || g.labelKey != "" {
			return false
		}
	}
	return !slices.ContainsFunc(n.NodeLabels, func(l label) bool { return gateLabel(l.Key) })
}

func (b *gateBook) knows(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.specs[name] != nil
}

// nodePlan is what a node should carry, and why a taint goes.
type nodePlan struct {
	labels  map[string]bool    // our label keys: true to set, false to remove
	untaint map[string]removal // by taint key
	recheck time.Duration      // when a waiting taint's deadline comes, 0 if none
}

// removal is why a taint goes: in words, as the metric's reason, and the spec whose
// Event tells it.
type removal struct{ why, reason, spec string }

// plan decides a node against every spec.
func (b *gateBook) plan(n *nodeRecord, now time.Time) nodePlan {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := nodePlan{labels: map[string]bool{}, untaint: map[string]removal{}}
	for _, l := range n.NodeLabels {
		if gateLabel(l.Key) {
			p.labels[l.Key] = false // unless a spec wants it below
		}
	}
	names := make([]string, 0, len(b.specs))
	for name := range b.specs {
		names = append(names, name)
	}
	sort.Strings(names)
	taints := map[string]*taintVote{}
	for _, name := range names {
		g := b.specs[name]
		if g.taint == "" && g.labelKey == "" {
			continue
		}
		phase, selected := g.results[n.Name], g.sel.selects(n)
		if g.labelKey != "" {
			p.labels[g.labelKey] = p.labels[g.labelKey] || selected && holdsImages(phase)
		}
		if g.taint != "" {
			v := taints[g.taint]
			if v == nil {
				v = &taintVote{}
				taints[g.taint] = v
			}
			v.add(name, g, phase, selected)
		}
	}
	created := n.CreationTimestamp.Time
	if created.IsZero() {
		created = b.started
	}
	for i := range n.Taints {
		key := n.Taints[i].Key
		if v := taints[key]; v != nil {
			v.decide(&p, key, created, now)
		}
	}
	return p
}

func holdsImages(phase rollout.Phase) bool {
	return phase == rollout.Succeeded || phase == rollout.Skipped
}

// taintVote gathers the specs that name one taint key.
type taintVote struct {
	gating  []string // specs that select the node
	waiting bool
	failed  string // the first spec that failed on the node (keepTaintOnFailure unset)
	timeout time.Duration
	first   string // the first spec that names the taint
}

func (v *taintVote) add(name string, g *gateSpec, phase rollout.Phase, selected bool) {
	if v.first == "" {
		v.first = name
	}
	if v.timeout == 0 || g.timeout < v.timeout {
		v.timeout = g.timeout
	}
	if !selected {
		return
	}
	v.gating = append(v.gating, name)
	switch {
	case holdsImages(phase):
	case (phase == rollout.Failed || phase == rollout.Gone) && !g.keep:
		if v.failed == "" {
			v.failed = name
		}
	default:
		v.waiting = true
	}
}

func (v *taintVote) decide(p *nodePlan, key string, created, now time.Time) {
	deadline := created.Add(v.timeout)
	switch {
	case v.failed != "":
		p.untaint[key] = removal{why: "the prewarm of spec " + v.failed + " failed on it", reason: "failed", spec: v.failed}
	case len(v.gating) == 0:
		p.untaint[key] = removal{why: "no prewarm spec that names the taint selects the node", reason: "unselected", spec: v.first}
	case !v.waiting:
		p.untaint[key] = removal{why: "it holds the images of " + strings.Join(v.gating, ", "), reason: "prewarmed", spec: v.gating[0]}
	case !now.Before(deadline):
		p.untaint[key] = removal{why: fmt.Sprintf("still not prewarmed %s after the node was created (startupTaintTimeout)", v.timeout), reason: "timeout", spec: v.gating[0]}
	default:
		if left := deadline.Sub(now); p.recheck == 0 || left < p.recheck {
			p.recheck = left
		}
	}
}

// selects: the spec prewarms the node once it is Ready, schedulable and past its
// bootstrap taints. A new node is often not Ready yet and carries the kubelet's, the
// cloud provider's or Karpenter's transient taints; it is still selected, so its startup
// taint waits for it (until the timeout) rather than going at once.
func (s selection) selects(n *nodeRecord) bool {
	ready := *n // shallow: only the fields below differ
	ready.Unschedulable, ready.Ready = false, true
	ready.Taints = slices.DeleteFunc(slices.Clone(n.Taints), func(t corev1.Taint) bool { return bootstrapTaint(t.Key) })
	return s.eligible(&ready)
}

// bootstrapTaint: a taint that a node loses by itself as it comes up.
func bootstrapTaint(key string) bool {
	return strings.HasPrefix(key, "node.kubernetes.io/") || strings.HasPrefix(key, "karpenter.sh/") ||
		key == "node.cloudprovider.kubernetes.io/uninitialized"
}

// gateReady: every spec in the informer has had a reconcile, so a label whose spec the
// gate does not know is really stale (at start, every spec is unknown for a moment).
// A spec whose reconcile keeps failing must not hold every node's taint: past
// gateStartGrace the gate decides with what it knows.
func (c *Controller) gateReady() bool {
	if time.Since(c.gate.started) > gateStartGrace {
		return true
	}
	for _, obj := range c.specInformer.GetStore().List() {
		if !c.gate.knows(obj.(*corev1.ConfigMap).Name) {
			return false
		}
	}
	return true
}

// gateRun hands a spec's run to the gate after its reconcile.
func (c *Controller) gateRun(name string, rs *runState) {
	if c.gate.setRun(name, rs) {
		c.enqueueAllNodes()
	}
}

func (c *Controller) enqueueAllNodes() {
	for _, obj := range c.nodeInformer.GetStore().List() {
		c.enqueueNode(obj)
	}
}

// enqueueNode queues a node (a record from the informer) unless the gate is idle on it.
func (c *Controller) enqueueNode(obj any) {
	if n, ok := obj.(*nodeRecord); ok && !c.gate.idle(n) {
		c.gateQueue.Add(n.Name)
	}
}

// syncNode patches one node's taints and labels to the plan.
func (c *Controller) syncNode(ctx context.Context, name string) error {
	obj, exists, err := c.nodeInformer.GetStore().GetByKey(name)
	if err != nil || !exists {
		return err
	}
	n := obj.(*nodeRecord)
	if c.gate.idle(n) { // since it was queued: its plan is empty, and no retry is due
		return nil
	}
	if !c.gateReady() {
		c.gateQueue.AddAfter(name, time.Second)
		return nil
	}
	p := c.gate.plan(n, time.Now())
	if p.recheck > 0 {
		c.gateQueue.AddAfter(name, p.recheck)
	}
	patch, changed := nodePatch(n, p)
	if !changed {
		return nil
	}
	_, err = c.client.CoreV1().Nodes().Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "image-prewarm"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		logging.FromContext(ctx).V(1).Info("node patch failed; deciding again", logging.KeyNode, name, "error", err.Error())
		return wrapf(err, "patch node %s", name)
	}
	c.announceUntaint(ctx, name, p)
	return nil
}

func (c *Controller) announceUntaint(ctx context.Context, node string, p nodePlan) {
	for key, r := range p.untaint {
		metrics.TaintsRemoved.WithLabelValues(r.reason).Inc()
		logging.FromContext(ctx).Info("startup taint removed", logging.KeyNode, node, "taint", key, "reason", r.why)
		if r.reason == "prewarmed" {
			continue // the expected end: counted and logged; an Event per node would be noise
		}
		if obj, ok, _ := c.specInformer.GetStore().GetByKey(c.opts.Namespace + "/" + r.spec); ok {
			c.recorder.Eventf(obj.(*corev1.ConfigMap), corev1.EventTypeWarning, "StartupTaintRemoved", "node %s: taint %s removed without the images: %s", node, key, r.why)
		}
	}
}

// jsonPatchOp is one RFC 6902 operation.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// nodePatch turns the plan into a JSON patch; false when the node already matches it.
func nodePatch(n *nodeRecord, p nodePlan) ([]byte, bool) {
	var ops []jsonPatchOp
	if len(p.untaint) > 0 {
		kept := slices.DeleteFunc(slices.Clone(n.Taints), func(t corev1.Taint) bool { _, gone := p.untaint[t.Key]; return gone })
		ops = append(ops, jsonPatchOp{Op: "test", Path: "/spec/taints", Value: n.Taints},
			jsonPatchOp{Op: "replace", Path: "/spec/taints", Value: nonNil(kept)})
	}
	keys := make([]string, 0, len(p.labels))
	for key := range p.labels {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		value, has := n.NodeLabels.Lookup(key)
		switch want := p.labels[key]; {
		case want && value != jobs.NodeLabelReady && len(n.NodeLabels) == 0:
			ops = append(ops, jsonPatchOp{Op: "add", Path: "/metadata/labels", Value: map[string]string{key: jobs.NodeLabelReady}})
		case want && value != jobs.NodeLabelReady:
			ops = append(ops, jsonPatchOp{Op: "add", Path: "/metadata/labels/" + escapePointer(key), Value: jobs.NodeLabelReady})
		case !want && has:
			ops = append(ops, jsonPatchOp{Op: "remove", Path: "/metadata/labels/" + escapePointer(key)})
		}
	}
	if len(ops) == 0 {
		return nil, false
	}
	b, _ := json.Marshal(ops) // plain values: cannot fail
	return b, true
}

func nonNil(t []corev1.Taint) []corev1.Taint {
	if t == nil {
		return []corev1.Taint{}
	}
	return t
}

// escapePointer escapes a label key for a JSON pointer (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
