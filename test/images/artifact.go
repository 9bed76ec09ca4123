package images

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of the model artifact (vendor types of this project).
const (
	// ModelArtifactType is the manifest's artifactType, and the config media type
	// of the ArtifactModelConfig form.
	ModelArtifactType = "application/vnd.image-prewarm.model.config.v1+json"
	// ModelLayerType is the layer media type of the ArtifactModelConfig form. Its
	// blobs are tar archives, as the name says.
	ModelLayerType = "application/vnd.image-prewarm.model.layer.v1.tar"
)

// ArtifactForm chooses how Artifact describes its config and layers. The choice
// decides whether containerd 2.x can mount the artifact as a Kubernetes image
// volume: its unpacker (core/unpack) only unpacks a manifest whose config is an
// image config (or a type configured in its transfer service's unpack_config) and
// only treats tar, tar+gzip and tar+zstd media types as layers; the image-volume
// mount then reads rootfs.diff_ids from the config and matches the config's
// platform against the pod's. This follows containerd's source (see
// containerd/containerd#11907, still open for artifacts with their own config); it
// was not yet checked on the real node.
type ArtifactForm int

const (
	// ArtifactImageConfig is the form containerd 2.x can mount: artifactType names
	// the model, but the config is an OCI image config (host platform,
	// rootfs.diff_ids) and the layers are plain OCI tar layers.
	ArtifactImageConfig ArtifactForm = iota
	// ArtifactModelConfig is the artifact by the book: the config has the
	// ModelArtifactType media type and the layers ModelLayerType. Registries
	// store it; containerd 2.x with a default configuration pulls it but
	// is expected not to unpack it, so an image volume of it fails.
	ArtifactModelConfig
)

// modelConfig is the config blob of the ArtifactModelConfig form.
type modelConfig struct {
	Description string   `json:"description"`
	Files       []string `json:"files"`
}

// Artifact is an OCI artifact of sizeMiB of random data (seeded like Large), for the
// image-volume path of the prewarm: model weights are artifacts, not images. Each
// layer is a tar archive holding one file, model-<i>.bin, named in the layer's
// org.opencontainers.image.title annotation as ORAS does.
func Artifact(sizeMiB int, seed uint64, form ArtifactForm) (v1.Image, error) {
	layerType := types.OCIUncompressedLayer
	if form == ArtifactModelConfig {
		layerType = ModelLayerType
	}
	name := func(i int) string { return fmt.Sprintf("model-%d.bin", i) }
	layers, err := randomTarLayers("artifact", sizeMiB, seed, layerType, name)
	if err != nil {
		return nil, err
	}
	config, configType, err := artifactConfig(form, layers, name)
	if err != nil {
		return nil, err
	}
	return newArtifact(config, configType, layers, name)
}

// artifactConfig returns the config blob and its media type for form.
func artifactConfig(form ArtifactForm, layers []v1.Layer, name func(int) string) ([]byte, types.MediaType, error) {
	if form == ArtifactModelConfig {
		cfg := modelConfig{Description: "image-prewarm test model: random data"}
		for i := range layers {
			cfg.Files = append(cfg.Files, name(i))
		}
		raw, err := json.Marshal(cfg)
		return raw, ModelArtifactType, err
	}
	p := HostPlatform()
	cfg := v1.ConfigFile{
		Architecture: p.Architecture, OS: p.OS, Created: v1.Time{Time: epoch},
		RootFS: v1.RootFS{Type: "layers"},
	}
	for _, l := range layers {
		diffID, err := l.DiffID()
		if err != nil {
			return nil, "", fmt.Errorf("artifact config: %w", err)
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
	}
	raw, err := json.Marshal(cfg)
	return raw, types.OCIConfigJSON, err
}

// artifact is a partial.CompressedImageCore over a manifest written here, because
// go-containerregistry's mutate package has no artifactType and leaves a non-image
// config alone.
type artifact struct {
	config, manifest []byte
	layers           map[v1.Hash]v1.Layer
}

func newArtifact(config []byte, configType types.MediaType, layers []v1.Layer, name func(int) string) (v1.Image, error) {
	cfgDigest, cfgSize, err := v1.SHA256(bytes.NewReader(config))
	if err != nil {
		return nil, fmt.Errorf("artifact config: %w", err)
	}
	m := v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: ModelArtifactType,
		Config: v1.Descriptor{MediaType: configType, Digest: cfgDigest, Size: cfgSize},
	}
	a := &artifact{config: config, layers: map[v1.Hash]v1.Layer{}}
	for i, l := range layers {
		desc, err := partial.Descriptor(l)
		if err != nil {
			return nil, fmt.Errorf("artifact layer %d: %w", i, err)
		}
		desc.Annotations = map[string]string{"org.opencontainers.image.title": name(i)}
		m.Layers = append(m.Layers, *desc)
		a.layers[desc.Digest] = l
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("artifact manifest: %w", err)
	}
	return partial.CompressedToImage(a)
}

// RawConfigFile returns the config blob as written.
func (a *artifact) RawConfigFile() ([]byte, error) { return a.config, nil }

// MediaType is the OCI image manifest type, which artifacts use too.
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// RawManifest returns the manifest as written.
func (a *artifact) RawManifest() ([]byte, error) { return a.manifest, nil }

// LayerByDigest returns the layer with digest h.
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	l, ok := a.layers[h]
	if !ok {
		return nil, fmt.Errorf("artifact has no layer %s", h)
	}
	return l, nil
}
