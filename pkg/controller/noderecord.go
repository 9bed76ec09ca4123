package controller

import (
	"cmp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

// nodeRecord is what the node informer's store holds for a node: only what eligibility,
// the skip check, keep warm, the pull method and the node gate read. A trimmed
// corev1.Node cost about 2 KiB a node (the struct alone is 784 bytes, plus its
// conditions, marker annotations and image slices); at 20 000 nodes that was most of
// the controller's heap (issue 14).
//
// It is a runtime.Object and, through ObjectMeta, a metav1.Object, which is all the
// informer's store, its key function and its handlers need. client-go type-checks the
// watched object before the transform, and tombstones carry the stored record. Nothing
// may use the typed node Lister: it would assert *corev1.Node.
type nodeRecord struct {
	// ObjectMeta holds the name, UID, resourceVersion and creation time only; its
	// Labels stay nil, the labels are in NodeLabels.
	metav1.ObjectMeta
	NodeLabels labelList
	// Taints are kept whole: the gate's JSON patch tests them as they are on the node.
	Taints []corev1.Taint
	// Fingerprints is the packed, sorted fingerprints of every image name (fingerprints).
	Fingerprints  string
	Ready         bool
	Unschedulable bool
	// ImageVolumes: kubelet and runtime can mount image volumes (supportsImageVolumes).
	ImageVolumes bool
}

var _ runtime.Object = &nodeRecord{}

// trimNode is the node informer's transform. The image names become one packed string
// of sorted 64-bit fingerprints of their normalized form (docker.io/library/…): 8 bytes
// a name instead of about 90, computed once per update rather than on every reconcile.
//
// client-go may hand an object to the transform twice (a watch-list's objects go
// through its temporary store, then the FIFO): a record passes through unchanged, as
// does anything else that is not a node.
func trimNode(obj any) (any, error) {
	if n, ok := obj.(*corev1.Node); ok {
		return newNodeRecord(n), nil
	}
	return obj, nil
}

func newNodeRecord(n *corev1.Node) *nodeRecord {
	r := &nodeRecord{
		ObjectMeta:    metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, CreationTimestamp: n.CreationTimestamp},
		NodeLabels:    newLabelList(n.Labels),
		Taints:        slices.Clone(n.Spec.Taints),
		Fingerprints:  fingerprints(n.Status.Images),
		Unschedulable: n.Spec.Unschedulable,
		ImageVolumes:  supportsImageVolumes(n.Status.NodeInfo),
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			r.Ready = c.Status == corev1.ConditionTrue
		}
	}
	return r
}

// GetObjectKind: a record is never encoded, so it has no kind to tell.
func (r *nodeRecord) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject copies everything a holder could mutate (client-go's cache mutation
// detector compares such copies).
func (r *nodeRecord) DeepCopyObject() runtime.Object {
	out := *r
	r.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.NodeLabels = slices.Clone(r.NodeLabels)
	if r.Taints != nil {
		out.Taints = make([]corev1.Taint, len(r.Taints))
		for i := range r.Taints {
			r.Taints[i].DeepCopyInto(&out.Taints[i])
		}
	}
	return &out
}

// labelList is a node's labels sorted by key. A Go map costs about 300 bytes even for
// one label and about 1 KiB for the twenty a cloud node carries; the list costs 32
// bytes a label. It is a labels.Labels, so selectors match it directly.
type labelList []label

type label struct{ Key, Value string }

func newLabelList(m map[string]string) labelList {
	if len(m) == 0 {
		return nil
	}
	l := make(labelList, 0, len(m))
	for k, v := range m {
		l = append(l, label{k, v})
	}
	slices.SortFunc(l, func(a, b label) int { return cmp.Compare(a.Key, b.Key) })
	return l
}

func (l labelList) Lookup(key string) (string, bool) {
	i, found := slices.BinarySearchFunc(l, key, func(e label, k string) int { return cmp.Compare(e.Key, k) })
	if !found {
		return "", false
	}
	return l[i].Value, true
}

func (l labelList) Has(key string) bool {
	_, ok := l.Lookup(key)
	return ok
}

func (l labelList) Get(key string) string {
	v, _ := l.Lookup(key)
	return v
}

// sameBesideGate compares two label lists without the gate's own labels, and without
// copying them: it runs on every node update.
func (l labelList) sameBesideGate(o labelList) bool {
	i, j := 0, 0
	for {
		for i < len(l) && gateLabel(l[i].Key) {
			i++
		}
		for j < len(o) && gateLabel(o[j].Key) {
			j++
		}
		if i == len(l) || j == len(o) {
			return i == len(l) && j == len(o)
		}
		if l[i] != o[j] {
			return false
		}
		i, j = i+1, j+1
	}
}

// gateLabel: a per-spec label the node gate sets (rollout.nodeLabel).
func gateLabel(key string) bool { return strings.HasPrefix(key, jobs.NodeLabelPrefix) }
