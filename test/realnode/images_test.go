package realnode

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/images"
)

// Repositories of the test registry the tests pull. Every repository needs the test
// user's password: the registry has no anonymous access at all.
const (
	appRepo     = "private/app"     // runnable (the pause program) with a layer of its own
	taskRepo    = "private/task"    // the same for the task API, so its pull is a fresh one
	lockedRepo  = "private/locked"  // the same, only ever asked for with a wrong password
	scratchRepo = "private/scratch" // one file, no shell, nothing to run
	largeRepo   = "private/large"   // 200 MiB of incompressible layers
	foreignRepo = "private/foreign" // published for another architecture only
	missingRepo = "private/missing" // never pushed
	modelRepo   = "private/model"   // an OCI artifact of 128 MiB with a config of its own type
	volumeRepo  = "private/volume"  // runnable, prewarmed through an image volume
	gateRepo    = "private/gate"    // runnable, prewarmed behind the startup taint, removed and prewarmed again
)

func ref(repo string) string { return kube.Registry.Host + "/" + repo + ":v1" }

// pushTestImages builds and pushes every test image once per package run.
func pushTestImages(ctx context.Context) error {
	app, err := runnable(ctx, 1)
	if err != nil {
		return err
	}
	task, err := runnable(ctx, 2)
	if err != nil {
		return err
	}
	locked, err := runnable(ctx, 4)
	if err != nil {
		return err
	}
	model, err := images.Artifact(128, 5, images.ArtifactModelConfig)
	if err != nil {
		return err
	}
	volume, err := runnable(ctx, 6)
	if err != nil {
		return err
	}
	gate, err := runnable(ctx, 7)
	if err != nil {
		return err
	}
	scratch, err := images.Scratch()
	if err != nil {
		return err
	}
	large, err := images.Large(images.DefaultLargeMiB, 3)
	if err != nil {
		return err
	}
	foreign, err := images.ForeignArch()
	if err != nil {
		return err
	}
	for repo, content := range map[string]remote.Taggable{appRepo: app, taskRepo: task, lockedRepo: locked, modelRepo: model, volumeRepo: volume, gateRepo: gate, scratchRepo: scratch, largeRepo: large, foreignRepo: foreign} {
		if err := kube.Registry.Push(ctx, ref(repo), content); err != nil {
			return fmt.Errorf("push %s: %w", repo, err)
		}
	}
	return nil
}

// runnable is the pause image plus one random 1 MiB layer of its own (seeded), so that
// a pull of it must fetch a blob that no other image on the node has: the registry's
// log then shows whether the pull was authenticated, or whether a later pod pulled at all.
func runnable(ctx context.Context, seed uint64) (v1.Image, error) {
	pause, err := images.Pause(ctx, nil)
	if err != nil {
		return nil, err
	}
	extra, err := images.Large(1, seed)
	if err != nil {
		return nil, err
	}
	layers, err := extra.Layers()
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(pause, layers...)
}

// requestsFor returns the registry requests since t for repo's manifests and blobs.
func requestsFor(since time.Time, repo string) (manifests, blobs []cluster.RegistryRequest, err error) {
	reqs, err := kube.Registry.RequestsSince(since, "/v2/"+repo+"/")
	for _, r := range reqs {
		switch {
		case strings.Contains(r.Path, "/manifests/"):
			manifests = append(manifests, r)
		case strings.Contains(r.Path, "/blobs/"):
			blobs = append(blobs, r)
		}
	}
	return manifests, blobs, err
}
