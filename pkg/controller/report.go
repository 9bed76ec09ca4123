package controller

import (
	"time"

	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

var allPhases = []rollout.Phase{rollout.Pending, rollout.Running, rollout.Succeeded, rollout.Failed, rollout.Skipped, rollout.Gone, rollout.Paused}

var allRunPhases = []string{status.PhasePending, status.PhaseRunning, status.PhaseSucceeded, status.PhaseCompletedFailed, status.PhaseFailed, status.PhaseInvalid, status.PhaseCancelled, status.PhasePaused}

// fillStatus derives the status fields from the nodes' phases.
func (c *Controller) fillStatus(rs *runState) {
	s := rs.status
	counts := rs.view.counts()
	s.Counts = make(map[string]int, len(allPhases))
	for _, p := range allPhases {
		s.Counts[string(p)] = counts[p]
	}
	s.Total = rs.view.total()
	s.RunID = rs.runID
	done := counts.Done(s.Total)
	switch {
	case rs.failure != "":
		s.Phase, s.Message = status.PhaseFailed, rs.failure
	case done && counts[rollout.Failed]+counts[rollout.Gone] > 0:
		s.Phase, s.Message = status.PhaseCompletedFailed, "every node reported; some failed (see failedNodes)"
	case done:
		s.Phase, s.Message = status.PhaseSucceeded, "every node reported"
	case counts[rollout.Running] > 0:
		s.Phase, s.Message = status.PhaseRunning, ""
	default:
		s.Phase, s.Message = status.PhasePending, ""
	}
	s.Holds = rs.statusHolds()
	if rs.paused() && rs.failure == "" {
		s.Phase, s.Message = status.PhasePaused, rs.holdMessage()
	}
	if rs.invalid != "" {
		s.Message = "spec rejected, keeping the last valid one: " + rs.invalid
		if rs.spec == nil {
			s.Phase, s.Message = status.PhaseInvalid, rs.invalid
		}
	}
	if s.Started.IsZero() {
		s.Started = time.Now()
	}
	switch {
	case s.Done() && s.Finished.IsZero():
		s.Finished = time.Now()
	case !s.Done():
		s.Finished = time.Time{}
	}
}

func (c *Controller) exportMetrics(spec string, rs *runState) {
	metrics.SecretsActive.WithLabelValues().Set(float64(c.activeSecrets()))
	s := rs.status
	for _, p := range allPhases {
		metrics.Nodes.WithLabelValues(spec, string(p)).Set(float64(s.Counts[string(p)]))
	}
	for _, p := range allRunPhases {
		v := 0.0
		if p == s.Phase {
			v = 1
		}
		metrics.RunPhase.WithLabelValues(spec, p).Set(v)
	}
	ratio := 1.0
	if s.Total > 0 {
		ratio = float64(rs.view.counts().Reported()) / float64(s.Total)
	}
	metrics.Progress.WithLabelValues(spec).Set(ratio)
	end := time.Now()
	if !s.Finished.IsZero() {
		end = s.Finished
	}
	if !s.Started.IsZero() {
		metrics.Duration.WithLabelValues(spec).Set(end.Sub(s.Started).Seconds())
	}
}

// activeSecrets counts the runs whose pull Secret exists now; derived from state rather
// than counted up and down, so a restarted leader never reports a negative number.
func (c *Controller) activeSecrets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, rs := range c.runs {
		if rs.secret.Load() == secretPresent {
			n++
		}
	}
	return n
}
