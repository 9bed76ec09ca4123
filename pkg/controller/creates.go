package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

// Job creates are sent without the reconcile waiting for them. A reconcile builds the
// Jobs it starts, hands them to the jobCreator and goes on; on a busy API server one
// create takes 50–200 ms, and a reconcile that waited for its creates kept every slot
// freed meanwhile waiting too (issue 14's refill tail). The node counts as running from
// the hand-over (runState.awaiting), so the window is never overfilled; the informer
// showing the Job ends the wait as before.
//
// A create that fails is handed back: the spec's next reconcile forgets the node's
// wait, so the node is started again, and returns the error, which is logged, counted
// and retried with the queue's back-off, as when the reconcile sent the create itself.
// Before a run is replaced or torn down its creates in flight are waited for, so the
// old run's cleanup finds every Job it created.
type jobCreator struct {
	client    kubernetes.Interface
	namespace string
	slots     chan struct{} // bounds the creates in flight across specs
	requeue   func(spec string)

	mu       sync.Mutex
	inflight map[string]*sync.WaitGroup // by spec
	failed   map[string][]failedCreate  // by spec, until its next reconcile
}

// failedCreate is a create the API server refused.
type failedCreate struct {
	runID, node string
	err         error
}

// parallelCreates bounds the Job creates in flight across specs. Several slots often
// free together (a wave of pulls ends within a second), and a refill waiting for a
// free place here waits for other creates' round trips: the bound covers a whole
// window of the usual size (16 made the refill p99 at 5000 nodes 40–70 ms, nearly all
// of it spent waiting here). The API server's own limits (priority and fairness) and
// the client's rate limit still apply to what is sent.
const parallelCreates = 64

func newJobCreator(client kubernetes.Interface, namespace string, requeue func(string)) *jobCreator {
	return &jobCreator{
		client: client, namespace: namespace, requeue: requeue,
		slots:    make(chan struct{}, parallelCreates),
		inflight: map[string]*sync.WaitGroup{},
		failed:   map[string][]failedCreate{},
	}
}

// pendingCreate is one Job to create for a spec's run. freed is when the window slot
// it takes was freed (zero: it takes no freed slot), for the refill latency.
type pendingCreate struct {
	spec, runID, node string
	job               *batchv1.Job
	freed             time.Time
}

// send creates the Job in the background; ctx bounds it (the controller's lifetime).
func (jc *jobCreator) send(ctx context.Context, p pendingCreate) {
	wg := jc.specGroup(p.spec)
	wg.Go(func() {
		select {
		case jc.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-jc.slots }()
		if err := jc.create(ctx, p); err != nil && ctx.Err() == nil {
			jc.mu.Lock()
			jc.failed[p.spec] = append(jc.failed[p.spec], failedCreate{runID: p.runID, node: p.node, err: err})
			jc.mu.Unlock()
			jc.requeue(p.spec)
		}
	})
}

func (jc *jobCreator) create(ctx context.Context, p pendingCreate) error {
	if !p.freed.IsZero() {
		metrics.RefillLatency.WithLabelValues(p.spec).Observe(time.Since(p.freed).Seconds())
	}
	_, err := jc.client.BatchV1().Jobs(jc.namespace).Create(ctx, p.job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil // created before a restart; the informer will show it
	}
	if err != nil {
		return wrapf(err, "create Job for node %s", p.node)
	}
	metrics.JobsCreated.WithLabelValues(p.spec).Inc()
	logging.FromContext(ctx).V(1).Info("job created", logging.KeyNode, p.node, logging.KeyJob, p.job.Name)
	return nil
}

func (jc *jobCreator) specGroup(spec string) *sync.WaitGroup {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	wg := jc.inflight[spec]
	if wg == nil {
		wg = &sync.WaitGroup{}
		jc.inflight[spec] = wg
	}
	return wg
}

// settle waits for the spec's creates in flight to return. It runs in the spec's
// reconcile, as every send for the spec does, so none is added while it waits.
func (jc *jobCreator) settle(spec string) {
	jc.specGroup(spec).Wait()
}

// settleAll waits for every create in flight, once the reconciles have stopped.
func (jc *jobCreator) settleAll() {
	jc.mu.Lock()
	groups := slices.Collect(maps.Values(jc.inflight))
	jc.mu.Unlock()
	for _, wg := range groups {
		wg.Wait()
	}
}

// takeFailed returns the spec's failed creates since the last call.
func (jc *jobCreator) takeFailed(spec string) []failedCreate {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	failed := jc.failed[spec]
	delete(jc.failed, spec)
	return failed
}

// restartFailedCreates makes the nodes whose create failed wait no more, so they are
// started again, and returns one error naming the first failure and how many failed
// (fifty copies of one "forbidden" help nobody). Failures of an earlier run are
// dropped: their Jobs are not wanted any more.
func (c *Controller) restartFailedCreates(spec string, rs *runState) error {
	var first error
	failed := 0
	for _, f := range c.creates.takeFailed(spec) {
		if f.runID != rs.runID {
			continue
		}
		delete(rs.awaiting, f.node)
		c.markNode(f.node, spec)
		if first == nil {
			first = f.err
		}
		failed++
	}
	if failed > 1 {
		return fmt.Errorf("%d Job creates failed, the first: %w", failed, first)
	}
	return first
}
