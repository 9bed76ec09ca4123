package prewarmtest

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

// WriteCounting returns a client whose write requests (every method but GET) are
// counted in the returned counter: the API cost of what a controller on it does.
func WriteCounting(cfg *rest.Config) (kubernetes.Interface, *atomic.Int64, error) {
	cfg = rest.CopyConfig(cfg)
	writes := &atomic.Int64{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method != http.MethodGet {
				writes.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	client, err := kubernetes.NewForConfig(cfg)
	return client, writes, err
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Ordering records, by resourceVersion (etcd's global revision, so an exact order
// across kinds), when each node's prewarm Job first showed success and when each pod
// of a workload was first seen bound to a node.
type Ordering struct {
	mu        sync.Mutex
	completed map[string]uint64  // node → resourceVersion of its Job's first complete state
	bound     map[string]Binding // pod → its binding
}

// Binding is a workload pod's node and the resourceVersion that bound it.
type Binding struct {
	Node string
	RV   uint64
}

// WatchOrdering records the Jobs of ns and the pods of ns that match podSelector until
// ctx ends.
func WatchOrdering(ctx context.Context, client kubernetes.Interface, ns, podSelector string) *Ordering {
	o := &Ordering{completed: map[string]uint64{}, bound: map[string]Binding{}}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	_, _ = factory.Batch().V1().Jobs().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: o.job, UpdateFunc: func(_, cur any) { o.job(cur) },
	})
	pods := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(opts *metav1.ListOptions) { opts.LabelSelector = podSelector }))
	_, _ = pods.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: o.pod, UpdateFunc: func(_, cur any) { o.pod(cur) },
	})
	for _, f := range []informers.SharedInformerFactory{factory, pods} {
		f.Start(ctx.Done())
		f.WaitForCacheSync(ctx.Done())
	}
	return o
}

func (o *Ordering) job(obj any) {
	job, ok := obj.(*batchv1.Job)
	if !ok || job.Status.Succeeded == 0 {
		return
	}
	rv, _ := strconv.ParseUint(job.ResourceVersion, 10, 64)
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, seen := o.completed[jobs.NodeOf(job)]; !seen {
		o.completed[jobs.NodeOf(job)] = rv
	}
}

func (o *Ordering) pod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return
	}
	rv, _ := strconv.ParseUint(pod.ResourceVersion, 10, 64)
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, seen := o.bound[pod.Name]; !seen {
		o.bound[pod.Name] = Binding{Node: pod.Spec.NodeName, RV: rv}
	}
}

// Snapshot returns the Jobs' completions by node and the pods' bindings.
func (o *Ordering) Snapshot() (completed map[string]uint64, bound map[string]Binding) {
	o.mu.Lock()
	defer o.mu.Unlock()
	completed, bound = make(map[string]uint64, len(o.completed)), make(map[string]Binding, len(o.bound))
	for k, v := range o.completed {
		completed[k] = v
	}
	for k, v := range o.bound {
		bound[k] = v
	}
	return completed, bound
}
