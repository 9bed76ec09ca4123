// Package rollout decides which nodes get a prewarm Job next.
//
// Decide is a pure function of the nodes' states, so the controller only
// observes and applies, and the window logic is tested and simulated without
// a cluster. The window is work-conserving: a slot is refilled as soon as a
// node reports, with no barrier between batches, which is what keeps a run
// close to total work / window even when pull times vary widely.
package rollout

// Phase is where one node stands in one run.
type Phase string

const (
	Pending   Phase = "Pending"
	Running   Phase = "Running"
	Succeeded Phase = "Succeeded"
	Failed    Phase = "Failed"
	Skipped   Phase = "Skipped"
	Gone      Phase = "Gone"
	// Paused: the node waits for pulls the run holds back (rejected credentials, an
	// image not found); it is neither started nor reported until they resume.
	Paused Phase = "Paused"
)

// Reported reports whether the node's outcome is final for this run, so the
// run can finish (and reap its Secret) once every node has reported.
func (p Phase) Reported() bool {
	switch p {
	case Succeeded, Failed, Skipped, Gone:
		return true
	}
	return false
}

// Node is one eligible node of a run as the controller observed it.
type Node struct {
	Name  string
	Phase Phase
	// JobActive is true when the node's Job exists and has not finished. It
	// is separate from Phase because informers lag: a Job just created still
	// has a Pending node, and it must hold a slot rather than be created twice.
	JobActive bool
}

// active reports whether the node holds a slot of the window. Gone nodes
// never do: their Job is cancelled in the same decision.
func (n *Node) active() bool {
	return n.Phase != Gone && (n.Phase == Running || n.JobActive)
}

func (n *Node) startable() bool {
	return n.Phase == Pending && !n.JobActive
}

func (n *Node) mustCancel() bool {
	return n.Phase == Gone && n.JobActive
}

// Input is everything Decide needs about one run at one instant.
type Input struct {
	Nodes []Node
	// Window is maxConcurrentNodes resolved to an int ≥ 1 (percentages are
	// resolved by the caller, which knows the node count).
	Window int
	// Registries lists every registry this run's Jobs pull from: one Job
	// pulls every image, so it occupies a slot of each of them.
	Registries []string
	// Caps maps a registry to its maximum concurrent Jobs; absent or 0 means
	// no cap.
	Caps map[string]int
	// InUseElsewhere maps a registry to the Jobs other runs have active now,
	// because caps are shared by all runs and specs.
	InUseElsewhere map[string]int
}

// Decision is what the controller should apply now.
type Decision struct {
	// Start lists nodes to create Jobs for, in input order so that repeated
	// reconciles of the same state agree.
	Start []string
	// Cancel lists nodes whose Job must be deleted: Gone nodes with an
	// active Job.
	Cancel []string
	// Limit says why not every pending node was started: a
	// *WindowFullError, a *RegistryCapError, or nil.
	Limit error
}

// Decide picks the Jobs to start and cancel. It is O(len(Nodes)+len(Registries))
// and allocates at most the two result slices and one error, because it runs
// on every reconcile of runs with thousands of nodes.
func Decide(in Input) Decision {
	var active, startable, cancels int
	for i := range in.Nodes {
		n := &in.Nodes[i]
		switch {
		case n.mustCancel():
			cancels++
		case n.active():
			active++
		case n.startable():
			startable++
		}
	}

	var d Decision
	b := tightest(in, active)
	count := min(startable, b.room)
	if count < startable {
		d.Limit = b.err(active, count)
	}
	if count > 0 {
		d.Start = make([]string, 0, count)
	}
	if cancels > 0 {
		d.Cancel = make([]string, 0, cancels)
	}
	for i := range in.Nodes {
		n := &in.Nodes[i]
		switch {
		case n.mustCancel():
			d.Cancel = append(d.Cancel, n.Name)
		case len(d.Start) < count && n.startable():
			d.Start = append(d.Start, n.Name)
		}
	}
	return d
}

// budget is how many Jobs the run may still start and which limit sets it.
type budget struct {
	room   int
	window int
	// registry is empty when the window is the tightest limit.
	registry string
	cap      int
	inUse    int
}

// tightest returns the smallest of the window's and the capped registries'
// room. On a tie the window wins, because it is the run's own setting and
// the error then points at the knob the spec's author controls.
func tightest(in Input, active int) budget {
	// A window below 1 would stall the run forever; the caller should never
	// pass one, but progress beats a silent stall.
	window := max(in.Window, 1)
	b := budget{room: max(window-active, 0), window: window}
	for _, reg := range in.Registries {
		limit := in.Caps[reg]
		if limit <= 0 {
			continue
		}
		inUse := in.InUseElsewhere[reg] + active
		if room := max(limit-inUse, 0); room < b.room {
			b = budget{room: room, window: window, registry: reg, cap: limit, inUse: inUse}
		}
	}
	return b
}

// err describes the limit once started more Jobs are running.
func (b budget) err(active, started int) error {
	if b.registry == "" {
		return &WindowFullError{Window: b.window, Active: active + started}
	}
	return &RegistryCapError{Registry: b.registry, Cap: b.cap, InUse: b.inUse + started}
}

// Counts is the number of nodes in each phase, for status and metrics.
type Counts map[Phase]int

// Count tallies nodes by phase. The controller keeps its run's tally as nodes change
// (its view) rather than count every node on every reconcile.
func Count(nodes []Node) Counts {
	c := Counts{}
	for i := range nodes {
		c[nodes[i].Phase]++
	}
	return c
}

// Reported is how many nodes have a final outcome for this run.
func (c Counts) Reported() int {
	return c[Succeeded] + c[Failed] + c[Skipped] + c[Gone]
}

// Done reports whether every one of total nodes has reported. A run with no
// eligible nodes is done at once, so its Secret is reaped right away.
func (c Counts) Done(total int) bool {
	return c.Reported() >= total
}
