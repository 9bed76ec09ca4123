package controller

import (
	"maps"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
)

// A run's view is its last observation of every node, kept between reconciles, so a
// reconcile observes only the nodes that changed: the informer handlers mark a node
// when it, its Job or its pod changes, and a reconcile recomputes those and decides on
// the whole view. At 20 000 nodes a Job finishing costs the work of one node, not of
// 20 000 (issue 14). Everything the marks could miss is caught by a full observation:
// the first of a run, after a spec edit, after the run's holds changed, and every
// fullObserveInterval as a safety net. Timers (a Job create not yet shown, a rewarm's
// back-off) mark their node when due (viewState.due).
const fullObserveInterval = 10 * time.Second

// viewState is a run's view: nodes sorted by name, their index, and what to redo.
type viewState struct {
	nodes    []rollout.Node
	index    map[string]int
	lastFull time.Time
	specRV   string               // the spec ConfigMap's resourceVersion at the last full observation
	due      map[string]time.Time // nodes to observe again at a time
	stale    bool                 // observe every node next time
	// tally counts nodes by phase, kept with every change: counting the view afresh,
	// several times a reconcile, was the controller's largest cost at 20 000 nodes.
	tally rollout.Counts
}

// counts is the view's nodes by phase (a copy).
func (v *viewState) counts() rollout.Counts { return maps.Clone(v.tally) }

// total is how many nodes the run shows.
func (v *viewState) total() int { return len(v.index) }

func (v *viewState) count(p rollout.Phase, delta int) {
	if v.tally == nil {
		v.tally = rollout.Counts{}
	}
	if v.tally[p] += delta; v.tally[p] == 0 {
		delete(v.tally, p) // as rollout.Count: a phase no node is in has no entry
	}
}

// markNode marks a node for the given specs' next reconcile.
func (c *Controller) markNode(node string, specs ...string) {
	if node == "" {
		return
	}
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	for _, spec := range specs {
		if c.dirty[spec] == nil {
			c.dirty[spec] = map[string]bool{}
		}
		c.dirty[spec][node] = true
	}
}

// markNodeObject marks a node (event object, perhaps a tombstone) for every spec.
func (c *Controller) markNodeObject(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	n, ok := obj.(*nodeRecord)
	if !ok {
		return
	}
	c.markNode(n.Name, c.specNames()...)
}

func (c *Controller) specNames() []string {
	keys := c.specInformer.GetStore().ListKeys()
	names := make([]string, 0, len(keys))
	for _, key := range keys {
		_, name, _ := cache.SplitMetaNamespaceKey(key)
		names = append(names, name)
	}
	return names
}

// nodeOfOwned is the node a Job or one of its pods pulls onto.
func (c *Controller) nodeOfOwned(obj any) string {
	switch o := obj.(type) {
	case *batchv1.Job:
		return jobs.NodeOf(o)
	case *corev1.Pod:
		job, ok, _ := c.jobInformer.GetStore().GetByKey(o.Namespace + "/" + o.Labels[podJobLabel])
		if ok {
			return jobs.NodeOf(job.(*batchv1.Job))
		}
	}
	return ""
}

func (c *Controller) takeDirty(spec string) map[string]bool {
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	marked := c.dirty[spec]
	delete(c.dirty, spec)
	return marked
}

// toObserve returns the nodes a reconcile observes, whether that is all of them, and
// the run's Jobs of those nodes, by node. The marks are taken before the Jobs are
// read: a Job that changes in between is marked again, never observed in a state
// older than its mark.
func (c *Controller) toObserve(cm *corev1.ConfigMap, rs *runState) (map[string]bool, bool, map[string]*batchv1.Job) {
	v := &rs.view
	marked := c.takeDirty(cm.Name)
	if v.index == nil || v.stale || v.specRV != cm.ResourceVersion || time.Since(v.lastFull) >= fullObserveInterval {
		v.stale, v.specRV, v.lastFull = false, cm.ResourceVersion, time.Now()
		jobsByNode := c.runJobs(cm.Name, rs.runID)
		return c.everyNode(rs, jobsByNode), true, jobsByNode
	}
	if marked == nil {
		marked = map[string]bool{}
	}
	now := time.Now()
	for node, at := range v.due {
		if !now.Before(at) {
			marked[node] = true
			delete(v.due, node)
		}
	}
	return marked, false, c.nodesJobs(cm.Name, rs.runID, marked)
}

// everyNode is every node the run may show: the cluster's, its Jobs' and its results'.
func (c *Controller) everyNode(rs *runState, jobsByNode map[string]*batchv1.Job) map[string]bool {
	names := map[string]bool{}
	for _, key := range c.nodeInformer.GetStore().ListKeys() {
		names[key] = true
	}
	for name := range jobsByNode {
		names[name] = true
	}
	for name := range rs.status.Results {
		names[name] = true
	}
	return names
}

// observeAgainAt marks a node to be observed again at a time (a timer inside observe).
func (rs *runState) observeAgainAt(node string, at time.Time) {
	if rs.view.due == nil {
		rs.view.due = map[string]time.Time{}
	}
	if cur, ok := rs.view.due[node]; !ok || at.Before(cur) {
		rs.view.due[node] = at
	}
}

// update puts a node's observation into the view (ok false: the run does not show it).
// Membership changes rebuild the sorted order; a phase change is a write in place.
func (v *viewState) update(n rollout.Node, ok bool) (rebuild bool) {
	i, present := v.index[n.Name]
	switch {
	case ok && present:
		v.count(v.nodes[i].Phase, -1)
		v.count(n.Phase, 1)
		v.nodes[i] = n
		return false
	case ok:
		v.index[n.Name] = -1
		v.nodes = append(v.nodes, n)
		v.count(n.Phase, 1)
		return true
	case present:
		delete(v.index, n.Name)
		v.count(v.nodes[i].Phase, -1)
		v.nodes[i].Name = "" // dropped by the rebuild
		return true
	}
	return false
}

// reset empties the view before a full observation. The index is cleared, not
// replaced: a full observation comes every fullObserveInterval, and a new map would
// grow again to every node through each of its sizes.
func (v *viewState) reset() {
	v.nodes = v.nodes[:0]
	if v.index == nil {
		v.index = map[string]int{}
	}
	clear(v.index)
	clear(v.tally)
}

// sortView sorts the nodes by name and rebuilds the index.
func (v *viewState) sortView() {
	kept := v.nodes[:0]
	for _, n := range v.nodes {
		if n.Name != "" {
			kept = append(kept, n)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Name < kept[j].Name })
	v.nodes = kept
	for i, n := range kept {
		v.index[n.Name] = i
	}
}

// started marks nodes whose Jobs were just created as running in the view.
func (v *viewState) started(names []string) {
	for _, name := range names {
		if i, ok := v.index[name]; ok {
			v.count(v.nodes[i].Phase, -1)
			v.count(rollout.Running, 1)
			v.nodes[i].Phase, v.nodes[i].JobActive = rollout.Running, true
		}
	}
}
