package rollout

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func node(name string, phase Phase) Node { return Node{Name: name, Phase: phase} }

// withJob marks the node's Job as existing and unfinished.
func withJob(n Node) Node {
	n.JobActive = true
	return n
}

func TestDecide(t *testing.T) {
	tests := map[string]struct {
		in         Input
		wantStart  []string
		wantCancel []string
		wantLimit  error
	}{
		"empty": {
			in: Input{Window: 3},
		},
		"window empty starts the first pending nodes in input order": {
			in: Input{Window: 2, Nodes: []Node{
				node("a", Pending), node("b", Pending), node("c", Pending),
			}},
			wantStart: []string{"a", "b"},
			wantLimit: &WindowFullError{Window: 2, Active: 2},
		},
		"window full": {
			in: Input{Window: 2, Nodes: []Node{
				node("a", Running), withJob(node("b", Running)), node("c", Pending),
			}},
			wantLimit: &WindowFullError{Window: 2, Active: 2},
		},
		"window partially full": {
			in: Input{Window: 3, Nodes: []Node{
				node("a", Succeeded), withJob(node("b", Running)), node("c", Pending),
				node("d", Pending), node("e", Pending),
			}},
			wantStart: []string{"c", "d"},
			wantLimit: &WindowFullError{Window: 3, Active: 3},
		},
		"room for every pending node": {
			in: Input{Window: 5, Nodes: []Node{
				node("a", Failed), node("b", Pending), node("c", Skipped), node("d", Pending),
			}},
			wantStart: []string{"b", "d"},
		},
		"pending node whose Job exists holds a slot and is not started twice": {
			in: Input{Window: 2, Nodes: []Node{
				withJob(node("a", Pending)), node("b", Pending), node("c", Pending),
			}},
			wantStart: []string{"b"},
			wantLimit: &WindowFullError{Window: 2, Active: 2},
		},
		"registry cap reached with jobs of other runs": {
			in: Input{
				Window:         10,
				Nodes:          []Node{node("a", Running), node("b", Pending), node("c", Pending)},
				Registries:     []string{"harbor"},
				Caps:           map[string]int{"harbor": 4},
				InUseElsewhere: map[string]int{"harbor": 2},
			},
			wantStart: []string{"b"},
			wantLimit: &RegistryCapError{Registry: "harbor", Cap: 4, InUse: 4},
		},
		"registry cap already exceeded starts nothing": {
			in: Input{
				Window:         10,
				Nodes:          []Node{node("a", Pending)},
				Registries:     []string{"harbor"},
				Caps:           map[string]int{"harbor": 2},
				InUseElsewhere: map[string]int{"harbor": 5},
			},
			wantLimit: &RegistryCapError{Registry: "harbor", Cap: 2, InUse: 5},
		},
		"the tightest of several registries wins": {
			in: Input{
				Window:         10,
				Nodes:          []Node{node("a", Pending), node("b", Pending), node("c", Pending), node("d", Pending)},
				Registries:     []string{"docker.io", "harbor", "quay.io", "ghcr.io"},
				Caps:           map[string]int{"harbor": 5, "quay.io": 3, "ghcr.io": 0},
				InUseElsewhere: map[string]int{"harbor": 1, "quay.io": 1, "docker.io": 100},
			},
			wantStart: []string{"a", "b"},
			wantLimit: &RegistryCapError{Registry: "quay.io", Cap: 3, InUse: 3},
		},
		"caps of registries the run does not pull from are ignored": {
			in: Input{
				Window:         2,
				Nodes:          []Node{node("a", Pending)},
				Registries:     []string{"harbor"},
				Caps:           map[string]int{"quay.io": 1},
				InUseElsewhere: map[string]int{"quay.io": 1},
			},
			wantStart: []string{"a"},
		},
		"window and cap tied report the window": {
			in: Input{
				Window:     2,
				Nodes:      []Node{node("a", Pending), node("b", Pending), node("c", Pending)},
				Registries: []string{"harbor"},
				Caps:       map[string]int{"harbor": 2},
			},
			wantStart: []string{"a", "b"},
			wantLimit: &WindowFullError{Window: 2, Active: 2},
		},
		"gone node with an active job is cancelled and frees its slot": {
			in: Input{Window: 1, Nodes: []Node{
				withJob(node("a", Gone)), node("b", Gone), node("c", Pending),
			}},
			wantStart:  []string{"c"},
			wantCancel: []string{"a"},
		},
		"all reported: nothing to do": {
			in: Input{Window: 2, Nodes: []Node{
				node("a", Succeeded), node("b", Failed), node("c", Skipped), node("d", Gone),
			}},
		},
		"window below 1 still makes progress": {
			in:        Input{Window: 0, Nodes: []Node{node("a", Pending), node("b", Pending)}},
			wantStart: []string{"a"},
			wantLimit: &WindowFullError{Window: 1, Active: 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Decide(tc.in)
			if !slices.Equal(got.Start, tc.wantStart) {
				t.Errorf("Start = %q, want %q", got.Start, tc.wantStart)
			}
			if !slices.Equal(got.Cancel, tc.wantCancel) {
				t.Errorf("Cancel = %q, want %q", got.Cancel, tc.wantCancel)
			}
			if !reflect.DeepEqual(got.Limit, tc.wantLimit) {
				t.Errorf("Limit = %v, want %v", got.Limit, tc.wantLimit)
			}
		})
	}
}

