package e2e

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// rollout.method on kwok nodes, which report no kubelet or runtime version: imageVolume
// renders image volumes and no init containers; auto falls back to init containers;
// artifacts under auto leave out the nodes that cannot mount them.
func TestPullMethodsOnNodesWithoutImageVolumes(t *testing.T) {
	e := newEnv(t)
	e.nodes("n", 3)
	e.startController()
	images := "images: [nginx:1.27, registry.k8s.io/pause:3.10]\nnodeSelector: {e2e: " + e.ns + "}\n"
	e.applySpec("volumes", images+"rollout: {method: imageVolume}\n")
	e.applySpec("auto", images+"rollout: {maxConcurrentNodes: 3}\n")
	e.applySpec("artifacts", fmt.Sprintf("artifacts: [ghcr.io/acme/model:1]\nnodeSelector: {e2e: %s}\n", e.ns))
	for _, spec := range []string{"volumes", "auto"} {
		if st := e.waitStatus(spec, spec+" succeeded", phaseIs(status.PhaseSucceeded)); st.Counts["Succeeded"] != 3 {
			t.Fatalf("%s: counts %v", spec, st.Counts)
		}
	}
	for _, job := range e.createdJobs() {
		pod := job.Spec.Template.Spec
		volumes := 0
		for _, v := range pod.Volumes {
			if v.Image != nil {
				volumes++
			}
		}
		switch spec := job.Labels[jobs.LabelSpec]; spec {
		case "volumes":
			if volumes != 2 || len(pod.InitContainers) != 0 {
				t.Errorf("imageVolume Job %s: %d image volumes, %d init containers", job.Name, volumes, len(pod.InitContainers))
			}
		case "auto":
			if volumes != 0 || len(pod.InitContainers) != 3 {
				t.Errorf("auto on nodes without image volumes must fall back: Job %s has %d image volumes, %d init containers", job.Name, volumes, len(pod.InitContainers))
			}
		default:
			t.Errorf("Job %s of spec %q: artifacts must not target nodes that cannot mount them", job.Name, spec)
		}
	}
	if st := e.waitStatus("artifacts", "artifacts run recorded", func(s *status.Status) bool { return s.Phase != "" }); st.Total != 0 {
		t.Fatalf("artifacts spec targets %d nodes that cannot mount image volumes", st.Total)
	}
	list, err := kube.Client.BatchV1().Jobs(e.ns).List(t.Context(), metav1.ListOptions{LabelSelector: jobs.LabelSpec + "=artifacts"})
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("artifacts spec: %d Jobs (%v), want none", len(list.Items), err)
	}
}
