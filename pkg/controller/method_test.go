package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
)

func TestSupportsImageVolumes(t *testing.T) {
	for name, tc := range map[string]struct {
		kubelet, runtime string
		want             bool
	}{
		"real node here":     {"v1.37.2", "containerd://2.4.2+unknown", true},
		"containerd 2.1":     {"v1.36.0", "containerd://2.1.0", true},
		"containerd 2.0":     {"v1.36.0", "containerd://2.0.5", false},
		"containerd 1.7":     {"v1.37.0", "containerd://1.7.27", false},
		"cri-o":              {"v1.35.1", "cri-o://1.31.2", true},
		"kubelet 1.34":       {"v1.34.3", "containerd://2.4.2", false},
		"kwok":               {"fake", "", false},
		"unknown runtime":    {"v1.37.0", "docker://28.0.0", false},
		"garbage":            {"v1", "containerd://x.y", false},
		"eks-style versions": {"v1.36.2-eks-1234", "containerd://2.2.1-1.amzn2023", true},
	} {
		got := supportsImageVolumes(corev1.NodeSystemInfo{KubeletVersion: tc.kubelet, ContainerRuntimeVersion: tc.runtime})
		if got != tc.want {
			t.Errorf("%s: supportsImageVolumes(%s, %s) = %v", name, tc.kubelet, tc.runtime, got)
		}
	}
}

func TestArtifactsNeedImageVolumeNodesUnderAuto(t *testing.T) {
	capable := node("a", ready)
	capable.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "containerd://2.4.2"}
	trimmedCapable, _ := trimNode(capable)
	trimmedOld, _ := trimNode(node("b", ready))
	for name, tc := range map[string]struct {
		spec     config.Spec
		node     any
		eligible bool
	}{
		"images, old node":           {spec: config.Spec{Images: []string{"nginx"}}, node: trimmedOld, eligible: true},
		"artifacts, old node":        {spec: config.Spec{Artifacts: []string{"ghcr.io/m:1"}}, node: trimmedOld, eligible: false},
		"artifacts, capable node":    {spec: config.Spec{Artifacts: []string{"ghcr.io/m:1"}}, node: trimmedCapable, eligible: true},
		"artifacts forced, old node": {spec: config.Spec{Artifacts: []string{"ghcr.io/m:1"}, Rollout: config.Rollout{Method: config.MethodImageVolume}}, node: trimmedOld, eligible: true},
	} {
		sel := newSelection(&tc.spec)
		sel.tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		if got := sel.eligible(tc.node.(*nodeRecord)); got != tc.eligible {
			t.Errorf("%s: eligible = %v, want %v", name, got, tc.eligible)
		}
	}
}
