package jobs

import (
	"math"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names and paths inside the pull pod.
const (
	// NoopDir is where the install container copies prewarm-noop and where
	// every pull container runs it from.
	NoopDir = "/opt/image-prewarm"
	// NoopBinary is the path of prewarm-noop in the image-prewarm image.
	NoopBinary = "/prewarm-noop"
	// ContainerInstall copies prewarm-noop into the shared volume.
	ContainerInstall = "install-noop"
	// ContainerDone is the main container; it only lets the pod complete
	// after every pull init container succeeded.
	ContainerDone = "done"
	// pullPrefix starts the name of the init container that pulls image i.
	pullPrefix = "pull-"
	noopVolume = "noop"
)

// NoopArchitectures are the linux architectures the image-prewarm image is built for
// (make image, the Dockerfile's platforms): a pull pod runs prewarm-noop, so nodes of
// any other platform cannot be prewarmed with init containers.
var NoopArchitectures = []string{"amd64", "arm64"}

const (
	// terminationGrace is short: the containers only run a no-op, and a
	// cancelled run should free its nodes at once.
	terminationGrace int64 = 1
	// nonRootID is the conventional "nonroot" user of distroless images. The
	// target images may default to root, which Pod Security "restricted"
	// forbids, so the pod sets the user itself.
	nonRootID int64 = 65532
)

// ImagePull is one image to pull and the policy to pull it with.
type ImagePull struct {
	Image      string
	PullPolicy corev1.PullPolicy
}

// JobParams are the inputs of BuildJob.
type JobParams struct {
	Ref         RunRef
	Node        string
	Images      []ImagePull
	Tolerations []corev1.Toleration
	// PullSecret is the Secret name; empty when the run has no credentials,
	// then the pod has no imagePullSecrets and no LabelPullSecret.
	PullSecret string
	// Held says Images leaves out images the run holds back (AnnotationHeld).
	Held bool
	// NoopImage is the image-prewarm image, which holds NoopBinary.
	NoopImage      string
	NoopPullPolicy corev1.PullPolicy
	// PullTimeout becomes activeDeadlineSeconds, rounded up to a second;
	// zero or negative means no deadline.
	PullTimeout time.Duration
	// Retries becomes backoffLimit.
	Retries int32
	// TTLAfterFinished becomes ttlSecondsAfterFinished, rounded up to a second and
	// capped at the int32 range; zero or negative means none. The controller deletes
	// each finished Job itself once its outcome is recorded, so this is only a
	// backstop for Jobs no controller is left to delete.
	TTLAfterFinished time.Duration
	// Method: empty means MethodInitContainers.
	Method Method
}

// BuildJob builds the Job that pulls p.Images onto p.Node. It never carries
// credentials: at most the name of the run's pull Secret.
func BuildJob(p JobParams) *batchv1.Job {
	annotations := map[string]string{AnnotationNode: p.Node}
	if p.Held {
		annotations[AnnotationHeld] = "true"
	}
	podLabels := Labels(p.Ref)
	if p.PullSecret != "" {
		podLabels[LabelPullSecret] = p.PullSecret
	}
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        JobName(p.Ref.RunID, p.Node),
			Namespace:   p.Ref.Namespace,
			Labels:      Labels(p.Ref),
			Annotations: annotations,
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            new(p.Retries),
			ActiveDeadlineSeconds:   activeDeadline(p.PullTimeout),
			TTLSecondsAfterFinished: ttlSeconds(p.TTLAfterFinished),
			Completions:             new(int32(1)),
			Parallelism:             new(int32(1)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: map[string]string{AnnotationNode: p.Node},
				},
				Spec: buildPodSpec(p),
			},
		},
	}
}

// activeDeadline converts the pull timeout, rounding up so that a sub-second
// timeout still yields a valid (positive) deadline.
func activeDeadline(timeout time.Duration) *int64 {
	if timeout <= 0 {
		return nil
	}
	secs := int64((timeout + time.Second - 1) / time.Second)
	return &secs
}

func ttlSeconds(ttl time.Duration) *int32 {
	if ttl <= 0 {
		return nil
	}
	secs := min(int64((ttl+time.Second-1)/time.Second), math.MaxInt32)
	return new(int32(secs))
}

