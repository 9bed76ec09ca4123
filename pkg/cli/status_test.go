package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/image-prewarm/image-prewarm/pkg/status"
)

func sample() *status.Status {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &status.Status{
		Spec: "ml", RunID: "r1", Phase: status.PhaseRunning, Total: 10, Started: start,
		Counts:  map[string]int{"Succeeded": 4, "Failed": 1, "Running": 3, "Pending": 2},
		Results: map[string]status.Result{"n9": {Phase: "Failed", Reason: "ErrImagePull: 401 Unauthorized"}},
	}
}

func TestRender(t *testing.T) {
	var buf bytes.Buffer
	s := sample()
	Render(&buf, []*status.Status{s}, s.Started.Add(50*time.Second), 10)
	out := buf.String()
	for _, want := range []string{"ml", "Running", "[█████░░░░░]", " 50%", "5/10", "failed 1", "ETA 50s", "✗ n9: ErrImagePull: 401 Unauthorized"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderManyFailuresIsBounded(t *testing.T) {
	s := sample()
	for i := range 20 {
		s.Results[string(rune('a'+i))] = status.Result{Phase: "Failed", Reason: "x"}
	}
	var buf bytes.Buffer
	Render(&buf, []*status.Status{s}, time.Now(), 10)
	if strings.Count(buf.String(), "✗") != maxFailuresShown || !strings.Contains(buf.String(), "more failed nodes") {
		t.Fatalf("failures not bounded:\n%s", buf.String())
	}
}

func TestRenderJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := RenderJSON(&buf, []*status.Status{sample()}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || len(got) != 1 || got[0]["phase"] != "Running" || got[0]["failedNodes"] == nil {
		t.Fatalf("json %s (%v)", buf.String(), err)
	}
}

func TestBar(t *testing.T) {
	tests := map[string]struct {
		done, total, width int
		want               string
	}{
		"empty":   {0, 4, 4, "[░░░░]"},
		"half":    {2, 4, 4, "[██░░]"},
		"full":    {4, 4, 4, "[████]"},
		"nothing": {0, 0, 2, "[██]"},
	}
	for name, tc := range tests {
		if got := bar(tc.done, tc.total, tc.width); got != tc.want {
			t.Errorf("%s: bar = %s, want %s", name, got, tc.want)
		}
	}
}
