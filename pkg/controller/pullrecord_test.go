package controller

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

func TestPullRecordsReadKubeletsPulledEvents(t *testing.T) {
	r, _ := newPullRecords(fake.NewClientset(), "ns")
	requeued := []string{}
	r.requeue = func(spec string) { requeued = append(requeued, spec) }
	r.specOf = func(pod string) (string, []string, func(string) string, bool) {
		return "models", []string{"reg.x/m:1"}, func(string) string { return "reg.x" }, pod == "pod-a"
	}
	event := func(pod, msg string) *corev1.Event {
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: pod + "-e", ManagedFields: []metav1.ManagedFieldsEntry{{}}}, Reason: "Pulled", Message: msg,
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: pod}}
		trimmed, _ := trimEvent(ev)
		again, _ := trimEvent(trimmed)
		if again != trimmed {
			t.Fatal("trimEvent must pass a trimmed Event through")
		}
		return trimmed.(*corev1.Event)
	}
	before := testutil.ToFloat64(metrics.PulledBytes.WithLabelValues("reg.x"))
	r.observe(event("pod-a", `Successfully pulled image "reg.x/m:1" in 2s (2.5s including waiting). Image size: 1000 bytes.`))
	r.observe(event("pod-a", `Successfully pulled image "ghcr.io/image-prewarm/image-prewarm:v1" in 1s (1s including waiting). Image size: 5 bytes.`))
	r.observe(event("other", `Successfully pulled image "reg.x/m:1" in 2s (2s including waiting). Image size: 7 bytes.`))
	r.observe(event("pod-a", `Successfully pulled image "reg.x/m:1" in 1s (1s including waiting). Image size: 1000 bytes.`))
	if len(requeued) != 1 || requeued[0] != "models" {
		t.Fatalf("requeued %v: want the spec once, when its size was first learned", requeued)
	}
	if sizes := r.sizesOf("models"); len(sizes) != 1 || sizes["reg.x/m:1"] != 1000 {
		t.Fatalf("sizes %v: want only the artifact's, not our noop image's nor another pod's", sizes)
	}
	if got := testutil.ToFloat64(metrics.PulledBytes.WithLabelValues("reg.x")) - before; got != 2000 {
		t.Fatalf("pulled bytes grew by %v, want 2000 (two pulls of our pod)", got)
	}
	if !r.takeDescribed("models", "pod-a") || r.takeDescribed("models", "pod-a") {
		t.Fatal("a described pod is reported once, then forgotten")
	}
	r.reset("models", nil)
	if r.sizesOf("models") != nil {
		t.Fatal("reset(nil) forgets the spec")
	}
}
