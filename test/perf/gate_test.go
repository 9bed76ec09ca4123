package perf

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

const startupTaint = "image-prewarm.io/prewarming"

// TestStartupTaintRemoval: 1000 kwok nodes join with the startup taint. For each node,
// Ready → taint removed, and its Job succeeded → taint removed (the prewarm delay
// subtracted), as an informer sees them; and what the gate costs in API writes.
func TestStartupTaintRemoval(t *testing.T) {
	kube := needCluster(t)
	const n, label = 1000, "gate"
	r := startRunner(t, kube, label)
	seen := watchGate(t, kube.Client, label)
	spec := fmt.Sprintf("registries: [{server: harbor.example.com}]\nimages: [harbor.example.com/ml/model:gate]\nnodeSelector: {perf: %s}\nrollout: {maxConcurrentNodes: 50, startupTaint: %s, nodeLabel: true}\n", label, startupTaint)
	if err := prewarmtest.ApplySpec(t.Context(), kube.Client, label, "spec", spec); err != nil {
		t.Fatal(err)
	}
	before := r.counter.writes.Load()
	createNodes(t, kube, label, n, label, corev1.Taint{Key: startupTaint, Effect: corev1.TaintEffectNoSchedule})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	for ctx.Err() == nil && seen.untaintedCount() < n {
		time.Sleep(200 * time.Millisecond)
	}
	fromReady, fromJob := seen.latencies()
	if len(fromJob) < n {
		t.Fatalf("%d of %d nodes untainted with a Job success seen", len(fromJob), n)
	}
	writes := float64(r.counter.writes.Load()-before) / n
	patches := float64(r.counter.nodePatches.Load()) / n
	note := "kwok nodes, window 50, pulls 2–4 s; times as one informer sees them"
	results.Add(Figure{Name: "node Ready with the startup taint → taint removed, p50, 1000 kwok nodes", Unit: "ms", Values: []float64{percentile(fromReady, 0.5)}, Note: note + "; includes waiting for a place in the window"})
	results.Add(Figure{Name: "node Ready with the startup taint → taint removed, p99, 1000 kwok nodes", Unit: "ms", Values: []float64{percentile(fromReady, 0.99)}, Note: "same run"})
	results.Add(Figure{Name: "prewarm Job succeeded → startup taint removed, p50, 1000 kwok nodes", Unit: "ms", Values: []float64{percentile(fromJob, 0.5)}, Note: "the prewarm delay subtracted; same run"})
	results.Add(Figure{Name: "prewarm Job succeeded → startup taint removed, p99, 1000 kwok nodes", Unit: "ms", Values: []float64{percentile(fromJob, 0.99)}, Note: "same run"})
	results.Add(Figure{Name: "node patches per node (taint and label in one), 1000 kwok nodes", Goal: "1", Unit: "patches", Values: []float64{patches}, Note: "the gate's extra writes"})
	results.Add(Figure{Name: "API writes per node with the startup taint and label, 1000 kwok nodes", Goal: "≤ 3", Unit: "writes", Values: []float64{writes}, Note: "every write of the controller's client during the run ÷ nodes"})
	t.Logf("Ready → untainted p50 %.0f ms p99 %.0f ms; Job → untainted p50 %.0f ms p99 %.0f ms; %.2f writes, %.2f node patches per node",
		percentile(fromReady, 0.5), percentile(fromReady, 0.99), percentile(fromJob, 0.5), percentile(fromJob, 0.99), writes, patches)
}

// gateTimes records per node when it was first seen Ready with the taint, without the
// taint, and its Job first seen succeeded.
type gateTimes struct {
	mu                        sync.Mutex
	ready, untainted, jobDone map[string]time.Time
}

func watchGate(t *testing.T, client kubernetes.Interface, label string) *gateTimes {
	g := &gateTimes{ready: map[string]time.Time{}, untainted: map[string]time.Time{}, jobDone: map[string]time.Time{}}
	nodes := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "perf=" + label }))
	owned := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(label))
	_, _ = nodes.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: g.node, UpdateFunc: func(_, cur any) { g.node(cur) }})
	_, _ = owned.Batch().V1().Jobs().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: g.job, UpdateFunc: func(_, cur any) { g.job(cur) }})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, f := range []informers.SharedInformerFactory{nodes, owned} {
		f.Start(ctx.Done())
		f.WaitForCacheSync(ctx.Done())
	}
	return g
}

func (g *gateTimes) node(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	now := time.Now()
	tainted := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == startupTaint })
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, seen := g.ready[n.Name]; !seen && tainted && nodeReady(n) {
		g.ready[n.Name] = now
	}
	if _, seen := g.untainted[n.Name]; !seen && !tainted {
		g.untainted[n.Name] = now
	}
}

func nodeReady(n *corev1.Node) bool {
	return slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
		return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	})
}

func (g *gateTimes) job(obj any) {
	job, ok := obj.(*batchv1.Job)
	if !ok || job.Status.Succeeded == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, seen := g.jobDone[jobs.NodeOf(job)]; !seen {
		g.jobDone[jobs.NodeOf(job)] = time.Now()
	}
}

func (g *gateTimes) untaintedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.untainted)
}

// latencies returns, in ms, Ready → untainted and Job succeeded → untainted per node.
func (g *gateTimes) latencies() (fromReady, fromJob []float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for node, at := range g.untainted {
		if ready, ok := g.ready[node]; ok {
			fromReady = append(fromReady, float64(at.Sub(ready).Microseconds())/1000)
		}
		if done, ok := g.jobDone[node]; ok {
			fromJob = append(fromJob, float64(at.Sub(done).Microseconds())/1000)
		}
	}
	return fromReady, fromJob
}
