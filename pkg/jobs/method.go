package jobs

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Method is how a pull pod makes kubelet pull its images.
type Method string

const (
	// MethodInitContainers runs prewarm-noop inside each image as an init container:
	// any kubelet can do it, but only images kubelet can run on the node (platform,
	// an executable filesystem) prewarm.
	MethodInitContainers Method = "initContainers"
	// MethodImageVolume mounts each image as an image volume (KEP-4639) of the one
	// container, which runs prewarm-noop from our own image: nothing in the targets
	// runs, so OCI artifacts (model weights) and images of any platform prewarm.
	MethodImageVolume Method = "imageVolume"
)

// ImagesDir is where the image-volume pull pod mounts image i, at ImagesDir/<i>.
const ImagesDir = "/images"

// ImageVolumeName names the volume of image i; index-based like the pull containers.
func ImageVolumeName(i int) string { return "image-" + strconv.Itoa(i) }

// withImageVolumes turns a pull pod into the image-volume form: no init containers and
// no noop volume; every image is a read-only image volume of the done container, so
// kubelet pulls each (with the pod's pull secrets and the image's pull policy) before
// it starts the container.
func withImageVolumes(spec corev1.PodSpec, images []ImagePull) corev1.PodSpec {
	spec.InitContainers = nil
	spec.Volumes = make([]corev1.Volume, 0, len(images))
	done := &spec.Containers[0]
	done.VolumeMounts = make([]corev1.VolumeMount, 0, len(images))
	for i, img := range images {
		name := ImageVolumeName(i)
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: img.Image, PullPolicy: img.PullPolicy},
		}})
		done.VolumeMounts = append(done.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: ImagesDir + "/" + strconv.Itoa(i), ReadOnly: true})
	}
	return spec
}
