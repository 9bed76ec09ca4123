package controller

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

func TestPullRecordsReadKubeletsPulledEvents(t *testing.T) {
	pulled := func(name, msg string) *corev1.Event {
		return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Reason: "Pulled", Message: msg,
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "pod-a", Namespace: "ns"}}
	}
	client := fake.NewClientset(
		pulled("e1", `Successfully pulled image "reg.x/m:1" in 2s (2.5s including waiting). Image size: 1000 bytes.`),
		pulled("e2", `Successfully pulled image "ghcr.io/image-prewarm/image-prewarm:v1" in 1s (1s including waiting). Image size: 5 bytes.`),
	)
	requeued := make(chan string, 1)
	r := &pullRecords{client: client, namespace: "ns", slots: make(chan struct{}, 1), sizes: map[string]map[string]int64{},
		requeue: func(spec string) { requeued <- spec }}
	spec := &config.Spec{Registries: []config.Registry{{Server: "reg.x"}}, Artifacts: []string{"reg.x/m:1"}}
	before := testutil.ToFloat64(metrics.PulledBytes.WithLabelValues("reg.x"))
	r.record(t.Context(), "models", spec, []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "pod-a"}}})
	select {
	case got := <-requeued:
		if got != "models" {
			t.Fatalf("requeued %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a newly learned size must requeue the spec")
	}
	if sizes := r.sizesOf("models"); len(sizes) != 1 || sizes["reg.x/m:1"] != 1000 {
		t.Fatalf("sizes %v: want only the artifact's, not our noop image's", sizes)
	}
	if got := testutil.ToFloat64(metrics.PulledBytes.WithLabelValues("reg.x")) - before; got != 1000 {
		t.Fatalf("pulled bytes grew by %v, want 1000", got)
	}
	r.reset("models", nil)
	if r.sizesOf("models") != nil {
		t.Fatal("reset(nil) forgets the spec")
	}
}
