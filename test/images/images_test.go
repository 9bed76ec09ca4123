package images

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// imageCase is one test image and what it must look like.
type imageCase struct {
	build       func(t *testing.T) v1.Image
	platform    v1.Platform
	files       []string // Entry.String() of every entry
	layerType   types.MediaType
	layers      int
	entrypoint  []string
	user        string
	streamed    bool // stream layers: validated without gunzip
	minLayerMiB int64
}

func imageCases() map[string]imageCase {
	return map[string]imageCase{
		"scratch": {
			build: must(Scratch), platform: HostPlatform(), layerType: types.OCILayer, layers: 1,
			files: []string{"/hello.txt -rw-r--r-- 0:0"},
		},
		"foreign arch": {
			build:    func(t *testing.T) v1.Image { return onlyImage(t, must(ForeignArch)(t)) },
			platform: ForeignPlatform(), layerType: types.OCILayer, layers: 1,
			files: []string{"/hello.txt -rw-r--r-- 0:0"},
		},
		"pause": {
			build:    func(t *testing.T) v1.Image { return need(Pause(context.Background(), nil))(t) },
			platform: HostPlatform(), layerType: types.OCILayer, layers: 1,
			files: []string{"/pause -rwxr-xr-x 0:0"}, entrypoint: []string{"/pause"}, user: "65535:65535",
		},
		"large": {
			build:    func(t *testing.T) v1.Image { return need(Large(6, 1))(t) },
			platform: HostPlatform(), layerType: types.OCIUncompressedLayer, layers: 4, streamed: true,
			files: []string{
				"/large-0.bin -rw-r--r-- 0:0", "/large-1.bin -rw-r--r-- 0:0",
				"/large-2.bin -rw-r--r-- 0:0", "/large-3.bin -rw-r--r-- 0:0",
			},
			minLayerMiB: 1,
		},
		"artifact with image config": {
			build:    func(t *testing.T) v1.Image { return need(Artifact(2, 1, ArtifactImageConfig))(t) },
			platform: HostPlatform(), layerType: types.OCIUncompressedLayer, layers: 2, streamed: true,
			files:       []string{"/model-0.bin -rw-r--r-- 0:0", "/model-1.bin -rw-r--r-- 0:0"},
			minLayerMiB: 1,
		},
	}
}

func TestImages(t *testing.T) {
	for name, tc := range imageCases() {
		t.Run(name, func(t *testing.T) {
			img := tc.build(t)
			if err := validate.Image(img, validateOpts(tc.streamed)...); err != nil {
				t.Fatalf("invalid image: %v", err)
			}
			checkManifest(t, img, tc)
			checkConfig(t, img, tc)
			entries, err := Contents(img)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.String())
			}
			if !slices.Equal(got, tc.files) {
				t.Errorf("files = %q, want %q", got, tc.files)
			}
		})
	}
}

func validateOpts(streamed bool) []validate.Option {
	if streamed { // validate gunzips every layer; ours are plain tar
		return []validate.Option{validate.Fast}
	}
	return nil
}

func checkManifest(t *testing.T, img v1.Image, tc imageCase) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("media types %s, config %s: want OCI", m.MediaType, m.Config.MediaType)
	}
	if len(m.Layers) != tc.layers {
		t.Fatalf("%d layers, want %d", len(m.Layers), tc.layers)
	}
	for i, l := range m.Layers {
		if l.MediaType != tc.layerType {
			t.Errorf("layer %d: media type %s, want %s", i, l.MediaType, tc.layerType)
		}
		if l.Size < tc.minLayerMiB*mib {
			t.Errorf("layer %d: %d bytes, want at least %d MiB", i, l.Size, tc.minLayerMiB)
		}
	}
}

func checkConfig(t *testing.T, img v1.Image, tc imageCase) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Platform(); p == nil || !p.Equals(tc.platform) {
		t.Errorf("config platform %v, want %v", p, tc.platform)
	}
	if !slices.Equal(cfg.Config.Entrypoint, tc.entrypoint) || len(cfg.Config.Cmd) > 0 {
		t.Errorf("entrypoint %q cmd %q, want %q and no cmd", cfg.Config.Entrypoint, cfg.Config.Cmd, tc.entrypoint)
	}
	if cfg.Config.User != tc.user {
		t.Errorf("user %q, want %q", cfg.Config.User, tc.user)
	}
	if !cfg.Created.Equal(epoch) {
		t.Errorf("created %v, want %v (reproducible)", cfg.Created, epoch)
	}
}

func TestForeignArchIndex(t *testing.T) {
	idx := must(ForeignArch)(t)
	if err := validate.Index(idx); err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex || len(m.Manifests) != 1 {
		t.Fatalf("index %s with %d manifests, want one OCI manifest", m.MediaType, len(m.Manifests))
	}
	if p := m.Manifests[0].Platform; p == nil || !p.Equals(ForeignPlatform()) || p.Equals(HostPlatform()) {
		t.Errorf("index platform %v: want %v, not the host's", p, ForeignPlatform())
	}
}

