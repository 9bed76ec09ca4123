package controller

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// orphanPrefix marks a queue key that is a spec label value of a spec that no longer
// exists; no ConfigMap name can start with it.
const orphanPrefix = "orphan:"

func selectLabel(selector string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) { o.LabelSelector = selector }
}

// byLabel indexes objects by one label's value.
func byLabel(key string) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		m, err := metaAccessor(obj)
		if err != nil {
			return nil, nil
		}
		if v, ok := m.GetLabels()[key]; ok {
			return []string{v}, nil
		}
		return nil, nil
	}
}

func metaAccessor(obj any) (metav1.Object, error) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	return meta.Accessor(obj)
}

func isConflict(err error) bool { return apierrors.IsConflict(err) }

// serveQueue hands each key of queue to process, on several workers, until ctx ends; then
// it shuts the queue down and waits for the workers. A key is never processed by two
// workers at once. A failed key is retried with the queue's backoff, a successful one
// has its backoff forgotten.
func serveQueue[K comparable](ctx context.Context, queue workqueue.TypedRateLimitingInterface[K], workers int, process func(context.Context, K) error) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				key, quit := queue.Get()
				if quit {
					return
				}
				if err := process(ctx, key); err != nil {
					queue.AddRateLimited(key)
				} else {
					queue.Forget(key)
				}
				queue.Done(key)
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
}
