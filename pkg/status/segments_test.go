package status

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func manyResults(n int, reason string) *Status {
	s := &Status{Spec: "ml", RunID: "run1", Phase: PhaseRunning, Results: map[string]Result{}}
	for i := range n {
		r := Result{Phase: "Succeeded"}
		if reason != "" {
			r = Result{Phase: "Failed", Reason: reason}
		}
		s.SetResult(fmt.Sprintf("ip-10-%03d-%03d-%03d.eu-west-1.compute.internal", i/65536, i/256%256, i%256), r)
	}
	return s
}

// readBack stores objs the way the API server would (each name's latest) and reads
// the status as a restarted controller does.
func readBack(t *testing.T, stored map[string]*corev1.ConfigMap) *Status {
	t.Helper()
	s, err := FromConfigMap("ml", stored[Name("ml")])
	if err != nil {
		t.Fatal(err)
	}
	var segs []*corev1.ConfigMap
	for name, cm := range stored {
		if name != Name("ml") {
			segs = append(segs, cm)
		}
	}
	if err := s.Assemble(segs); err != nil {
		t.Fatal(err)
	}
	return s
}

func store(t *testing.T, stored map[string]*corev1.ConfigMap, s *Status) []*corev1.ConfigMap {
	t.Helper()
	objs, err := s.ConfigMaps("ns", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range objs {
		stored[cm.Name] = cm
	}
	return objs
}

func objectBytes(cm *corev1.ConfigMap) int {
	n := 0
	for k, v := range cm.Data {
		n += len(k) + len(v)
	}
	return n
}

// The figure: 20 000 nodes all failing with one 300-character reason, and all
// succeeding. Every object stays under the API server's 1 MiB, and the summary is small.
func TestStatusOf20000NodesFitsEveryObject(t *testing.T) {
	for name, reason := range map[string]string{"all fail": "ErrImagePull: " + strings.Repeat("x", 286), "all succeed": ""} {
		s := manyResults(20000, reason)
		stored := map[string]*corev1.ConfigMap{}
		objs := store(t, stored, s)
		total, largest := 0, 0
		for _, cm := range objs {
			total += objectBytes(cm)
			largest = max(largest, objectBytes(cm))
			if objectBytes(cm) >= 1<<20 {
				t.Errorf("%s: %s is %d bytes", name, cm.Name, objectBytes(cm))
			}
		}
		summary := objectBytes(stored[Name("ml")])
		t.Logf("STATUS-SIZE %s: %d objects, %d bytes in all, largest %d, summary %d", name, len(objs), total, largest, summary)
		if summary > 64<<10 {
			t.Errorf("%s: summary %d bytes, want it bounded", name, summary)
		}
		back := readBack(t, stored)
		if len(back.Results) != 20000 {
			t.Fatalf("%s: read back %d results", name, len(back.Results))
		}
	}
}

func TestSealedSegmentsAreWrittenOnlyWhenTheyChange(t *testing.T) {
	s := manyResults(2500, "")
	stored := map[string]*corev1.ConfigMap{}
	if objs := store(t, stored, s); len(objs) != 3 {
		t.Fatalf("first write: %d objects, want 2 sealed and the summary", len(objs))
	}
	s.SetResult("late-node", Result{Phase: "Succeeded"})
	if objs := store(t, stored, s); len(objs) != 1 {
		t.Fatalf("a new result wrote %d objects, want the summary alone", len(objs))
	}
	var inSealed string
	for node, k := range s.layout.segmentOf {
		if k == 1 {
			inSealed = node
			break
		}
	}
	s.DropResult(inSealed)
	objs := store(t, stored, s)
	if len(objs) != 2 || objs[0].Name != SegmentName("ml", 1) {
		t.Fatalf("dropping a sealed node wrote %d objects", len(objs))
	}
	back := readBack(t, stored)
	if _, ok := back.Results[inSealed]; ok || len(back.Results) != 2500 {
		t.Fatalf("read back %d results, dropped node present: %v", len(back.Results), ok)
	}
	// A restarted controller goes on with the same layout: a new result is again one write.
	back.SetResult("later-node", Result{Phase: "Succeeded"})
	if objs := store(t, stored, back); len(objs) != 1 {
		t.Fatalf("after a restart a new result wrote %d objects", len(objs))
	}
}

func TestOldStatusIsReadAndReplaced(t *testing.T) {
	old := map[string]Result{}
	for i := range 2300 {
		old[fmt.Sprintf("node-%04d", i)] = Result{Phase: "Succeeded"}
	}
	old["node-bad"] = Result{Phase: "Failed", Reason: "ErrImagePull: 401 Unauthorized"}
	raw, _ := json.Marshal(old)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name("ml")}, Data: map[string]string{
		KeyRunID: "run1", KeyPhase: PhaseRunning, KeyResults: string(raw), KeyFailed: "node-bad: Failed: ErrImagePull: 401 Unauthorized",
	}}
	s, err := FromConfigMap("ml", cm)
	if err != nil || len(s.Results) != 2301 {
		t.Fatalf("old status: %d results, %v", len(s.Results), err)
	}
	stored := map[string]*corev1.ConfigMap{}
	store(t, stored, s)
	if _, ok := stored[Name("ml")].Data[KeyResults]; ok {
		t.Fatal("the rewritten summary still holds the old results key")
	}
	if len(stored) != 3 {
		t.Fatalf("%d objects, want 2 sealed segments and the summary", len(stored))
	}
	if back := readBack(t, stored); len(back.Results) != 2301 || back.Results["node-bad"] != old["node-bad"] {
		t.Fatalf("read back %d results", len(back.Results))
	}
}