// TestLimitErrorsAs checks that callers can tell the two budgets apart even
// when the error has been wrapped on its way up.
func TestLimitErrorsAs(t *testing.T) {
	tests := map[string]struct {
		err          error
		wantWindow   bool
		wantRegistry bool
	}{
		"window":   {err: &WindowFullError{Window: 2, Active: 2}, wantWindow: true},
		"registry": {err: &RegistryCapError{Registry: "harbor", Cap: 1, InUse: 1}, wantRegistry: true},
		"wrapped":  {err: fmt.Errorf("sync: %w", &RegistryCapError{Registry: "harbor"}), wantRegistry: true},
		"other":    {err: errors.New("boom")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var w *WindowFullError
			var r *RegistryCapError
			if got := errors.As(tc.err, &w); got != tc.wantWindow {
				t.Errorf("errors.As(WindowFullError) = %v, want %v", got, tc.wantWindow)
			}
			if got := errors.As(tc.err, &r); got != tc.wantRegistry {
				t.Errorf("errors.As(RegistryCapError) = %v, want %v", got, tc.wantRegistry)
			}
		})
	}
}

// TestDecideProperties checks invariants over random inputs: Decide never
// exceeds the window or a cap, starts only startable nodes, and is
// work-conserving (it stops only at a limit it names).
func TestDecideProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	phases := []Phase{Pending, Running, Succeeded, Failed, Skipped, Gone}
	registries := []string{"a", "b", "c"}
	for iter := range 5000 {
		in := Input{Window: 1 + rng.IntN(8), Caps: map[string]int{}, InUseElsewhere: map[string]int{}}
		for i := range rng.IntN(30) {
			in.Nodes = append(in.Nodes, Node{
				Name:      fmt.Sprintf("n%d", i),
				Phase:     phases[rng.IntN(len(phases))],
				JobActive: rng.IntN(3) == 0,
			})
		}
		for _, reg := range registries {
			if rng.IntN(2) == 0 {
				in.Registries = append(in.Registries, reg)
			}
			in.Caps[reg] = rng.IntN(8)
			in.InUseElsewhere[reg] = rng.IntN(6)
		}
		if err := checkDecision(in, Decide(in)); err != nil {
			t.Fatalf("iteration %d: %v\ninput: %+v", iter, err, in)
		}
	}
}

// checkDecision verifies d against in without re-deriving Decide's algorithm.
func checkDecision(in Input, d Decision) error {
	byName := map[string]Node{}
	active, startable := 0, 0
	for _, n := range in.Nodes {
		byName[n.Name] = n
		if n.Phase != Gone && (n.Phase == Running || n.JobActive) {
			active++
		}
		if n.Phase == Pending && !n.JobActive {
			startable++
		}
	}
	if free := max(in.Window-active, 0); len(d.Start) > free {
		return fmt.Errorf("started %d with %d free slots", len(d.Start), free)
	}
	for _, reg := range in.Registries {
		if c := in.Caps[reg]; c > 0 && len(d.Start) > max(c-in.InUseElsewhere[reg]-active, 0) {
			return fmt.Errorf("started %d beyond cap %d of %s", len(d.Start), c, reg)
		}
	}
	if err := checkOrder(in, d.Start, func(n Node) bool { return n.Phase == Pending && !n.JobActive }); err != nil {
		return fmt.Errorf("Start: %w", err)
	}
	if err := checkOrder(in, d.Cancel, func(n Node) bool { return n.Phase == Gone && n.JobActive }); err != nil {
		return fmt.Errorf("Cancel: %w", err)
	}
	return checkLimit(in, d, active, startable)
}

