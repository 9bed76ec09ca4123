package controller

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

// trimNode is the node informer's transform: it keeps only what eligibility and the
// skip check read, so 5000 nodes with 50 images each stay small in memory. The image
// names become one packed string of sorted 64-bit fingerprints of their normalized form
// (docker.io/library/…): 8 bytes a name instead of about 90, computed once per update
// rather than on every reconcile. The trimmed node lives only in this informer.
//
// client-go may hand an already trimmed node to the transform again (its docs ask for
// idempotence), so a trimmed node is marked and passed through unchanged: trimming twice
// would fingerprint the packed fingerprints and lose the node's images.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok || isTrimmed(n) {
		return obj, nil
	}
	out := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels, CreationTimestamp: n.CreationTimestamp},
		Spec:       corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable, Taints: n.Spec.Taints},
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	if fp := fingerprints(n.Status.Images); fp != "" {
		out.Status.Images = []corev1.ContainerImage{{Names: []string{fp}}}
	}
	out.Annotations = map[string]string{trimmedAnnotation: ""}
	if supportsImageVolumes(n.Status.NodeInfo) {
		out.Annotations[imageVolumesAnnotation] = ""
	}
	return out, nil
}

// trimmedAnnotation marks a node the transform has already trimmed. It exists only in
// the controller's memory, never on the API server.
const trimmedAnnotation = "image-prewarm.io/trimmed"

func isTrimmed(n *corev1.Node) bool {
	_, ok := n.Annotations[trimmedAnnotation]
	return ok
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
// skip state; heartbeats that change nothing else are ignored, and so are the labels
// the node gate sets (a label per spec on every node would wake every spec each time).
func nodeRelevantChange(old, cur *corev1.Node) bool {
	return isReady(old) != isReady(cur) ||
		old.Spec.Unschedulable != cur.Spec.Unschedulable ||
		!sameLabelsBesideGate(old.Labels, cur.Labels) ||
		!slices.EqualFunc(old.Spec.Taints, cur.Spec.Taints, sameTaint) ||
		packedFingerprints(old) != packedFingerprints(cur)
}

// gateRelevantChange reports whether an update can change what the node gate wants on
// the node, or undo what it did.
func gateRelevantChange(old, cur *corev1.Node) bool {
	return nodeRelevantChange(old, cur) || !labels.Equals(old.Labels, cur.Labels)
}

func sameTaint(a, b corev1.Taint) bool {
	return a.Key == b.Key && a.Value == b.Value && a.Effect == b.Effect
}

// sameLabelsBesideGate compares two label sets without the gate's own labels, and
// without copying them: it runs on every node update.
func sameLabelsBesideGate(a, b map[string]string) bool {
	count := func(l map[string]string) int {
		n := 0
		for k := range l {
			if !strings.HasPrefix(k, jobs.NodeLabelPrefix) {
				n++
			}
		}
		return n
	}
	for k, v := range a {
		if w, ok := b[k]; !strings.HasPrefix(k, jobs.NodeLabelPrefix) && (!ok || w != v) {
			return false
		}
	}
	return count(a) == count(b)
}

func imageCount(n *corev1.Node) int {
	return len(packedFingerprints(n)) / 8
}

func packedFingerprints(n *corev1.Node) string {
	if len(n.Status.Images) == 0 || len(n.Status.Images[0].Names) == 0 {
		return ""
	}
	return n.Status.Images[0].Names[0]
}

// fingerprint is FNV-1a 64 of the normalized reference. A false "already present"
// would need a 64-bit collision between two image names on one node.
func fingerprint(image string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(normalizeImage(image)))
	return h.Sum64()
}

// fingerprints packs the sorted fingerprints of every name of every image.
func fingerprints(images []corev1.ContainerImage) string {
	var fps []uint64
	for _, img := range images {
		for _, name := range img.Names {
			fps = append(fps, fingerprint(name))
		}
	}
	if len(fps) == 0 {
		return ""
	}
	slices.Sort(fps)
	buf := make([]byte, 0, 8*len(fps))
	for _, fp := range fps {
		buf = binary.BigEndian.AppendUint64(buf, fp)
	}
	return string(buf)
}

// hasFingerprint binary-searches the packed, sorted fingerprints.
func hasFingerprint(packed string, fp uint64) bool {
	lo, hi := 0, len(packed)/8
	for lo < hi {
		mid := (lo + hi) / 2
		v := binary.BigEndian.Uint64([]byte(packed[mid*8 : mid*8+8]))
		switch {
		case v == fp:
			return true
		case v < fp:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return false
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
	images      []uint64 // fingerprints of the images and artifacts
	// needsVolumes: the spec's artifacts can only be pulled as image volumes, and
	// rollout.method auto leaves out the nodes that cannot mount them.
	needsVolumes bool
}

func newSelection(spec *config.Spec) selection {
	refs := spec.References()
	fps := make([]uint64, len(refs))
	for i, img := range refs {
		fps[i] = fingerprint(img)
	}
	return selection{selector: labels.SelectorFromSet(spec.NodeSelector), tolerations: spec.JobTolerations(), images: fps,
		needsVolumes: len(spec.Artifacts) > 0 && spec.Rollout.PullMethod() == config.MethodAuto}
}

// eligible: Ready, not cordoned, a platform the noop image serves, matching the
// selector, and every NoSchedule/NoExecute taint tolerated (PreferNoSchedule never
// blocks scheduling).
func (s selection) eligible(n *corev1.Node) bool {
	if !isReady(n) || n.Spec.Unschedulable || !noopServes(n) || !s.selector.Matches(labels.Set(n.Labels)) ||
		s.needsVolumes && !mountsImageVolumes(n) {
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
	packed := packedFingerprints(n)
	if packed == "" {
		return false
	}
	for _, fp := range s.images {
		if !hasFingerprint(packed, fp) {
			return false
		}
	}
	return true
}

// noopServes reports whether the noop image can run on the node: its pull pod runs
// prewarm-noop, which is built for linux on jobs.NoopArchitectures only. kubelet always
// sets both labels; a node without one (hand-made, fake) is given the benefit of the
// doubt, as the scheduler would.
func noopServes(n *corev1.Node) bool {
	if os, ok := n.Labels[corev1.LabelOSStable]; ok && os != "linux" {
		return false
	}
	arch, ok := n.Labels[corev1.LabelArchStable]
	return !ok || slices.Contains(jobs.NoopArchitectures, arch)
}
