package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// Issue 14: a status ConfigMap written by an older version (every result in one
// "results" object), and cut short, neither loses the run nor stops it. The restarted
// controller resumes the same run with the readable results, says once what it lost,
// observes the lost nodes afresh, and replaces the old form with summary and segments.
func TestOldAndTruncatedStatusResumesTheRun(t *testing.T) {
	e := newEnv(t)
	nodes := e.nodes("n", 40)
	e.credentials("harbor-robot", "robot", sentinel)
	jw := e.watchJobs()
	e.startController()
	e.applySpec("old", e.privateSpec(8, threeImages...))
	before := e.waitStatus("old", "half the nodes reported", func(s *status.Status) bool { return len(s.Results) >= 20 })
	e.stopController()

	kept := writeOldTruncatedStatus(t, e.ns, "old")
	e.startController()
	st := e.waitStatus("old", "run succeeded after the damaged status", phaseIs(status.PhaseSucceeded))
	if st.RunID != before.RunID || st.Counts["Succeeded"] != len(nodes) || len(st.Results) != len(nodes) {
		t.Fatalf("run %s (was %s), counts %v, %d results", st.RunID, before.RunID, st.Counts, len(st.Results))
	}
	_, created := jw.snapshot()
	for node := range kept {
		if created[node] != 1 {
			t.Errorf("node %s, whose result was readable, got %d Jobs", node, created[node])
		}
	}
	cm, err := kube.Client.CoreV1().ConfigMaps(e.ns).Get(t.Context(), status.Name("old"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, old := cm.Data[status.KeyResults]; old || cm.Data[status.KeyNodes] == "" {
		t.Fatalf("status not rewritten in the new form: keys %v", keysOf(cm.Data))
	}
	damaged := 0
	for _, ev := range e.events() {
		if ev.Reason == "StatusDamaged" {
			damaged++
			if !strings.Contains(ev.Message, status.KeyResults) {
				t.Errorf("event does not say what was lost: %q", ev.Message)
			}
		}
	}
	if damaged != 1 {
		t.Fatalf("%d StatusDamaged Events, want 1", damaged)
	}
	t.Logf("%d of %d stored results readable after the cut; run %s resumed and succeeded", len(kept), len(before.Results), st.RunID)
}

// writeOldTruncatedStatus rewrites the stored status as an older version would have
// stored it, then cuts its results object in the middle of an entry. It returns the
// results that stay readable.
func writeOldTruncatedStatus(t *testing.T, ns, spec string) map[string]status.Result {
	t.Helper()
	cms := kube.Client.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(context.Background(), status.Name(spec), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := status.FromConfigMap(spec, cm)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(st.Results)
	cut := string(raw[:len(raw)*2/3])
	cut = cut[:strings.LastIndex(cut, `"phase"`)+3] // inside an entry
	for _, k := range []string{status.KeyNodes, status.KeyFailures, status.KeySegments} {
		delete(cm.Data, k)
	}
	cm.Data[status.KeyResults] = cut
	if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	old, _ := status.FromConfigMap(spec, cm)
	if len(old.Results) == 0 || len(old.Results) >= len(st.Results) {
		t.Fatalf("the cut keeps %d of %d results", len(old.Results), len(st.Results))
	}
	return old.Results
}

func keysOf(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
