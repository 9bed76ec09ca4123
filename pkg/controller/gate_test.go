package controller

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

const startupTaint = "image-prewarm.io/prewarming"

func taintedBy(keys ...string) nodeOpt {
	return func(n *corev1.Node) {
		for _, k := range keys {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: k, Effect: corev1.TaintEffectNoSchedule})
		}
	}
}

// bookWith is a gate that knows the specs by name, with their nodes' results.
func bookWith(t *testing.T, specs map[string]string, results map[string]map[string]rollout.Phase) *gateBook {
	t.Helper()
	b := newGateBook()
	for name, text := range specs {
		rs := &runState{runID: "r-" + name, spec: mustSpec(t, text), status: &status.Status{Results: map[string]status.Result{}}}
		for node, phase := range results[name] {
			rs.status.Results[node] = status.Result{Phase: string(phase)}
		}
		b.setRun(name, rs)
	}
	return b
}

const (
	gpuSpec  = "images: [nginx:1.27]\nnodeSelector: {pool: gpu}\nrollout: {startupTaint: " + startupTaint + ", nodeLabel: true}\n"
	gpuSpec2 = "images: [redis:7]\nnodeSelector: {pool: gpu}\nrollout: {startupTaint: " + startupTaint + "}\n"
)

func gpuNode(opts ...nodeOpt) *corev1.Node {
	now := func(n *corev1.Node) { n.CreationTimestamp = metav1.Now() }
	n := node("n1", append([]nodeOpt{now, ready, taintedBy(startupTaint, "other.io/keep")}, opts...)...)
	n.Labels["pool"] = "gpu"
	return n
}

// Two specs share the taint: it stays until both are done, then goes; the label
// follows its own spec; another taint is never touched.
func TestGateWaitsForEverySpecThatNamesTheTaint(t *testing.T) {
	specs := map[string]string{"a": gpuSpec, "b": gpuSpec2}
	b := bookWith(t, specs, map[string]map[string]rollout.Phase{"a": {"n1": rollout.Succeeded}})
	p := b.plan(newNodeRecord(gpuNode()), time.Now())
	if len(p.untaint) != 0 || !p.labels[jobs.NodeLabelKey("a")] || p.recheck <= 0 {
		t.Fatalf("one spec of two done: plan %+v, want the taint kept, a's label and a deadline", p)
	}
	b.record("b", "n1", rollout.Skipped)
	p = b.plan(newNodeRecord(gpuNode()), time.Now())
	if p.untaint[startupTaint].reason != "prewarmed" || len(p.untaint) != 1 {
		t.Fatalf("both done: plan %+v, want the startup taint removed as prewarmed", p)
	}
	patch, _ := nodePatch(newNodeRecord(gpuNode()), p)
	var ops []jsonPatchOp
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	if ops[0].Op != "test" || ops[1].Op != "replace" || len(ops[1].Value.([]any)) != 1 {
		t.Fatalf("patch %s: want a test of the taints, then the other taint alone", patch)
	}
	if ops[2].Path != "/metadata/labels/prewarm.image-prewarm.io~1a" {
		t.Fatalf("label path %q", ops[2].Path)
	}
}

func TestGateNeverKeepsATaintForever(t *testing.T) {
	old := func(n *corev1.Node) { n.CreationTimestamp = metav1.NewTime(time.Now().Add(-31 * time.Minute)) }
	tests := map[string]struct {
		spec   string
		phase  rollout.Phase
		node   *corev1.Node
		reason string
	}{
		"failed":                {spec: gpuSpec, phase: rollout.Failed, node: gpuNode(), reason: "failed"},
		"failed, kept, in time": {spec: "images: [nginx:1.27]\nnodeSelector: {pool: gpu}\nrollout: {startupTaint: " + startupTaint + ", keepTaintOnFailure: true}\n", phase: rollout.Failed, node: gpuNode(), reason: ""},
		"past the timeout":      {spec: gpuSpec, phase: "", node: gpuNode(old), reason: "timeout"},
		"selected by no spec":   {spec: "images: [nginx:1.27]\nnodeSelector: {pool: cpu}\nrollout: {startupTaint: " + startupTaint + "}\n", node: gpuNode(), reason: "unselected"},
		"not Ready yet: waits":  {spec: gpuSpec, node: gpuNode(func(n *corev1.Node) { n.Status.Conditions = nil }), reason: ""},
		"not Ready, its taints untolerated: waits": {
			spec: "images: [nginx:1.27]\nnodeSelector: {pool: gpu}\ntolerations: []\nrollout: {startupTaint: " + startupTaint + "}\n",
			node: gpuNode(func(n *corev1.Node) {
				n.Status.Conditions = nil
				n.Spec.Taints = []corev1.Taint{{Key: startupTaint, Effect: corev1.TaintEffectNoSchedule}, {Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule}}
			}), reason: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := tc.spec
			results := map[string]map[string]rollout.Phase{"a": {}}
			if tc.phase != "" {
				results["a"]["n1"] = tc.phase
			}
			p := bookWith(t, map[string]string{"a": spec}, results).plan(newNodeRecord(tc.node), time.Now())
			if got := p.untaint[startupTaint].reason; got != tc.reason {
				t.Fatalf("reason %q, want %q (plan %+v)", got, tc.reason, p)
			}
		})
	}
}

// Labels under our prefix that no spec wants go; a node already right needs no patch.
func TestGateLabelsFollowTheSpecs(t *testing.T) {
	n := gpuNode(func(n *corev1.Node) { n.Spec.Taints = nil })
	n.Labels[jobs.NodeLabelKey("gone")] = "ready"
	b := bookWith(t, map[string]string{"a": gpuSpec}, map[string]map[string]rollout.Phase{"a": {"n1": rollout.Succeeded}})
	p := b.plan(newNodeRecord(n), time.Now())
	if p.labels[jobs.NodeLabelKey("gone")] || !p.labels[jobs.NodeLabelKey("a")] {
		t.Fatalf("labels %v", p.labels)
	}
	n.Labels[jobs.NodeLabelKey("a")] = "ready"
	delete(n.Labels, jobs.NodeLabelKey("gone"))
	if patch, changed := nodePatch(newNodeRecord(n), b.plan(newNodeRecord(n), time.Now())); changed {
		t.Fatalf("node already right, yet patch %s", patch)
	}
	b.record("a", "n1", rollout.Pending) // keep warm: it lost an image
	if p := b.plan(newNodeRecord(n), time.Now()); p.labels[jobs.NodeLabelKey("a")] {
		t.Fatal("a node that lost the images keeps its label")
	}
}

// The gate skips a node only while its plan must be empty: no spec gates, and the node
// carries none of the gate's labels.
func TestGateIdle(t *testing.T) {
	plain := newNodeRecord(node("n1", ready))
	stale := node("n2", ready)
	stale.Labels[jobs.NodeLabelKey("gone")] = jobs.NodeLabelReady
	ungated := bookWith(t, map[string]string{"a": "images: [nginx:1.27]\n"}, nil)
	if !ungated.idle(plain) || ungated.idle(newNodeRecord(stale)) {
		t.Fatal("no spec gates: a plain node is idle, one with a stale gate label is not")
	}
	if p := ungated.plan(plain, time.Now()); len(p.labels)+len(p.untaint) != 0 || p.recheck != 0 {
		t.Fatalf("idle node, yet plan %+v", p)
	}
	if bookWith(t, map[string]string{"a": gpuSpec2}, nil).idle(plain) {
		t.Fatal("a spec with a startup taint: no node is idle")
	}
}
