package controller

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

// A node seen holding the images that then loses one is prewarmed again; its label
// goes meanwhile. A node that never listed them (kwok) is never judged.
func TestKeepWarmPrewarmsANodeThatLostAnImage(t *testing.T) {
	spec := "images: [nginx:1.27]\nrollout: {nodeLabel: true}\n"
	client := startFake(t, node("held", ready, images("docker.io/library/nginx:1.27")), specConfigMap("ml", spec))
	key := jobs.NodeLabelKey("ml")
	eventually(t, "the skipped node labelled", func() bool {
		n, err := client.CoreV1().Nodes().Get(t.Context(), "held", metav1.GetOptions{})
		return err == nil && n.Labels[key] == jobs.NodeLabelReady
	})
	if got := jobNodes(t, client); len(got) != 0 {
		t.Fatalf("Jobs on %v for a node that holds the images", got)
	}
	n, _ := client.CoreV1().Nodes().Get(t.Context(), "held", metav1.GetOptions{})
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"docker.io/library/redis:7"}}} // GC took nginx
	if _, err := client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a Job for the node again, and no label", func() bool {
		n, err := client.CoreV1().Nodes().Get(t.Context(), "held", metav1.GetOptions{})
		return err == nil && n.Labels[key] == "" && slices.Equal(jobNodes(t, client), []string{"held"})
	})
}