func TestTruncatedOldResultsKeepTheirCompleteEntries(t *testing.T) {
	raw := `{"a":{"phase":"Succeeded"},"b":{"phase":"Failed","reason":"401"},"c":{"pha`
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name("ml")}, Data: map[string]string{KeyRunID: "run1", KeyResults: raw}}
	s, err := FromConfigMap("ml", cm)
	if err == nil || !strings.Contains(err.Error(), KeyResults) {
		t.Fatalf("err = %v", err)
	}
	if len(s.Results) != 2 || s.Results["b"].Reason != "401" || s.RunID != "run1" {
		t.Fatalf("results %v", s.Results)
	}
}

func TestSegmentsOfAnotherRunOrBrokenAreSkipped(t *testing.T) {
	s := manyResults(1500, "")
	stored := map[string]*corev1.ConfigMap{}
	store(t, stored, s)
	seg := stored[SegmentName("ml", 1)]
	seg.Data[KeyNodes] = seg.Data[KeyNodes][:100]
	summary, _ := FromConfigMap("ml", stored[Name("ml")])
	if err := summary.Assemble([]*corev1.ConfigMap{seg}); err == nil {
		t.Fatal("a cut-short segment gave no error")
	}
	if n := len(summary.Results); n != 500 {
		t.Fatalf("%d results, want the open segment's 500 (the broken one holds one phase, cut)", n)
	}
	other, _ := FromConfigMap("ml", stored[Name("ml")])
	seg.Data[KeyRunID] = "another"
	if err := other.Assemble([]*corev1.ConfigMap{seg}); err != nil || len(other.Results) != 500 {
		t.Fatalf("another run's segment was used: %v, %d", err, len(other.Results))
	}
}

func TestFailuresGroupedAndBounded(t *testing.T) {
	results := map[string]Result{}
	for i := range 1000 {
		results[fmt.Sprintf("n%04d", i)] = Result{Phase: "Failed", Reason: fmt.Sprintf("reason %d", i%50)}
	}
	results["ok"] = Result{Phase: "Succeeded"}
	groups := GroupFailures(results)
	if len(groups) != maxGroups || FailedCount(groups) != 1000 {
		t.Fatalf("%d groups holding %d nodes", len(groups), FailedCount(groups))
	}
	if last := groups[maxGroups-1]; last.Reason != "(31 other reasons)" || last.Count != 31*20 {
		t.Fatalf("folded group %+v", last)
	}
	for _, g := range groups {
		if len(g.Nodes) > maxSample {
			t.Fatalf("group with %d sample nodes", len(g.Nodes))
		}
	}
}

// BenchmarkStatusSize reports the stored size of a 20 000-node status, all failing with
// one 300-character reason and all succeeding (make bench folds it into RESULTS.md).
func BenchmarkStatusSize(b *testing.B) {
	for name, reason := range map[string]string{"all-fail": "ErrImagePull: " + strings.Repeat("x", 286), "all-succeed": ""} {
		b.Run(name, func(b *testing.B) {
			var total, largest, summary, objects int
			for b.Loop() {
				objs, err := manyResults(20000, reason).ConfigMaps("ns", nil)
				if err != nil {
					b.Fatal(err)
				}
				total, largest, objects = 0, 0, len(objs)
				for _, cm := range objs {
					total += objectBytes(cm)
					largest = max(largest, objectBytes(cm))
				}
				summary = objectBytes(objs[len(objs)-1])
			}
			b.ReportMetric(float64(total), "total-B")
			b.ReportMetric(float64(largest), "largest-B")
			b.ReportMetric(float64(summary), "summary-B")
			b.ReportMetric(float64(objects), "objects")
		})
	}
}
