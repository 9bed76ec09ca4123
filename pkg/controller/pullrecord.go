package controller

import (
	"context"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

// pullRecords learns each finished pull pod's pull times and image sizes from kubelet's
// Pulled Events: one list call per finished pod, off the reconcile, a few at a time.
// Both pull methods get them; init-container timestamps are kept only for a pull no
// Event describes (kwok, or an Event already gone).
type pullRecords struct {
	client    kubernetes.Interface
	namespace string
	slots     chan struct{}
	requeue   func(spec string)

	mu    sync.Mutex
	sizes map[string]map[string]int64 // spec → reference → bytes, of the current runs
}

// recordPullSlots bounds concurrent Event lists after a burst of finished Jobs.
const recordPullSlots = 4

// record reads the pods' Pulled Events in the background and feeds the pull-duration
// histogram, the bytes counter and the spec's sizes; a size learned for the first time
// requeues the spec so that its status shows it.
func (r *pullRecords) record(ctx context.Context, specName string, spec *config.Spec, pods []*corev1.Pod) {
	refs := spec.References()
	go func() {
		r.slots <- struct{}{}
		defer func() { <-r.slots }()
		learned := false
		for _, pod := range pods {
			learned = r.recordPod(ctx, specName, spec, refs, pod) || learned
		}
		if learned {
			r.requeue(specName)
		}
	}()
}

func (r *pullRecords) recordPod(ctx context.Context, specName string, spec *config.Spec, refs []string, pod *corev1.Pod) bool {
	events, err := r.client.CoreV1().Events(r.namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + pod.Name + ",reason=Pulled"})
	if err != nil {
		logging.FromContext(ctx).V(1).Info("cannot read Pulled Events; pull times from container timestamps", "pod", pod.Name, "error", err.Error())
		events = &corev1.EventList{}
	}
	described := map[int]bool{}
	learned := false
	for _, ev := range events.Items {
		pulled, ok := parsePulled(ev.Message)
		i := indexOf(refs, pulled.Image)
		if !ok || i < 0 {
			continue // our own noop image, or not a pull
		}
		described[i] = true
		registry := registryLabel(spec, refs[i])
		metrics.PullDuration.WithLabelValues(registry).Observe(pulled.Duration.Seconds())
		metrics.PulledBytes.WithLabelValues(registry).Add(float64(pulled.Bytes))
		learned = r.learnSize(specName, refs[i], pulled.Bytes) || learned
	}
	for i, d := range pullDurations(pod) {
		if i < len(refs) && !described[i] {
			metrics.PullDuration.WithLabelValues(registryLabel(spec, refs[i])).Observe(d.Seconds())
		}
	}
	return learned
}

func (r *pullRecords) learnSize(spec, ref string, bytes int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sizes[spec] == nil {
		r.sizes[spec] = map[string]int64{}
	}
	if r.sizes[spec][ref] == bytes {
		return false
	}
	r.sizes[spec][ref] = bytes
	return true
}

// sizesOf returns a copy of the sizes known for the spec's run.
func (r *pullRecords) sizesOf(spec string) map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.sizes[spec])
}

// reset starts a spec's run with the sizes its stored status had (none for a new run).
func (r *pullRecords) reset(spec string, known map[string]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if known == nil {
		delete(r.sizes, spec)
		return
	}
	r.sizes[spec] = maps.Clone(known)
}

func indexOf(refs []string, ref string) int {
	for i, r := range refs {
		if r == ref {
			return i
		}
	}
	return -1
}
