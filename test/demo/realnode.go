package main

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/images"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

// demoImage is the private image the real node pulls: the pause program plus 100 MiB of
// incompressible layers, so the pull takes a visible moment.
const demoImage = "demo/model-server:v1"

// setupRealNode pushes the demo image to the private registry and stores the
// registry's credentials in the Secret the real-node spec names.
func setupRealNode(ctx context.Context, kube *cluster.Cluster) error {
	pause, err := images.Pause(ctx, nil)
	if err != nil {
		return err
	}
	large, err := images.Large(100, 42)
	if err != nil {
		return err
	}
	layers, err := large.Layers()
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(pause, layers...)
	if err != nil {
		return err
	}
	if err := kube.Registry.Push(ctx, kube.Registry.Host+"/"+demoImage, img); err != nil {
		return err
	}
	if err := prewarmtest.BasicAuth(ctx, kube.Client, namespace, "registry-robot", cluster.RegistryUser, kube.Registry.Password); err != nil {
		return err
	}
	fmt.Printf("▶ real node %s Ready; pushed %s/%s (100 MiB) to the password-protected registry\n",
		kube.RealNodes()[0].Name, kube.Registry.Host, demoImage)
	return nil
}

// realNodeSpec prewarms the private image on the real nodes only.
func realNodeSpec(kube *cluster.Cluster) string {
	return fmt.Sprintf(`registries:
  - server: %q
    credentialsSecret: registry-robot
images:
  - %s/%s
nodeSelector: {%s: "true"}
rollout: {pullTimeout: 10m}
`, kube.Registry.Host, kube.Registry.Host, demoImage, cluster.RealNodeLabel)
}
