package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the time stamped on every file, config and history entry, so that a
// digest depends on content only (as SOURCE_DATE_EPOCH=0 would make it).
var epoch = time.Unix(0, 0).UTC()

// scratchEnv and scratchWorkDir are what BuildKit puts in the config of a
// `FROM scratch` stage; the project image carries them too so that it matches an
// image built from the Dockerfile.
var (
	scratchEnv     = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	scratchWorkDir = "/"
)

// HostPlatform is linux on the architecture this process runs on: the platform of
// the real node's containerd.
func HostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// file is one regular file of a layer.
type file struct {
	// Path is absolute, e.g. /image-prewarm.
	Path string
	Mode int64
	Data []byte
}

// filesLayer returns a gzip layer holding files, owned by root, stamped with epoch,
// with a directory entry (0755) for every parent other than the root.
func filesLayer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range parentDirs(files) {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", dir, err)
		}
	}
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"),
			Mode: f.Mode, Size: int64(len(f.Data)), ModTime: epoch,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	layer, err := newGzipLayer(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return layer, nil
}

// parentDirs lists the directories (without the leading slash) that hold files,
// parents first.
func parentDirs(files []file) []string {
	seen := map[string]bool{}
	for _, f := range files {
		for dir := path.Dir(strings.TrimPrefix(path.Clean(f.Path), "/")); dir != "."; dir = path.Dir(dir) {
			seen[dir] = true
		}
	}
	dirs := make([]string, 0, len(seen))
	for dir := range seen {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	return dirs
}

// newImage returns an OCI image for platform p with cfg and one history entry per
// layer. The platform goes into the config, where containerd looks for it.
func newImage(p v1.Platform, cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	base, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: p.Architecture, OS: p.OS, Variant: p.Variant,
		Created: v1.Time{Time: epoch},
		Config:  cfg,
		RootFS:  v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l, History: v1.History{
			Created: v1.Time{Time: epoch}, CreatedBy: "image-prewarm test/images",
		}}
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	return img, nil
}

// indexOf returns an OCI image index holding imgs, each described with the platform
// of its config, so that a client picks its platform without reading the configs.
func indexOf(imgs ...v1.Image) (v1.ImageIndex, error) {
	adds := make([]mutate.IndexAddendum, len(imgs))
	for i, img := range imgs {
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("config of image %d: %w", i, err)
		}
		p := cfg.Platform()
		if p == nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("image %d has no platform in its config", i)
		}
		adds[i] = mutate.IndexAddendum{Add: plainImage{img}, Descriptor: v1.Descriptor{Platform: p}}
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx, adds...), nil
}

// plainImage keeps go-containerregistry from writing the config media type as the
// artifactType of an image's index entry: an image is not an artifact, and the
// index then reads like one BuildKit writes.
type plainImage struct{ v1.Image }

// ArtifactType is empty: the descriptor carries none.
func (plainImage) ArtifactType() (string, error) { return "", nil }

// repoRoot is the module root, found from this file's location like
// test/cluster.EnsureBinaries finds build.sh.
func repoRoot() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the repository from the images package")
	}
	return filepath.Join(filepath.Dir(self), "..", ".."), nil
}

// goBuild cross-compiles pkg (relative to the repository, e.g. ./cmd/prewarm-noop)
// for platform p as a static, CGO-free binary and returns its bytes. ldflags is
// passed as-is; compiler output goes to log.
func goBuild(ctx context.Context, pkg string, p v1.Platform, ldflags string, log io.Writer) ([]byte, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "image-prewarm-build-")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkg, err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, path.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, log, log
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for %s: %w", pkg, p, err)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkg, err)
	}
	return bin, nil
}
