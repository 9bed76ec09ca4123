package controller

import (
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

// pullRecords learns every pull's time and image size from kubelet's Pulled Events of
// our pods, for both pull methods. One informer watches the namespace's Pulled Events
// only (field selector), so the API server streams them instead of answering a list
// per finished pod. Init-container timestamps are kept only for a pod no Event
// described (kwok, or an Event already expired).
type pullRecords struct {
	informer cache.SharedIndexInformer
	// specOf maps a pod name to its spec's current references; requeue asks for a
	// reconcile of the spec so that its status shows a size learned.
	specOf  func(pod string) (spec string, refs []string, registry func(string) string, ok bool)
	requeue func(spec string)

	mu        sync.Mutex
	sizes     map[string]map[string]int64 // spec → reference → bytes, of the current runs
	described map[string]map[string]bool  // spec → pods with a Pulled Event of a reference, until their Job is counted
}

// newPullRecords builds the informer (its factory is started with the controller's).
func newPullRecords(client kubernetes.Interface, namespace string) (*pullRecords, informers.SharedInformerFactory) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "reason=Pulled" }),
		informers.WithTransform(trimEvent))
	r := &pullRecords{informer: factory.Core().V1().Events().Informer(), sizes: map[string]map[string]int64{}, described: map[string]map[string]bool{}}
	_, _ = r.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: r.observe})
	return r, factory
}

// trimEvent keeps the pod's name and the message: all a Pulled Event is read for.
func trimEvent(obj any) (any, error) {
	ev, ok := obj.(*corev1.Event)
	if !ok || ev.Reason == "" {
		return obj, nil // not an Event, or trimmed already (the trimmed form has no reason)
	}
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: ev.Name, Namespace: ev.Namespace, UID: ev.UID, ResourceVersion: ev.ResourceVersion},
		InvolvedObject: corev1.ObjectReference{Kind: ev.InvolvedObject.Kind, Name: ev.InvolvedObject.Name},
		Message:        ev.Message,
	}, nil
}

// observe records one Pulled Event of one of our pods.
func (r *pullRecords) observe(obj any) {
	ev, ok := obj.(*corev1.Event)
	if !ok || ev.InvolvedObject.Kind != "Pod" {
		return
	}
	pulled, ok := parsePulled(ev.Message)
	if !ok {
		return
	}
	spec, refs, registry, ok := r.specOf(ev.InvolvedObject.Name)
	if !ok || indexOf(refs, pulled.Image) < 0 {
		return // not our pod, or our own noop image
	}
	metrics.PullDuration.WithLabelValues(registry(pulled.Image)).Observe(pulled.Duration.Seconds())
	metrics.PulledBytes.WithLabelValues(registry(pulled.Image)).Add(float64(pulled.Bytes))
	if r.learn(spec, ev.InvolvedObject.Name, pulled) {
		r.requeue(spec)
	}
}

// learn stores the size and marks the pod described; true when the size is new.
func (r *pullRecords) learn(spec, pod string, p pulledEvent) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.described[spec] == nil {
		r.described[spec] = map[string]bool{}
	}
	r.described[spec][pod] = true
	if r.sizes[spec] == nil {
		r.sizes[spec] = map[string]int64{}
	}
	if r.sizes[spec][p.Image] == p.Bytes {
		return false
	}
	r.sizes[spec][p.Image] = p.Bytes
	return true
}

// takeDescribed reports whether an Event described one of the pod's pulls, and forgets
// the pod: its Job is being counted.
func (r *pullRecords) takeDescribed(spec, pod string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.described[spec][pod]
	delete(r.described[spec], pod)
	return d
}

// sizesOf returns a copy of the sizes known for the spec's run.
func (r *pullRecords) sizesOf(spec string) map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.sizes[spec])
}

// reset starts a spec's run with the sizes its stored status had (none for a new
// run); nil forgets the spec.
func (r *pullRecords) reset(spec string, known map[string]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.described, spec)
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
