package controller

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/image-prewarm/image-prewarm/pkg/rollout"
)

// The view's tally stays what counting its nodes gives, through every kind of change.
func TestViewTallyFollowsTheNodes(t *testing.T) {
	phases := []rollout.Phase{rollout.Pending, rollout.Running, rollout.Succeeded, rollout.Failed, rollout.Paused}
	r := rand.New(rand.NewPCG(1, 2))
	var v viewState
	v.reset()
	for step := range 5000 {
		name := fmt.Sprintf("n%d", r.IntN(50))
		switch op := r.IntN(20); {
		case op == 0:
			v.reset()
		case op == 1:
			v.started([]string{name})
		default:
			rebuild := v.update(rollout.Node{Name: name, Phase: phases[r.IntN(len(phases))]}, op%5 != 0)
			if rebuild {
				v.sortView()
			}
		}
		if got, want := v.counts(), rollout.Count(v.nodes); !maps.Equal(got, want) {
			t.Fatalf("step %d: tally %v, counting the view %v", step, got, want)
		}
		if v.total() != len(v.nodes) {
			t.Fatalf("step %d: total %d, %d nodes", step, v.total(), len(v.nodes))
		}
	}
}
