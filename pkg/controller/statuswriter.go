package controller

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// statusWriter stores the status ConfigMaps off the reconcile path. A reconcile hands
// over the finished ConfigMaps and goes back to refilling the window while the write
// happens here: on a busy API server one write takes 50–150 ms, and a Job finishing
// meanwhile used to wait for it. Only the latest state of a spec is kept, so a slow
// write coalesces the ones behind it; a failed one is retried with backoff unless a
// newer state replaced it. Deleting goes through the same queue, so a write still in
// flight can never re-create the status of a spec that was just deleted.
//
// A spec's status is a summary and sealed segments (pkg/status); a state handed over
// holds the summary and the segments that changed. States not yet written merge by
// object name, the newer object winning, so a segment handed over once is written
// even when a newer state without it follows. Objects are stored in the order given:
// segments before the summary that counts them.
//
// Every write gets a sequence number; landed tells which one the API server has
// stored last. A state holds every result of the run so far, so once write n has
// landed, so has every result handed over with a write up to n: that is when a
// finished Job may go (see cleanup.go).
type statusWriter struct {
	client    kubernetes.Interface
	namespace string
	queue     workqueue.TypedRateLimitingInterface[string]
	// onLanded, when set, is called after a spec's status was stored.
	onLanded func(spec string)

	mu      sync.Mutex
	seq     uint64
	pending map[string]pendingStatus
	saved   map[string]map[string]*corev1.ConfigMap // by spec and name: the API server's latest copy, for its version
	stored  map[string]uint64                       // by spec: the sequence number of the last stored write
}

// pendingStatus is a spec's state not yet written; objs nil means delete.
type pendingStatus struct {
	objs []*corev1.ConfigMap
	seq  uint64
}

func newStatusWriter(client kubernetes.Interface, namespace string) *statusWriter {
	return &statusWriter{
		client: client, namespace: namespace,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "status"}),
		pending: map[string]pendingStatus{},
		saved:   map[string]map[string]*corev1.ConfigMap{},
		stored:  map[string]uint64{},
	}
}

// write queues objs, segments then the summary, as the spec's status, merged into any
// state not yet written. It returns the write's sequence number, for landed.
func (w *statusWriter) write(spec string, objs ...*corev1.ConfigMap) uint64 {
	return w.put(spec, objs)
}

// remove queues the deletion of the spec's status ConfigMaps.
func (w *statusWriter) remove(spec string) { w.put(spec, nil) }

// landed is the sequence number of the spec's last write the API server stored, 0
// when none since this writer started.
func (w *statusWriter) landed(spec string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stored[spec]
}

// known records status ConfigMaps read from the cluster, so the first write after a
// restart is an update rather than a create that fails, and a delete finds them.
func (w *statusWriter) known(spec string, objs []*corev1.ConfigMap) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, cm := range objs {
		if w.saved[spec][cm.Name] == nil {
			w.save(spec, cm)
		}
	}
}

// save records the API server's copy; the caller holds mu.
func (w *statusWriter) save(spec string, cm *corev1.ConfigMap) {
	if w.saved[spec] == nil {
		w.saved[spec] = map[string]*corev1.ConfigMap{}
	}
	w.saved[spec][cm.Name] = cm
}

func (w *statusWriter) put(spec string, objs []*corev1.ConfigMap) uint64 {
	w.mu.Lock()
	w.seq++
	seq := w.seq
	w.pending[spec] = pendingStatus{objs: mergeObjects(w.pending[spec].objs, objs), seq: seq}
	w.mu.Unlock()
	w.queue.Add(spec)
	return seq
}

// mergeObjects puts newer over older by name, keeping the summary (the last) last.
// A delete (newer nil) replaces everything; a write after a delete replaces it too.
func mergeObjects(older, newer []*corev1.ConfigMap) []*corev1.ConfigMap {
	if newer == nil || older == nil {
		return newer
	}
	names := make(map[string]bool, len(newer))
	for _, cm := range newer {
		names[cm.Name] = true
	}
	var merged []*corev1.ConfigMap
	for _, cm := range older {
		if !names[cm.Name] {
			merged = append(merged, cm)
		}
	}
	merged = append(merged, newer...)
	slices.SortStableFunc(merged, func(a, b *corev1.ConfigMap) int { // the summary last
		return cmp.Compare(boolInt(!status.IsSegment(a)), boolInt(!status.IsSegment(b)))
	})
	return merged
}

