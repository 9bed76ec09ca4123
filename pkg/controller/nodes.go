package controller

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

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
func nodeRelevantChange(old, cur *nodeRecord) bool {
	return old.Ready != cur.Ready ||
		old.Unschedulable != cur.Unschedulable ||
		!old.NodeLabels.sameBesideGate(cur.NodeLabels) ||
		!slices.EqualFunc(old.Taints, cur.Taints, sameTaint) ||
		old.Fingerprints != cur.Fingerprints
}

// gateRelevantChange reports whether an update can change what the node gate wants on
// the node, or undo what it did.
func gateRelevantChange(old, cur *nodeRecord) bool {
	return nodeRelevantChange(old, cur) || !slices.Equal(old.NodeLabels, cur.NodeLabels)
}

func sameTaint(a, b corev1.Taint) bool {
	return a.Key == b.Key && a.Value == b.Value && a.Effect == b.Effect
}

func imageCount(n *nodeRecord) int {
	return len(n.Fingerprints) / 8
}

// fingerprint is FNV-1a 64 of the normalized reference. A false "already present"
// would need a 64-bit collision between two image names on one node.
func fingerprint(image string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(normalizeImage(image)))
	return h.Sum64()
}

// fingerprints packs the sorted fingerprints of every name of every image. It is the
// largest part of a node's record, so it is built in one allocation of its final size,
// without a byte buffer to copy from.
func fingerprints(images []corev1.ContainerImage) string {
	count := 0
	for _, img := range images {
		count += len(img.Names)
	}
	if count == 0 {
		return ""
	}
	fps := make([]uint64, 0, count)
	for _, img := range images {
		for _, name := range img.Names {
			fps = append(fps, fingerprint(name))
		}
	}
	slices.Sort(fps)
	var b strings.Builder
	b.Grow(8 * len(fps))
	var buf [8]byte
	for _, fp := range fps {
		binary.BigEndian.PutUint64(buf[:], fp)
		b.Write(buf[:])
	}
	return b.String()
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
// blocks scheduling). The selector gets the labels by pointer: a slice would be copied
// to the heap on each call to fit the interface.
func (s selection) eligible(n *nodeRecord) bool {
	if !n.Ready || n.Unschedulable || !noopServes(n) || !s.selector.Matches(&n.NodeLabels) ||
		s.needsVolumes && !n.ImageVolumes {
		return false
	}
	for i := range n.Taints {
		taint := &n.Taints[i]
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
func (s selection) hasAllImages(n *nodeRecord) bool {
	packed := n.Fingerprints
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
func noopServes(n *nodeRecord) bool {
	if os, ok := n.NodeLabels.Lookup(corev1.LabelOSStable); ok && os != "linux" {
		return false
	}
	arch, ok := n.NodeLabels.Lookup(corev1.LabelArchStable)
	return !ok || slices.Contains(jobs.NoopArchitectures, arch)
}
