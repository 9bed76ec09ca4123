// Package controller reconciles prewarm specs (ConfigMaps) × eligible nodes into an
// ephemeral pull Secret and per-node Jobs in a sliding window. It observes through
// informers, decides with pkg/rollout, and applies with a few API calls: a Job create
// per node, the Secret's create and delete per run, and rate-limited status writes.
package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

const (
	indexBySpec = "spec"
	indexByRun  = "run" // a run ID hashes the spec's name too: one spec's Jobs only
	indexByJob  = "job"
	// podJobLabel is set by the Job controller on every pod of a Job.
	podJobLabel = batchv1.JobNameLabel
)

// statusWorkers write status ConfigMaps of different specs in parallel.
const statusWorkers = 2

// gateWorkers patch nodes for the node gate (gate.go).
const gateWorkers = 2

// Options configure the controller.
type Options struct {
	Namespace string
	NoopImage string
	// StatusInterval is the least time between two writes of one status ConfigMap.
	StatusInterval time.Duration
	// Resync re-examines every spec periodically, as a safety net for missed events.
	Resync time.Duration
}

// Controller is the prewarm reconciler.
type Controller struct {
	client   kubernetes.Interface
	opts     Options
	recorder record.EventRecorder

	specInformer cache.SharedIndexInformer
	jobInformer  cache.SharedIndexInformer
	podInformer  cache.SharedIndexInformer
	nodeInformer cache.SharedIndexInformer
	factories    []informers.SharedInformerFactory
	broadcaster  record.EventBroadcaster

	queue    workqueue.TypedRateLimitingInterface[string]
	statuses *statusWriter
	// deletions holds recorded Jobs to delete (cleanup.go), served by its own workers.
	deletions workqueue.TypedRateLimitingInterface[deletion]
	pulls     *pullRecords
	// gate and gateQueue keep startup taints and per-spec labels on nodes (gate.go).
	gate      *gateBook
	gateQueue workqueue.TypedRateLimitingInterface[string]
	// freedSlots stamps when window slots free, for the refill latency (refill.go).
	freedSlots *freedSlots
	// creates sends Job creates without the reconcile waiting (creates.go).
	creates *jobCreator

	// dirty holds, by spec, the nodes whose node, Job or pod changed since the spec's
	// last reconcile (view.go).
	dirtyMu sync.Mutex
	dirty   map[string]map[string]bool

	mu   sync.Mutex
	runs map[string]*runState // by spec name
}

// New builds a controller; Run starts it.
func New(client kubernetes.Interface, opts Options) *Controller {
	if opts.StatusInterval == 0 {
		opts.StatusInterval = time.Second
	}
	if opts.Resync == 0 {
		opts.Resync = 5 * time.Minute
	}
	ns := informers.WithNamespace(opts.Namespace)
	specs := informers.NewSharedInformerFactoryWithOptions(client, opts.Resync, ns, informers.WithTweakListOptions(selectLabel(config.ConfigLabel+"=true")))
	owned := informers.NewSharedInformerFactoryWithOptions(client, 0, ns, informers.WithTweakListOptions(selectLabel(jobs.LabelApp+"="+jobs.AppName)),
		informers.WithTransform(trimOwned))
	nodes := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimNode))
	broadcaster := record.NewBroadcaster()
	c := &Controller{
		client:       client,
		opts:         opts,
		broadcaster:  broadcaster,
		recorder:     broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "image-prewarm"}),
		specInformer: specs.Core().V1().ConfigMaps().Informer(),
		jobInformer:  owned.Batch().V1().Jobs().Informer(),
		podInformer:  owned.Core().V1().Pods().Informer(),
		nodeInformer: nodes.Core().V1().Nodes().Informer(),
		factories:    []informers.SharedInformerFactory{specs, owned, nodes},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "prewarm"}),
		statuses: newStatusWriter(client, opts.Namespace),
		deletions: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[deletion](),
			workqueue.TypedRateLimitingQueueConfig[deletion]{Name: "cleanup"}),
		runs:       map[string]*runState{},
		dirty:      map[string]map[string]bool{},
		freedSlots: newFreedSlots(),
		gate:       newGateBook(),
		gateQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "node-gate"}),
	}
	c.statuses.onLanded = c.statusLanded
	c.creates = newJobCreator(client, opts.Namespace, func(spec string) { c.queue.Add(spec) })
	var pulled informers.SharedInformerFactory
	c.pulls, pulled = newPullRecords(client, opts.Namespace)
	c.pulls.specOf, c.pulls.requeue = c.specOfPod, func(spec string) { c.queue.Add(spec) }
	c.factories = append(c.factories, pulled)
	utilruntime.Must(c.jobInformer.AddIndexers(cache.Indexers{indexBySpec: byLabel(jobs.LabelSpec), indexByRun: byLabel(jobs.LabelRun)}))
	utilruntime.Must(c.podInformer.AddIndexers(cache.Indexers{indexByJob: byLabel(podJobLabel)}))
	c.addHandlers()
	return c
}

