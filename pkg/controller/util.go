package controller

import (
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
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
