package controller

import (
	"github.com/distribution/reference"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// trimNode is the node informer's transform: it keeps only what eligibility and the
// skip check read, so 5000 nodes with 50 images each stay small in memory. Image names
// are normalized once here (docker.io/library/…), not on every reconcile.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels},
		Spec:       corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable, Taints: n.Spec.Taints},
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	if len(n.Status.Images) > 0 {
		names := make([]string, 0, len(n.Status.Images))
		for _, img := range n.Status.Images {
			for _, name := range img.Names {
				names = append(names, normalizeImage(name))
			}
		}
		out.Status.Images = []corev1.ContainerImage{{Names: names}}
	}
	return out, nil
}

// normalizeImage returns the fully qualified form of an image reference, so that
// "nginx:1.27" in a spec matches "docker.io/library/nginx:1.27" in a node's status.
func normalizeImage(image string) string {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return image
	}
	return named.String()
}

// nodeRelevantChange reports whether an update can change a node's eligibility or
// skip state; heartbeats that change nothing else are ignored.
func nodeRelevantChange(old, cur *corev1.Node) bool {
	return isReady(old) != isReady(cur) ||
		old.Spec.Unschedulable != cur.Spec.Unschedulable ||
		!labels.Equals(old.Labels, cur.Labels) ||
		len(old.Spec.Taints) != len(cur.Spec.Taints) ||
		imageCount(old) != imageCount(cur)
}

func imageCount(n *corev1.Node) int {
	if len(n.Status.Images) == 0 {
		return 0
	}
	return len(n.Status.Images[0].Names)
}

func isReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// selection is a spec's node selection, prepared once per reconcile.
type selection struct {
	selector    labels.Selector
	tolerations []corev1.Toleration
	images      []string // normalized
}

func newSelection(nodeSelector map[string]string, tolerations []corev1.Toleration, images []string) selection {
	normalized := make([]string, len(images))
	for i, img := range images {
		normalized[i] = normalizeImage(img)
	}
	return selection{selector: labels.SelectorFromSet(nodeSelector), tolerations: tolerations, images: normalized}
}

// eligible: Ready, not cordoned, matching the selector, and every NoSchedule/NoExecute
// taint tolerated (PreferNoSchedule never blocks scheduling).
func (s selection) eligible(n *corev1.Node) bool {
	if !isReady(n) || n.Spec.Unschedulable || !s.selector.Matches(labels.Set(n.Labels)) {
		return false
	}
	for i := range n.Spec.Taints {
		taint := &n.Spec.Taints[i]
		if taint.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !s.tolerates(taint) {
			return false
		}
	}
	return true
}

func (s selection) tolerates(taint *corev1.Taint) bool {
	for i := range s.tolerations {
		if s.tolerations[i].ToleratesTaint(logr.Discard(), taint, false) {
			return true
		}
	}
	return false
}

// hasAllImages reports whether the node's status already lists every image.
func (s selection) hasAllImages(n *corev1.Node) bool {
	if len(n.Status.Images) == 0 {
		return false
	}
	have := n.Status.Images[0].Names
	for _, want := range s.images {
		found := false
		for _, name := range have {
			if name == want {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
