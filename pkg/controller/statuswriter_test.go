package controller

import (
	"context"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/status"
)

func statusCM(phase string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: status.Name("spec"), Namespace: ns}, Data: map[string]string{"phase": phase}}
}

func startWriter(t *testing.T, client *fake.Clientset) *statusWriter {
	t.Helper()
	w := newStatusWriter(client, ns)
	startWriterFor(t, w)
	return w
}

func storedPhase(t *testing.T, client *fake.Clientset) string {
	cm, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("spec"), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data["phase"]
}

func TestStatusWriterCreatesUpdatesAndDeletes(t *testing.T) {
	client := fake.NewClientset()
	w := startWriter(t, client)
	w.write("spec", statusCM("Running"))
	eventually(t, "status created", func() bool { return storedPhase(t, client) == "Running" })
	w.write("spec", statusCM("Succeeded"))
	eventually(t, "status updated", func() bool { return storedPhase(t, client) == "Succeeded" })
	w.remove("spec")
	eventually(t, "status deleted", func() bool { return storedPhase(t, client) == "<none>" })
}

// After a restart the ConfigMap exists but the writer has not seen it, and another
// writer may have changed it: the write still lands, through a re-read.
func TestStatusWriterRecoversFromExistingAndConflicts(t *testing.T) {
	client := fake.NewClientset(statusCM("Old"))
	conflicts := 2
	client.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, status.Name("spec"), nil)
		}
		return false, nil, nil
	})
	w := startWriter(t, client)
	w.write("spec", statusCM("Running"))
	eventually(t, "status written despite AlreadyExists and two conflicts", func() bool { return storedPhase(t, client) == "Running" })
}

// A delete queued behind a write wins: a deleted spec's status is never re-created.
func TestStatusWriterLatestStateWins(t *testing.T) {
	client := fake.NewClientset()
	w := newStatusWriter(client, ns) // not running yet: both states queue up
	w.write("spec", statusCM("Running"))
	w.remove("spec")
	startWriterFor(t, w)
	w.write("other", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: status.Name("other"), Namespace: ns}})
	eventually(t, "the later spec written", func() bool {
		_, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("other"), metav1.GetOptions{})
		return err == nil
	})
	if got := storedPhase(t, client); got != "<none>" {
		t.Fatalf("status of the deleted spec: %q, want none", got)
	}
}

func startWriterFor(t *testing.T, w *statusWriter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx, 2) }()
	t.Cleanup(func() { cancel(); <-done })
}

func segmentCM(k int, runID string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: status.SegmentName("spec", k), Namespace: ns,
		Labels: map[string]string{status.LabelSegment: strconv.Itoa(k)}}, Data: map[string]string{status.KeyRunID: runID}}
}

func summaryCM(segments int) *corev1.ConfigMap {
	cm := statusCM("Running")
	cm.Data[status.KeySegments] = strconv.Itoa(segments)
	return cm
}

// A segment handed over with one state is written even when a newer state without it
// replaces that state before the write; segments past the summary's count (an earlier,
// bigger run's) go.
func TestStatusWriterMergesSegmentsAndDropsStaleOnes(t *testing.T) {
	client := fake.NewClientset(segmentCM(3, "old"))
	w := newStatusWriter(client, ns)
	old, _ := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.SegmentName("spec", 3), metav1.GetOptions{})
	w.known("spec", []*corev1.ConfigMap{old})
	w.write("spec", segmentCM(1, "new"), summaryCM(1))
	seq := w.write("spec", summaryCM(1))
	startWriterFor(t, w)
	eventually(t, "both states landed", func() bool { return w.landed("spec") == seq })
	if _, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.SegmentName("spec", 1), metav1.GetOptions{}); err != nil {
		t.Fatalf("the segment of the replaced state: %v", err)
	}
	eventually(t, "the stale segment deleted", func() bool {
		_, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.SegmentName("spec", 3), metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	w.remove("spec")
	eventually(t, "summary and segment deleted", func() bool {
		list, _ := client.CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{})
		return len(list.Items) == 0
	})
}
