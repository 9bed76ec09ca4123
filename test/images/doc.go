// Package images is the images room of the test harness: it builds the project's own
// image and the test images as OCI images without a Docker engine, and pushes them to
// the test registry. go-containerregistry assembles the manifests, configs and layers;
// the binaries come from `go build`, cross-compiled for each platform.
//
// Every image is reproducible: file timestamps, config dates and random content are
// fixed (random data comes from a seeded PRNG), so the same inputs give the same
// digest. Every image carries its platform in the config, because containerd refuses
// an image whose config does not name one.
//
// The images:
//
//   - Project: the image-prewarm image (controller + prewarm-noop), linux/amd64 and
//     linux/arm64, the same layout and config as the repository's Dockerfile.
//   - Scratch: one small file and nothing else (no shell, no executable): a prewarm
//     target that only our copied-in prewarm-noop can run.
//   - Large: incompressible layers, so a pull moves every byte.
//   - ForeignArch: published only for an architecture the host is not.
//   - Pause: containerd's sandbox image, a static program that waits for a signal.
//   - Artifact: an OCI artifact (model-like data) for Kubernetes image volumes.
package images
