package realnode

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
)

// Issue 13 on the real node: an OCI artifact (a config of its own media type, not an
// image) of 128 MiB is prewarmed as an image volume with the ephemeral Secret, under
// rollout.method auto; a workload that mounts it starts without a blob request; an
// ordinary image goes the same way with method imageVolume; pull time and size reach
// the metrics and the status from kubelet's Pulled Events.
func TestArtifactAndImagePrewarmedAsImageVolumes(t *testing.T) {
	e := newEnv(t)
	e.basicAuth("registry-robot", cluster.RegistryUser, kube.Registry.Password)
	e.dockerConfigSecret(t, "workload-cred", cluster.RegistryUser, kube.Registry.Password)
	e.startController()
	model := ref(modelRepo)
	since := time.Now()
	e.spec("model", []string{registryEntry("registry-robot")}, nil, "artifacts: ["+model+"]\nrollout: {pullTimeout: 5m}\n")
	st := e.waitStatus("model", "artifact prewarmed", 4*time.Minute, done)
	if st.Phase != status.PhaseSucceeded || st.Results[node.Name].Phase != string(rollout.Succeeded) {
		t.Fatalf("phase %s, results %v", st.Phase, st.Results)
	}
	e.assertAuthenticatedPull(since, modelRepo)
	if method := e.jobMethod(st.RunID); method != jobs.MethodImageVolume {
		t.Fatalf("auto chose %s on a kubelet 1.37 + containerd 2.4 node, want %s", method, jobs.MethodImageVolume)
	}
	st = e.waitStatus("model", "artifact size in status", time.Minute, func(s *status.Status) bool { return s.Sizes[model] > 128<<20 })
	t.Logf("artifact: %d bytes in status; metrics: %s", st.Sizes[model], e.pullMetrics())
	e.eventually("ephemeral Secret reaped", time.Minute, func(context.Context) (bool, error) { return len(e.pullSecrets()) == 0, nil })

	mounted := time.Now()
	e.workloadMounting(t, "uses-model", model, "workload-cred")
	if _, blobs, err := requestsFor(mounted, modelRepo); err != nil || len(blobs) > 0 {
		t.Fatalf("the registry served %d blob requests for the workload (err %v)", len(blobs), err)
	}

	image := ref(volumeRepo)
	e.spec("image", []string{registryEntry("registry-robot")}, []string{image}, "rollout: {pullTimeout: 5m, method: imageVolume}\n")
	st = e.waitStatus("image", "image prewarmed through an image volume", 4*time.Minute, done)
	if st.Phase != status.PhaseSucceeded || e.jobMethod(st.RunID) != jobs.MethodImageVolume {
		t.Fatalf("phase %s, method %s", st.Phase, e.jobMethod(st.RunID))
	}
	e.waitStatus("image", "image size in status", time.Minute, func(s *status.Status) bool { return s.Sizes[image] > 0 })
	if m := e.pullMetrics(); !regexp.MustCompile(`image_prewarm_image_pulled_bytes_total\{registry="[^"]+"\} [1-9]`).MatchString(m) {
		t.Fatalf("no pulled bytes in the metrics:\n%s", m)
	}

	// A rejected password fails an image-volume pull as fast as an init-container one:
	// kubelet shows it on the main container, which waits on its volumes.
	e.basicAuth("wrong", cluster.RegistryUser, "Wrong-"+kube.Registry.Password)
	e.spec("locked", []string{registryEntry("wrong")}, []string{ref(lockedRepo) + "-volume"}, "rollout: {pullTimeout: 30m, method: imageVolume}\n")
	st = e.waitStatus("locked", "rejected password reported", 3*time.Minute, done)
	if r := st.Results[node.Name]; r.Phase != string(rollout.Failed) || !strings.Contains(r.Reason, "401 Unauthorized") {
		t.Fatalf("image volume with a wrong password: %+v, want Failed with the 401", r)
	}
	e.assertNoPassword(kube.Registry.Password)
}

// jobMethod tells from the run's Job which method it used.
func (e *env) jobMethod(runID string) jobs.Method {
	e.t.Helper()
	list := e.jobs.OfRun(runID)
	if len(list) == 0 {
		e.t.Fatalf("no Job of run %s was seen", runID)
	}
	for _, v := range list[0].Spec.Template.Spec.Volumes {
		if v.Image != nil {
			return jobs.MethodImageVolume
		}
	}
	return jobs.MethodInitContainers
}

// pullMetrics returns the controller's pull-time and pulled-bytes series.
func (e *env) pullMetrics() string {
	e.t.Helper()
	resp, err := http.Get(e.metricsURL)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	lines := regexp.MustCompile(`(?m)^image_prewarm_image_(pulled_bytes_total|pull_duration_seconds_(count|sum))\{.*$`).FindAllString(string(raw), -1)
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}

// workloadMounting runs the pause image with the artifact as an image volume, the way
// a model server mounts its weights, and waits until it runs.
func (e *env) workloadMounting(t *testing.T, name, artifact, secret string) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: corev1.PodSpec{
			NodeName: node.Name, AutomountServiceAccountToken: new(false), TerminationGracePeriodSeconds: new(int64(1)),
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: secret}},
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: new(true), RunAsUser: new(int64(65532)), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: artifact, PullPolicy: corev1.PullIfNotPresent}}}},
			Containers: []corev1.Container{{
				Name: "server", Image: kube.NoopImage, Command: []string{"/prewarm-noop"},
				VolumeMounts: []corev1.VolumeMount{{Name: "model", MountPath: "/model", ReadOnly: true}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: new(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			RestartPolicy: corev1.RestartPolicyNever,
		},
	}
	if _, err := kube.Client.CoreV1().Pods(e.ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(name+" started with the artifact mounted", 2*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := kube.Client.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, nil
		}
		s := p.Status.ContainerStatuses[0].State
		return s.Running != nil || s.Terminated != nil && s.Terminated.ExitCode == 0, nil
	})
}
