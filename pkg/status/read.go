package status

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Read reads a spec's status, its summary and sealed segments, and the objects read.
// It returns nil and no error when there is none. Like FromConfigMap it reads what it
// can: with a non-nil Status, the error says what was lost (a broken field, a missing
// or broken segment) and the rest is usable.
func Read(ctx context.Context, client kubernetes.Interface, namespace, spec string) (*Status, []*corev1.ConfigMap, error) {
	cms := client.CoreV1().ConfigMaps(namespace)
	summary, err := cms.Get(ctx, Name(spec), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read status of %s: %w", spec, err)
	}
	s, readErr := FromConfigMap(spec, summary)
	objs := []*corev1.ConfigMap{summary}
	var segments []*corev1.ConfigMap
	for k := 1; k <= s.Segments; k++ {
		seg, err := cms.Get(ctx, SegmentName(spec, k), metav1.GetOptions{})
		if err != nil {
			readErr = errors.Join(readErr, fmt.Errorf("status segment %d of %s: %w", k, spec, err))
			continue
		}
		segments = append(segments, seg)
	}
	objs = append(objs, segments...)
	return s, objs, errors.Join(readErr, s.Assemble(segments))
}

// FromList assembles every status among ConfigMaps listed by LabelStatusOf: summaries
// by spec name, each with its segments. A summary that cannot be read in full is kept
// with what could be read.
func FromList(items []corev1.ConfigMap) map[string]*Status {
	out := map[string]*Status{}
	segments := map[string][]*corev1.ConfigMap{} // by summary name
	for i := range items {
		cm := &items[i]
		if IsSegment(cm) {
			summary := cm.Name[:max(0, len(cm.Name)-len(cm.Labels[LabelSegment])-1)]
			segments[summary] = append(segments[summary], cm)
			continue
		}
		spec := cm.Name[:max(0, len(cm.Name)-len("-status"))]
		s, _ := FromConfigMap(spec, cm)
		out[spec] = s
	}
	for spec, s := range out {
		_ = s.Assemble(segments[Name(spec)])
	}
	return out
}