func TestLargeLayout(t *testing.T) {
	cases := map[string]struct {
		sizeMiB   int
		layerMiB  []int64
		wantError bool
	}{
		"one MiB":        {sizeMiB: 1, layerMiB: []int64{1}},
		"three MiB":      {sizeMiB: 3, layerMiB: []int64{1, 1, 1}},
		"four layers":    {sizeMiB: 4, layerMiB: []int64{1, 1, 1, 1}},
		"remainder last": {sizeMiB: 10, layerMiB: []int64{2, 2, 2, 4}},
		"zero":           {sizeMiB: 0, wantError: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			img, err := Large(tc.sizeMiB, 1)
			if tc.wantError {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, l := range m.Layers {
				got = append(got, (l.Size-3*512)/mib) // header block, data, 2 end blocks
			}
			if !slices.Equal(got, tc.layerMiB) {
				t.Errorf("layer MiB %v, want %v", got, tc.layerMiB)
			}
		})
	}
}

func TestLargeIsIncompressible(t *testing.T) {
	img := need(Large(4, 1))(t)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var compressed countWriter
	zw, _ := gzip.NewWriterLevel(&compressed, gzip.BestCompression)
	n, err := io.Copy(zw, rc)
	if err != nil || zw.Close() != nil {
		t.Fatal(err)
	}
	if float64(compressed) < 0.95*float64(n) {
		t.Errorf("gzip shrinks the layer from %d to %d bytes: want ≥ 95%%", n, compressed)
	}
}

func TestStreamLayerDigests(t *testing.T) {
	img := need(Large(2, 7))(t)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		h, size, err := v1.SHA256(rc)
		rc.Close()
		want, _ := l.Digest()
		wantSize, _ := l.Size()
		if err != nil || h != want || size != wantSize {
			t.Errorf("layer %d: read %s (%d bytes), want %s (%d): %v", i, h, size, want, wantSize, err)
		}
	}
}

func TestImagesAreReproducible(t *testing.T) {
	cases := map[string]func() (v1.Image, error){
		"scratch":         Scratch,
		"large":           func() (v1.Image, error) { return Large(4, 1) },
		"artifact":        func() (v1.Image, error) { return Artifact(2, 1, ArtifactImageConfig) },
		"artifact (bare)": func() (v1.Image, error) { return Artifact(2, 1, ArtifactModelConfig) },
		"pause":           func() (v1.Image, error) { return Pause(context.Background(), nil) },
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			first, second := digest(t, need(build())(t)), digest(t, need(build())(t))
			if first != second {
				t.Errorf("two builds: %s and %s", first, second)
			}
		})
	}
	if digest(t, need(Large(4, 1))(t)) == digest(t, need(Large(4, 2))(t)) {
		t.Error("Large with seeds 1 and 2 gave the same image")
	}
}

func TestArtifactForms(t *testing.T) {
	cases := map[string]struct {
		form                  ArtifactForm
		configType, layerType types.MediaType
	}{
		"image config": {ArtifactImageConfig, types.OCIConfigJSON, types.OCIUncompressedLayer},
		"model config": {ArtifactModelConfig, ModelArtifactType, ModelLayerType},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := need(Artifact(3, 1, tc.form))(t).Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.ArtifactType != ModelArtifactType || m.Config.MediaType != tc.configType {
				t.Errorf("artifactType %q config %q, want %q and %q", m.ArtifactType, m.Config.MediaType, ModelArtifactType, tc.configType)
			}
			for i, l := range m.Layers {
				if l.MediaType != tc.layerType || l.Annotations["org.opencontainers.image.title"] == "" {
					t.Errorf("layer %d: %s %v, want %s with a title", i, l.MediaType, l.Annotations, tc.layerType)
				}
			}
		})
	}
}

// TestPauseWaitsForSIGTERM runs the pause binary from the image and stops it as
// containerd stops a sandbox.
func TestPauseWaitsForSIGTERM(t *testing.T) {
	bin := need(ReadFile(need(Pause(context.Background(), nil))(t), "/pause"))(t)
	file := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(file, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(file)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("pause exited before a signal: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("pause after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("pause still running 5 s after SIGTERM")
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	return need(img.Digest())(t)
}

func onlyImage(t *testing.T, idx v1.ImageIndex) v1.Image {
	t.Helper()
	m := need(idx.IndexManifest())(t)
	if len(m.Manifests) != 1 {
		t.Fatalf("%d manifests, want 1", len(m.Manifests))
	}
	return need(idx.Image(m.Manifests[0].Digest))(t)
}

// must turns a builder into a test helper that fails the test on error.
func must[T any](build func() (T, error)) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		return need(build())(t)
	}
}

// need returns a function that returns v, or fails the test if err is set:
// need(Large(4, 1))(t).
func need[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
