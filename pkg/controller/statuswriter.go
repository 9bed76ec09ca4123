package controller

import (
	"context"
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
// over the finished ConfigMap and goes back to refilling the window while the write
// happens here: on a busy API server one write takes 50–150 ms, and a Job finishing
// meanwhile used to wait for it. Only the latest state of a spec is kept, so a slow
// write coalesces the ones behind it; a failed one is retried with backoff unless a
// newer state replaced it. Deleting goes through the same queue, so a write still in
// flight can never re-create the status of a spec that was just deleted.
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
	saved   map[string]*corev1.ConfigMap // the API server's latest copy, for its version
	stored  map[string]uint64            // by spec: the sequence number of the last stored write
}

// pendingStatus is a spec's state not yet written; cm nil means delete.
type pendingStatus struct {
	cm  *corev1.ConfigMap
	seq uint64
}

func newStatusWriter(client kubernetes.Interface, namespace string) *statusWriter {
	return &statusWriter{
		client: client, namespace: namespace,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "status"}),
		pending: map[string]pendingStatus{},
		saved:   map[string]*corev1.ConfigMap{},
		stored:  map[string]uint64{},
	}
}

// write queues desired as the spec's status; it replaces any state not yet written.
// It returns the write's sequence number, for landed.
func (w *statusWriter) write(spec string, desired *corev1.ConfigMap) uint64 {
	return w.put(spec, desired)
}

// remove queues the deletion of the spec's status ConfigMap.
func (w *statusWriter) remove(spec string) { w.put(spec, nil) }

// landed is the sequence number of the spec's last write the API server stored, 0
// when none since this writer started.
func (w *statusWriter) landed(spec string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stored[spec]
}

// known records a status ConfigMap read from the cluster, so the first write after a
// restart is an update rather than a create that fails.
func (w *statusWriter) known(spec string, cm *corev1.ConfigMap) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.saved[spec] == nil {
		w.saved[spec] = cm
	}
}

func (w *statusWriter) put(spec string, cm *corev1.ConfigMap) uint64 {
	w.mu.Lock()
	w.seq++
	seq := w.seq
	w.pending[spec] = pendingStatus{cm: cm, seq: seq}
	w.mu.Unlock()
	w.queue.Add(spec)
	return seq
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

// flush stores the spec's pending state. On failure the state goes back unless a newer
// one arrived meanwhile; after a conflict the fresh version is read for the retry.
func (w *statusWriter) flush(ctx context.Context, spec string) error {
	w.mu.Lock()
	desired, ok := w.pending[spec]
	delete(w.pending, spec)
	saved := w.saved[spec]
	w.mu.Unlock()
	if !ok {
		return nil
	}
	out, err := w.store(ctx, spec, desired.cm, saved)
	w.mu.Lock()
	if err != nil {
		if _, newer := w.pending[spec]; !newer {
			w.pending[spec] = desired
		}
		w.mu.Unlock()
		return err
	}
	if out == nil {
		delete(w.saved, spec)
		delete(w.stored, spec)
	} else {
		w.saved[spec] = out
		w.stored[spec] = max(w.stored[spec], desired.seq)
	}
	w.mu.Unlock()
	if out != nil && w.onLanded != nil {
		w.onLanded(spec)
	}
	return nil
}

// store makes one API call for desired (nil: delete) and returns the stored object.
func (w *statusWriter) store(ctx context.Context, spec string, desired, saved *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	cms := w.client.CoreV1().ConfigMaps(w.namespace)
	if desired == nil {
		err := cms.Delete(ctx, status.Name(spec), metav1.DeleteOptions{})
		return nil, wrapf(ignoreNotFound(err), "delete status of %s", spec)
	}
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
		w.refresh(ctx, spec)
	}
	return out, wrapf(err, "write status %s", desired.Name)
}

// refresh reads the stored status, so the retry creates or updates the right version.
func (w *statusWriter) refresh(ctx context.Context, spec string) {
	current, err := w.client.CoreV1().ConfigMaps(w.namespace).Get(ctx, status.Name(spec), metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return // the retry tries again
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if apierrors.IsNotFound(err) {
		delete(w.saved, spec)
		return
	}
	w.saved[spec] = current
}