// checkOrder verifies names are distinct nodes matching want, in input order.
func checkOrder(in Input, names []string, want func(Node) bool) error {
	next := 0
	for _, name := range names {
		for next < len(in.Nodes) && in.Nodes[next].Name != name {
			next++
		}
		if next == len(in.Nodes) {
			return fmt.Errorf("%s unknown, repeated or out of order", name)
		}
		if !want(in.Nodes[next]) {
			return fmt.Errorf("%s has the wrong state %+v", name, in.Nodes[next])
		}
		next++
	}
	return nil
}

// checkLimit verifies Decide stopped only at the limit it reports.
func checkLimit(in Input, d Decision, active, startable int) error {
	after := active + len(d.Start)
	var w *WindowFullError
	var r *RegistryCapError
	switch {
	case d.Limit == nil:
		if len(d.Start) != startable {
			return fmt.Errorf("started %d of %d without a limit", len(d.Start), startable)
		}
	case len(d.Start) == startable:
		return fmt.Errorf("limit %v although every startable node started", d.Limit)
	case errors.As(d.Limit, &w):
		if after < in.Window {
			return fmt.Errorf("window reported full with %d of %d active", after, in.Window)
		}
	case errors.As(d.Limit, &r):
		if after+in.InUseElsewhere[r.Registry] < in.Caps[r.Registry] || !slices.Contains(in.Registries, r.Registry) {
			return fmt.Errorf("cap of %s reported reached: %+v", r.Registry, r)
		}
	default:
		return fmt.Errorf("unexpected limit %T", d.Limit)
	}
	return nil
}

func TestCounts(t *testing.T) {
	tests := map[string]struct {
		nodes        []Node
		total        int
		wantReported int
		wantDone     bool
	}{
		"no nodes is done":    {total: 0, wantDone: true},
		"one running":         {nodes: []Node{node("a", Succeeded), node("b", Running)}, total: 2, wantReported: 1},
		"one pending":         {nodes: []Node{node("a", Pending), node("b", Gone)}, total: 2, wantReported: 1},
		"every phase final":   {nodes: []Node{node("a", Succeeded), node("b", Failed), node("c", Skipped), node("d", Gone)}, total: 4, wantReported: 4, wantDone: true},
		"total counts absent": {nodes: []Node{node("a", Succeeded)}, total: 2, wantReported: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Count(tc.nodes)
			if got := c.Reported(); got != tc.wantReported {
				t.Errorf("Reported() = %d, want %d", got, tc.wantReported)
			}
			if got := c.Done(tc.total); got != tc.wantDone {
				t.Errorf("Done(%d) = %v, want %v", tc.total, got, tc.wantDone)
			}
		})
	}
}

func TestPhaseReported(t *testing.T) {
	tests := map[Phase]bool{
		Pending: false, Running: false, "": false,
		Succeeded: true, Failed: true, Skipped: true, Gone: true,
	}
	for phase, want := range tests {
		if got := phase.Reported(); got != want {
			t.Errorf("%q.Reported() = %v, want %v", phase, got, want)
		}
	}
}

// BenchmarkDecide is one reconcile of a large run in mid-rollout.
func BenchmarkDecide(b *testing.B) {
	const n = 5000
	in := Input{
		Window:         100,
		Registries:     []string{"harbor.example.com", "docker.io"},
		Caps:           map[string]int{"harbor.example.com": 150},
		InUseElsewhere: map[string]int{"harbor.example.com": 60},
	}
	for i := range n {
		nd := Node{Name: fmt.Sprintf("node-%05d", i), Phase: Pending}
		switch {
		case i < 2000:
			nd.Phase = Succeeded
		case i < 2060:
			nd.Phase, nd.JobActive = Running, true
		}
		in.Nodes = append(in.Nodes, nd)
	}
	b.ReportAllocs()
	for b.Loop() {
		Decide(in)
	}
}