func (c *Controller) addHandlers() {
	_, _ = c.specInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueObject,
		UpdateFunc: func(_, cur any) { c.enqueueObject(cur) },
		DeleteFunc: c.enqueueObject,
	})
	// Only changes that can alter a decision wake the spec: a Job appearing, finishing or
	// going away, and a pod stuck on a pull error. Kubelet (or kwok) updates every pod
	// several times on its way; reconciling a 1000-node spec on each would delay the
	// events that free a slot. A freed slot is stamped before the spec is queued, so the
	// reconcile that refills it finds the stamp (refill.go).
	_, _ = c.jobInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueOwner,
		UpdateFunc: func(old, cur any) {
			if jobChanged(old, cur) {
				c.jobUpdated(old, cur)
				c.enqueueOwner(cur)
			}
		},
		DeleteFunc: func(obj any) {
			c.jobDeleted(obj)
			c.enqueueOwner(obj)
		},
	})
	_, _ = c.podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, cur any) {
			if pod, ok := cur.(*corev1.Pod); ok && hasPullError(pod) {
				c.podPullFailed(pod)
				c.enqueueOwner(cur)
			}
		},
	})
	_, _ = c.nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.markNodeObject(obj); c.enqueueAllSpecs(); c.enqueueNode(obj) },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*nodeRecord)
			n, ok2 := cur.(*nodeRecord)
			if !ok1 || !ok2 || nodeRelevantChange(o, n) {
				c.markNodeObject(cur)
				c.enqueueAllSpecs()
			}
			if !ok1 || !ok2 || gateRelevantChange(o, n) {
				c.enqueueNode(cur)
			}
		},
		DeleteFunc: func(obj any) { c.markNodeObject(obj); c.enqueueAllSpecs() },
	})
}

// enqueueObject queues a spec ConfigMap by name.
func (c *Controller) enqueueObject(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if cm, ok := obj.(*corev1.ConfigMap); ok {
		c.queue.Add(cm.Name)
	}
}

// enqueueOwner maps a Job or pod back to its spec through the spec label. The label
// value may be a hashed truncation of a long name, so it is resolved against the specs.
func (c *Controller) enqueueOwner(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	type labeled interface{ GetLabels() map[string]string }
	o, ok := obj.(labeled)
	if !ok {
		return
	}
	value := o.GetLabels()[jobs.LabelSpec]
	node := c.nodeOfOwned(obj)
	for _, key := range c.specInformer.GetStore().ListKeys() {
		_, name, _ := cache.SplitMetaNamespaceKey(key)
		if jobs.SpecLabelValue(name) == value {
			c.markNode(node, name)
			c.queue.Add(name)
		}
	}
	c.mu.Lock()
	for name := range c.runs { // deleted specs still have objects to clean up
		if jobs.SpecLabelValue(name) == value {
			c.queue.Add(name)
		}
	}
	c.mu.Unlock()
}

// statusLanded queues a spec whose finished Jobs wait for the status write that just
// landed.
func (c *Controller) statusLanded(spec string) {
	if rs := c.currentRun(spec); rs != nil && rs.awaitingStatus.Load() {
		c.queue.Add(spec)
	}
}

