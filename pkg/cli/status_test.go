package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

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
	for _, want := range []string{"ml", "Running", "[█████░░░░░]", " 50%", "5/10", "failed 1", "ETA 50s", "✗ 1 × ErrImagePull: 401 Unauthorized", "        n9"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderManyFailuresIsBounded(t *testing.T) {
	s := sample()
	for i := range 2000 {
		s.Results[fmt.Sprintf("node-%04d", i)] = status.Result{Phase: "Failed", Reason: fmt.Sprintf("reason %d", i%20)}
	}
	var buf bytes.Buffer
	Render(&buf, []*status.Status{s}, time.Now(), 10)
	out := buf.String()
	if strings.Count(out, "✗") != maxFailuresShown || !strings.Contains(out, "… and 1501 more failed nodes, for other reasons") ||
		!strings.Contains(out, "✗ 100 × reason 0\n        node-0000, node-0020, node-0040 and 97 more") {
		t.Fatalf("failures not grouped and bounded:\n%s", out)
	}
}

// Load reads a big run from its summary and segments, and skips no status that is
// damaged in part.
func TestLoadAssemblesSegments(t *testing.T) {
	s := &status.Status{Spec: "ml", RunID: "r1", Phase: status.PhaseRunning, Results: map[string]status.Result{}}
	for i := range 2500 {
		s.SetResult(fmt.Sprintf("node-%04d", i), status.Result{Phase: "Failed", Reason: "ErrImagePull: 401"})
	}
	objs, err := s.ConfigMaps("ns", nil)
	if err != nil {
		t.Fatal(err)
	}
	broken := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: status.Name("old"), Namespace: "ns", Labels: map[string]string{status.LabelStatusOf: "old"}},
		Data: map[string]string{status.KeyRunID: "r0", status.KeyResults: `{"a":{"phase":"Failed","reason":"x"},"b":`}}
	client := fake.NewClientset(broken)
	for _, cm := range objs {
		if _, err := client.CoreV1().ConfigMaps("ns").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Load(t.Context(), client, "ns")
	if err != nil || len(got) != 2 {
		t.Fatalf("%d statuses, %v", len(got), err)
	}
	if got[0].Spec != "ml" || len(got[0].Results) != 2500 || got[1].Spec != "old" || len(got[1].Results) != 1 {
		t.Fatalf("loaded %s with %d results, %s with %d", got[0].Spec, len(got[0].Results), got[1].Spec, len(got[1].Results))
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

func TestRenderPausedRun(t *testing.T) {
	s := sample()
	s.Phase, s.Message = status.PhasePaused, "CredentialsRejected: pulls of harbor.example.com held back after 3 nodes failed alike"
	s.Counts["Paused"] = 7
	var buf bytes.Buffer
	Render(&buf, []*status.Status{s}, s.Started, 10)
	for _, want := range []string{"Paused", "· paused 7", "held back after 3 nodes"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, buf.String())
		}
	}
}
