package controller

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

// Oldest versions that mount image volumes: kubelet turns the feature on by default
// from 1.35 (GA in 1.36); containerd 2.1 and CRI-O 1.31 implement it in the runtime.
var (
	minKubelet  = version{1, 35}
	minRuntimes = map[string]version{"containerd": {2, 1}, "cri-o": {1, 31}}
)

// supportsImageVolumes reads the node's kubelet and runtime versions, as kubelet
// reports them in status.nodeInfo (e.g. "v1.37.2", "containerd://2.4.2+unknown"). A
// node that reports neither (kwok's, an unknown runtime) cannot. The node's record
// keeps the answer (nodeRecord.ImageVolumes), decided once per node update.
func supportsImageVolumes(info corev1.NodeSystemInfo) bool {
	kubelet, ok := parseVersion(strings.TrimPrefix(info.KubeletVersion, "v"))
	if !ok || kubelet.less(minKubelet) {
		return false
	}
	name, ver, found := strings.Cut(info.ContainerRuntimeVersion, "://")
	want, known := minRuntimes[name]
	got, ok := parseVersion(ver)
	return found && known && ok && !got.less(want)
}

// pullMethod is the method of the node's Job: the spec's, or under auto image volumes
// where the node mounts them and init containers elsewhere.
func (c *Controller) pullMethod(spec *config.Spec, node string) jobs.Method {
	switch spec.Rollout.PullMethod() {
	case config.MethodImageVolume:
		return jobs.MethodImageVolume
	case config.MethodInitContainers:
		return jobs.MethodInitContainers
	}
	if obj, ok, _ := c.nodeInformer.GetStore().GetByKey(node); ok && obj.(*nodeRecord).ImageVolumes {
		return jobs.MethodImageVolume
	}
	return jobs.MethodInitContainers
}

type version struct{ major, minor int }

func (v version) less(o version) bool {
	return v.major < o.major || v.major == o.major && v.minor < o.minor
}

// parseVersion reads "major.minor[.anything]".
func parseVersion(s string) (version, bool) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return version{}, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return version{major, minor}, err1 == nil && err2 == nil
}
