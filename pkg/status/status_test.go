package status

import (
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	started := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	in := &Status{
		Spec: "ml", RunID: "abc123", Phase: PhaseCompletedFailed, Message: "some failed",
		Counts: map[string]int{"Succeeded": 2, "Failed": 1}, Total: 3,
		Started: started, Finished: started.Add(time.Minute),
		Results: map[string]Result{"n1": {Phase: "Succeeded"}, "n2": {Phase: "Failed", Reason: "ErrImagePull: 401"}},
	}
	cm, err := in.ConfigMap("ns", map[string]string{"app": "image-prewarm"})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Name != "ml-status" || cm.Labels[LabelStatusOf] != "ml" || cm.Labels["app"] != "image-prewarm" {
		t.Fatalf("metadata %+v", cm.ObjectMeta)
	}
	if cm.Data[KeyFailed] != "1 × Failed: ErrImagePull: 401\n    n2" || cm.Data[KeyCounts] != "Failed=1 Succeeded=2" {
		t.Fatalf("data %v", cm.Data)
	}
	out, err := FromConfigMap("ml", cm)
	if err != nil {
		t.Fatal(err)
	}
	if out.RunID != in.RunID || out.Total != 3 || !out.Started.Equal(started) || out.Results["n2"] != in.Results["n2"] || out.Counts["Succeeded"] != 2 {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestBrokenResultsAreAnErrorButTheRestIsRead(t *testing.T) {
	cm, _ := (&Status{Spec: "x", RunID: "r1", Total: 4}).ConfigMap("ns", nil)
	cm.Data[KeyResults] = "{not json"
	s, err := FromConfigMap("x", cm)
	if err == nil || !strings.Contains(err.Error(), "results") {
		t.Fatalf("err = %v", err)
	}
	if s == nil || s.RunID != "r1" || s.Total != 4 {
		t.Fatalf("the readable fields were lost: %+v", s)
	}
}

func TestDone(t *testing.T) {
	for phase, want := range map[string]bool{PhaseRunning: false, PhasePending: false, PhaseSucceeded: true, PhaseCompletedFailed: true, PhaseCancelled: true, PhaseInvalid: false} {
		if got := (&Status{Phase: phase}).Done(); got != want {
			t.Errorf("%s: Done = %v", phase, got)
		}
	}
}

func TestNameOfLongSpec(t *testing.T) {
	if n := Name(strings.Repeat("a", 260)); len(n) > 253 || !strings.HasSuffix(n, "-status") {
		t.Fatalf("Name = %q", n)
	}
}