func buildPodSpec(p JobParams) corev1.PodSpec {
	spec := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		Affinity:                      nodeAffinity(p.Node),
		Tolerations:                   append([]corev1.Toleration(nil), p.Tolerations...),
		AutomountServiceAccountToken:  new(false),
		EnableServiceLinks:            new(false),
		TerminationGracePeriodSeconds: new(terminationGrace),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   new(true),
			RunAsUser:      new(nonRootID),
			RunAsGroup:     new(nonRootID),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Volumes: []corev1.Volume{{
			Name: noopVolume,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
				// prewarm-noop is a few MiB; the limit only guards the node.
				SizeLimit: new(resource.MustParse("16Mi")),
			}},
		}},
		InitContainers: make([]corev1.Container, 0, 1+len(p.Images)),
		Containers: []corev1.Container{
			container(ContainerDone, p.NoopImage, p.NoopPullPolicy, []string{NoopBinary}, nil),
		},
	}
	if p.PullSecret != "" {
		spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: p.PullSecret}}
	}
	install := &corev1.VolumeMount{Name: noopVolume, MountPath: NoopDir}
	spec.InitContainers = append(spec.InitContainers, container(ContainerInstall, p.NoopImage,
		p.NoopPullPolicy, []string{NoopBinary, "install", NoopDir}, install))
	run := &corev1.VolumeMount{Name: noopVolume, MountPath: NoopDir, ReadOnly: true}
	for i, img := range p.Images {
		// Index-based names: image references can be far longer than the
		// 63 characters a container name allows.
		spec.InitContainers = append(spec.InitContainers, container(PullContainerName(i), img.Image,
			img.PullPolicy, []string{NoopDir + NoopBinary}, run))
	}
	if p.Method == MethodImageVolume {
		return withImageVolumes(spec, p.Images)
	}
	return spec
}

// nodeAffinity pins the pod to node by metadata.name. Unlike a nodeSelector on
// kubernetes.io/hostname it works for any node name (the label may differ from
// the name or be truncated), and unlike spec.nodeName it keeps the scheduler,
// so taints, resources and Pod Security are checked as for any pod.
func nodeAffinity(node string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{
					Key:      "metadata.name",
					Operator: corev1.NodeSelectorOpIn,
					Values:   []string{node},
				}},
			}},
		},
	}}
}

// container builds one container of the pull pod, compliant with Pod Security
// "restricted", and with small resources so that prewarm pods never crowd out
// real workloads when they are scheduled.
func container(name, image string, policy corev1.PullPolicy, command []string, mount *corev1.VolumeMount) corev1.Container {
	c := corev1.Container{
		Name:            name,
		Image:           image,
		ImagePullPolicy: policy,
		Command:         command,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("1m"),
				corev1.ResourceMemory: resource.MustParse("8Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: new(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			ReadOnlyRootFilesystem:   new(true),
		},
	}
	if mount != nil {
		c.VolumeMounts = []corev1.VolumeMount{*mount}
	}
	return c
}

// PullContainerName is the name of the init container that pulls image i of
// JobParams.Images.
func PullContainerName(i int) string {
	return pullPrefix + strconv.Itoa(i)
}

// PullContainerIndex maps an init container name back to the index of its
// image in JobParams.Images; ok is false for any other name. The controller
// uses it to turn init container timestamps into per-image pull times.
func PullContainerIndex(name string) (i int, ok bool) {
	digits, found := strings.CutPrefix(name, pullPrefix)
	if !found {
		return 0, false
	}
	i, err := strconv.Atoi(digits)
	// Only the exact form PullContainerName produces: no sign, no leading zero.
	if err != nil || i < 0 || PullContainerName(i) != name {
		return 0, false
	}
	return i, true
}

// NodeOf returns the node a Job pulls onto, from AnnotationNode.
func NodeOf(job *batchv1.Job) string {
	if job == nil {
		return ""
	}
	return job.Annotations[AnnotationNode]
}

// Finished reports whether the Job has ended, successfully or not.
func Finished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
