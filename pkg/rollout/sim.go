package rollout

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// This file is a discrete-event simulator that drives Decide on a fake clock,
// so the window's makespan can be measured against a lower bound and against
// a barrier rollout in tests and benchmarks, without sleeping or a cluster.

// Simulate rolls out len(durations) nodes through Decide with the given
// window, node i pulling for durations[i], and returns the makespan.
func Simulate(durations []time.Duration, window int) time.Duration {
	// Without registry caps Decide always starts a node while the window has
	// room, so the simulation cannot stall and the error is always nil.
	makespan, _ := SimulateInput(durations, Input{Window: window})
	return makespan
}

// SimulateInput is Simulate with the window and registry caps of in (its
// Nodes are ignored). InUseElsewhere stays constant, so a cap it already
// exhausts stalls the run; the error then wraps Decide's Limit.
func SimulateInput(durations []time.Duration, in Input) (time.Duration, error) {
	nodes := make([]Node, len(durations))
	index := make(map[string]int, len(durations))
	for i := range nodes {
		nodes[i] = Node{Name: fmt.Sprintf("node-%05d", i), Phase: Pending}
		index[nodes[i].Name] = i
	}
	in.Nodes = nodes

	var now time.Duration // the fake clock
	running := &completions{}
	for done := 0; done < len(nodes); done++ {
		d := Decide(in)
		for _, name := range d.Start {
			i := index[name]
			nodes[i].Phase, nodes[i].JobActive = Running, true
			heap.Push(running, completion{at: now + durations[i], node: i})
		}
		if running.Len() == 0 {
			return now, fmt.Errorf("rollout stalled with %d nodes left: %w", len(nodes)-done, d.Limit)
		}
		// Advance straight to the next report: nothing changes in between.
		next := heap.Pop(running).(completion)
		now = next.at
		nodes[next.node].Phase, nodes[next.node].JobActive = Succeeded, false
	}
	return now, nil
}

// SimulateBarrier is the naive rollout Decide replaces: fixed batches of
// window nodes in input order, each starting only once the whole previous
// batch has finished, so every batch lasts as long as its slowest pull.
func SimulateBarrier(durations []time.Duration, window int) time.Duration {
	window = max(window, 1)
	var makespan time.Duration
	for start := 0; start < len(durations); start += window {
		batch := durations[start:min(start+window, len(durations))]
		makespan += longest(batch)
	}
	return makespan
}

// LowerBound is a makespan no schedule can beat: the work spread perfectly
// over the window, or the longest single pull, whichever is larger.
func LowerBound(durations []time.Duration, window int) time.Duration {
	window = max(window, 1)
	var total time.Duration
	for _, d := range durations {
		total += d
	}
	spread := (total + time.Duration(window) - 1) / time.Duration(window)
	return max(spread, longest(durations))
}

// LognormalDurations returns n pull durations with the given median and
// log-scale spread sigma, from a seeded source so results are reproducible.
// Pull times are lognormal in practice: most nodes are close to the median,
// a few (cold cache, slow disk, throttled registry) take several times longer.
func LognormalDurations(n int, median time.Duration, sigma float64, seed uint64) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, 0))
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(float64(median) * math.Exp(sigma*rng.NormFloat64()))
	}
	return out
}

func longest(durations []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range durations {
		m = max(m, d)
	}
	return m
}

// completion is a running Job's simulated finishing time.
type completion struct {
	at   time.Duration
	node int
}

// completions is a min-heap by finishing time; ties break by node index so
// simulations are deterministic.
type completions []completion

func (c completions) Len() int { return len(c) }
func (c completions) Less(i, j int) bool {
	if c[i].at != c[j].at {
		return c[i].at < c[j].at
	}
	return c[i].node < c[j].node
}
func (c completions) Swap(i, j int) { c[i], c[j] = c[j], c[i] }
func (c *completions) Push(x any)   { *c = append(*c, x.(completion)) }
func (c *completions) Pop() any {
	old := *c
	last := old[len(old)-1]
	*c = old[:len(old)-1]
	return last
}