// run writes until ctx ends. Different specs are written in parallel; one spec's
// writes never overlap.
func (w *statusWriter) run(ctx context.Context, workers int) {
	serveQueue(ctx, w.queue, workers, func(ctx context.Context, spec string) error {
		err := w.flush(ctx, spec)
		if err != nil {
			logging.FromContext(ctx).Error(err, "status write failed; retrying", logging.KeySpec, spec)
		}
		return err
	})
}

// flush stores the spec's pending state. On failure what was not stored goes back,
// under any newer state; after a conflict the fresh version is read for the retry.
func (w *statusWriter) flush(ctx context.Context, spec string) error {
	w.mu.Lock()
	desired, ok := w.pending[spec]
	delete(w.pending, spec)
	w.mu.Unlock()
	if !ok {
		return nil
	}
	if desired.objs == nil {
		return w.deleteAll(ctx, spec, desired)
	}
	for i, cm := range desired.objs {
		if err := w.storeOne(ctx, spec, cm); err != nil {
			w.requeue(spec, pendingStatus{objs: desired.objs[i:], seq: desired.seq})
			return err
		}
	}
	w.mu.Lock()
	w.stored[spec] = max(w.stored[spec], desired.seq)
	stale := w.staleSegments(spec, desired.objs[len(desired.objs)-1])
	w.mu.Unlock()
	if w.onLanded != nil {
		w.onLanded(spec)
	}
	return w.deleteNames(ctx, spec, stale)
}

// requeue puts back what a failed flush did not store, unless a newer state holds it.
func (w *statusWriter) requeue(spec string, rest pendingStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if newer, ok := w.pending[spec]; ok {
		rest = pendingStatus{objs: mergeObjects(rest.objs, newer.objs), seq: newer.seq}
	}
	w.pending[spec] = rest
}

// staleSegments names the saved segments past the summary's count: an earlier run's,
// which a new run with fewer nodes does not overwrite. The caller holds mu.
func (w *statusWriter) staleSegments(spec string, summary *corev1.ConfigMap) []string {
	count, _ := strconv.Atoi(summary.Data[status.KeySegments])
	var stale []string
	for name, cm := range w.saved[spec] {
		if k, err := strconv.Atoi(cm.Labels[status.LabelSegment]); err == nil && k > count {
			stale = append(stale, name)
		}
	}
	return stale
}

func (w *statusWriter) deleteAll(ctx context.Context, spec string, desired pendingStatus) error {
	w.mu.Lock()
	names := []string{status.Name(spec)}
	for name := range w.saved[spec] {
		if name != status.Name(spec) {
			names = append(names, name)
		}
	}
	w.mu.Unlock()
	if err := w.deleteNames(ctx, spec, names); err != nil {
		w.requeue(spec, desired)
		return err
	}
	w.mu.Lock()
	delete(w.stored, spec)
	w.mu.Unlock()
	return nil
}

func (w *statusWriter) deleteNames(ctx context.Context, spec string, names []string) error {
	for _, name := range names {
		err := w.client.CoreV1().ConfigMaps(w.namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err = ignoreNotFound(err); err != nil {
			return wrapf(err, "delete status %s", name)
		}
		w.mu.Lock()
		delete(w.saved[spec], name)
		w.mu.Unlock()
	}
	return nil
}

// storeOne makes one API call for desired and records the stored object.
func (w *statusWriter) storeOne(ctx context.Context, spec string, desired *corev1.ConfigMap) error {
	cms := w.client.CoreV1().ConfigMaps(w.namespace)
	w.mu.Lock()
	saved := w.saved[spec][desired.Name]
	w.mu.Unlock()
	var out *corev1.ConfigMap
	var err error
	if saved == nil {
		out, err = cms.Create(ctx, desired, metav1.CreateOptions{})
	} else {
		update := desired.DeepCopy()
		update.ResourceVersion = saved.ResourceVersion
		out, err = cms.Update(ctx, update, metav1.UpdateOptions{})
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) {
		w.refresh(ctx, spec, desired.Name)
	}
	if err != nil {
		return wrapf(err, "write status %s", desired.Name)
	}
	w.mu.Lock()
	w.save(spec, out)
	w.mu.Unlock()
	return nil
}

// refresh reads a stored status object, so the retry creates or updates the right version.
func (w *statusWriter) refresh(ctx context.Context, spec, name string) {
	current, err := w.client.CoreV1().ConfigMaps(w.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return // the retry tries again
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if apierrors.IsNotFound(err) {
		delete(w.saved[spec], name)
		return
	}
	w.save(spec, current)
}
