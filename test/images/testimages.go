package images

import (
	"context"
	"fmt"
	"io"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ScratchFile is the only file of Scratch and ForeignArch.
const ScratchFile = "/hello.txt"

// DefaultLargeMiB is the size of the large image the e2e tests pull: big enough that
// a pull takes measurable time on loopback.
const DefaultLargeMiB = 200

// Scratch is a host-platform image with one small file and nothing else: no shell,
// no executable, no Entrypoint or Cmd. Only a command brought from outside, like
// the prewarm Job's copied-in /opt/image-prewarm/prewarm-noop, can run in it,
// which is the case the noop binary exists for.
func Scratch() (v1.Image, error) {
	return scratchFor(HostPlatform())
}

// scratchFor is Scratch for platform p.
func scratchFor(p v1.Platform) (v1.Image, error) {
	layer, err := filesLayer([]file{{Path: ScratchFile, Mode: 0o644, Data: []byte("hello from image-prewarm\n")}})
	if err != nil {
		return nil, fmt.Errorf("scratch image: %w", err)
	}
	img, err := newImage(p, v1.Config{}, layer)
	if err != nil {
		return nil, fmt.Errorf("scratch image: %w", err)
	}
	return img, nil
}

// ForeignPlatform is an architecture the host is not: arm64 on amd64 hosts, amd64
// elsewhere.
func ForeignPlatform() v1.Platform {
	if runtime.GOARCH == "amd64" {
		return v1.Platform{OS: "linux", Architecture: "arm64"}
	}
	return v1.Platform{OS: "linux", Architecture: "amd64"}
}

// ForeignArch is an index that offers the Scratch content for ForeignPlatform only,
// so that containerd on the host finds no matching manifest and kubelet reports a
// platform mismatch: the error a prewarm of an image built for other nodes meets.
func ForeignArch() (v1.ImageIndex, error) {
	img, err := scratchFor(ForeignPlatform())
	if err != nil {
		return nil, err
	}
	return indexOf(img)
}

// Pause is containerd's sandbox ("pause") image for the real node, which cannot
// download one: test/images/pause built for the host, run as 65535 like the
// upstream image. It needs no network and starts in milliseconds.
func Pause(ctx context.Context, log io.Writer) (v1.Image, error) {
	if log == nil {
		log = io.Discard
	}
	p := HostPlatform()
	bin, err := goBuild(ctx, "./test/images/pause", p, "-s -w", log)
	if err != nil {
		return nil, err
	}
	layer, err := filesLayer([]file{{Path: "/pause", Mode: 0o755, Data: bin}})
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	img, err := newImage(p, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}, layer)
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	return img, nil
}

// Large is a host-platform image of sizeMiB of random data in up to four layers
// (uncompressed tar, one file each, /large-<i>.bin). The data cannot be compressed,
// so a pull transfers and unpacks every byte, and its time is a real measure;
// different seeds give images that share no layer, so one pull never warms another.
// The layers are generated while they are read, never held in memory.
func Large(sizeMiB int, seed uint64) (v1.Image, error) {
	layers, err := randomTarLayers("large", sizeMiB, seed, types.OCIUncompressedLayer,
		func(i int) string { return fmt.Sprintf("large-%d.bin", i) })
	if err != nil {
		return nil, err
	}
	img, err := newImage(HostPlatform(), v1.Config{}, layers...)
	if err != nil {
		return nil, fmt.Errorf("large image: %w", err)
	}
	return img, nil
}