func (c *Controller) enqueueAllSpecs() {
	for _, key := range c.specInformer.GetStore().ListKeys() {
		_, name, _ := cache.SplitMetaNamespaceKey(key)
		c.queue.Add(name)
	}
}

// Run starts informers and workers and blocks until ctx ends, then drains the workers.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	logger := logging.FromContext(ctx)
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events(c.opts.Namespace)})
	defer c.broadcaster.Shutdown()
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range c.factories {
			f.Shutdown()
		}
	}()
	if !cache.WaitForCacheSync(ctx.Done(), c.specInformer.HasSynced, c.jobInformer.HasSynced, c.podInformer.HasSynced, c.nodeInformer.HasSynced) {
		return fmt.Errorf("caches did not sync")
	}
	c.enqueueOrphanSpecs()
	logger.Info("controller started", "namespace", c.opts.Namespace, "workers", workers)
	var wg sync.WaitGroup
	wg.Go(func() { c.statuses.run(ctx, statusWorkers) })
	wg.Go(func() { serveQueue(ctx, c.deletions, deleteWorkers, c.deleteRecorded) })
	wg.Go(func() { serveQueue(ctx, c.gateQueue, gateWorkers, c.syncNode) })
	serveQueue(ctx, c.queue, workers, c.reconcile)
	c.creates.settleAll()
	wg.Wait()
	logger.Info("controller stopped")
	return nil
}

// enqueueOrphanSpecs queues specs that own Jobs but no longer exist (deleted while the
// controller was down), so their Jobs and Secret are cleaned up.
func (c *Controller) enqueueOrphanSpecs() {
	c.enqueueAllSpecs()
	for _, obj := range c.jobInformer.GetStore().List() {
		c.enqueueOwner(obj)
		if job, ok := obj.(*batchv1.Job); ok {
			c.queueOrphan(job.Labels[jobs.LabelSpec])
		}
	}
}

// queueOrphan queues a spec label value that matches no existing spec: the cleanup
// path finds its objects by the same label value.
func (c *Controller) queueOrphan(value string) {
	for _, key := range c.specInformer.GetStore().ListKeys() {
		_, name, _ := cache.SplitMetaNamespaceKey(key)
		if jobs.SpecLabelValue(name) == value {
			return
		}
	}
	if value != "" {
		c.queue.Add(orphanPrefix + value)
	}
}

// reconcile syncs one spec and counts the outcome; a conflict is an expected race with
// another writer, retried without an error in the log.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	logger := logging.FromContext(ctx).WithValues(logging.KeySpec, key)
	ctx = context.WithValue(logging.IntoContext(ctx, logger), reconcileBegan{}, time.Now()) // for settleStamps
	err := c.sync(ctx, key)
	switch {
	case err == nil:
		metrics.Reconciles.WithLabelValues("success").Inc()
	case isConflict(err):
		metrics.Reconciles.WithLabelValues("conflict").Inc()
	default:
		metrics.Reconciles.WithLabelValues("error").Inc()
		logger.Error(err, "reconcile failed; retrying")
	}
	return err
}

// HasSynced reports whether the informers have delivered their first full list: the
// leader's /readyz waits for it (pkg/app).
func (c *Controller) HasSynced() bool {
	return c.specInformer.HasSynced() && c.jobInformer.HasSynced() && c.podInformer.HasSynced() && c.nodeInformer.HasSynced()
}

// specOfPod finds the spec and current references of one of our pods, for a Pulled
// Event: the pod's spec label names the run's spec.
func (c *Controller) specOfPod(pod string) (string, []string, func(string) string, bool) {
	obj, ok, _ := c.podInformer.GetStore().GetByKey(c.opts.Namespace + "/" + pod)
	if !ok {
		return "", nil, nil, false
	}
	p := obj.(*corev1.Pod)
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, rs := range c.runs {
		if jobs.SpecLabelValue(name) == p.Labels[jobs.LabelSpec] && rs.runID == p.Labels[jobs.LabelRun] {
			spec := rs.spec
			return name, spec.References(), func(image string) string { return registryLabel(spec, image) }, true
		}
	}
	return "", nil, nil, false
}
