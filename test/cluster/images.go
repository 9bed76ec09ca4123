package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/image-prewarm/image-prewarm/test/images"
)

// ProjectRepository is where the cluster pushes the project's own image.
const ProjectRepository = "image-prewarm/image-prewarm"

// prepareImages builds the pause image archive that each node imports, and builds and
// pushes the project's image (both platforms, as `make image` builds it) to the public
// registry as NoopImage: like ghcr.io, anyone may pull it, so prewarm Jobs without
// credentials work and a wrong password fails on the target image, not on ours.
func (c *Cluster) prepareImages(ctx context.Context) error {
	dir := filepath.Join(c.Dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pause, err := images.Pause(ctx, nil)
	if err != nil {
		return fmt.Errorf("build pause image: %w", err)
	}
	tag, err := name.NewTag(SandboxImage)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(filepath.Join(dir, "pause.tar"), tag, pause); err != nil {
		return fmt.Errorf("write pause image: %w", err)
	}
	var buildLog bytes.Buffer
	project, err := images.Project(ctx, images.ProjectOptions{Version: "test", Log: &buildLog})
	if err != nil {
		return fmt.Errorf("build project image: %w\n%s", err, buildLog.String())
	}
	c.NoopImage = c.PublicRegistry.Host + "/" + ProjectRepository + ":test"
	return c.PublicRegistry.Push(ctx, c.NoopImage, project)
}

// Push uploads an image or index to the registry as the test user.
func (r *Registry) Push(ctx context.Context, ref string, content remote.Taggable) error {
	return images.Push(ctx, ref, content, r.Credentials())
}

// Credentials are what images.Push needs to reach the registry (as the test user when private).
func (r *Registry) Credentials() images.Registry {
	creds := images.Registry{Host: r.Host, CAFile: r.CAFile}
	if r.Password != "" {
		creds.Username, creds.Password = RegistryUser, r.Password
	}
	return creds
}

// registryHosts are the host:port names the nodes' containerd trusts: the registry and
// any proxy in front of it.
func (c *Cluster) registryHosts() []string {
	return append([]string{c.Registry.Host, c.PublicRegistry.Host}, c.proxies...)
}
