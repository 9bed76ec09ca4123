package images

import (
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ProjectPlatforms are the platforms `make image` publishes.
var ProjectPlatforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64"},
}

// The project image's layout and config. They mirror the runtime stage of the
// repository's Dockerfile; test/image_test.go checks that the two agree.
const (
	// projectEntrypoint runs the controller.
	projectEntrypoint = "/image-prewarm"
	// projectUser is numeric so that the image needs no /etc/passwd and kubelet can
	// verify runAsNonRoot.
	projectUser = "65532:65532"
	// versionFlag sets the version reported by image_prewarm_build_info.
	versionFlag = "-X github.com/image-prewarm/image-prewarm/pkg/metrics.Version="
)

// projectBinaries are the image's files: built from pkg, stored at path.
var projectBinaries = []struct {
	pkg, path   string
	withVersion bool
}{
	{"./cmd/image-prewarm", projectEntrypoint, true},
	{"./cmd/prewarm-noop", "/prewarm-noop", false},
}

// ProjectOptions configure Project.
type ProjectOptions struct {
	// Version is stamped into the controller binary; empty means "dev", as in the
	// Dockerfile.
	Version string
	// Platforms to build; empty means ProjectPlatforms.
	Platforms []v1.Platform
	// Log receives the compiler's output; nil discards it.
	Log io.Writer
}

// Project builds the image-prewarm image as an OCI image index, one image per
// platform, with the binaries cross-compiled by `go build`. It is what `make image`
// ships and what the real node runs, so that tests run the image users get rather
// than binaries copied beside it. The same sources give the same digest.
func Project(ctx context.Context, opts ProjectOptions) (v1.ImageIndex, error) {
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if len(opts.Platforms) == 0 {
		opts.Platforms = ProjectPlatforms
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	imgs := make([]v1.Image, 0, len(opts.Platforms))
	for _, p := range opts.Platforms {
		img, err := projectImage(ctx, p, opts)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return indexOf(imgs...)
}

// projectImage builds the image of one platform: both binaries in one layer.
func projectImage(ctx context.Context, p v1.Platform, opts ProjectOptions) (v1.Image, error) {
	files := make([]file, 0, len(projectBinaries))
	for _, b := range projectBinaries {
		ldflags := "-s -w"
		if b.withVersion {
			ldflags += " " + versionFlag + opts.Version
		}
		bin, err := goBuild(ctx, b.pkg, p, ldflags, opts.Log)
		if err != nil {
			return nil, err
		}
		files = append(files, file{Path: b.path, Mode: 0o755, Data: bin})
	}
	layer, err := filesLayer(files)
	if err != nil {
		return nil, fmt.Errorf("project image for %s: %w", p, err)
	}
	img, err := newImage(p, v1.Config{
		Entrypoint: []string{projectEntrypoint},
		User:       projectUser,
		Env:        scratchEnv,
		WorkingDir: scratchWorkDir,
	}, layer)
	if err != nil {
		return nil, fmt.Errorf("project image for %s: %w", p, err)
	}
	return img, nil
}
