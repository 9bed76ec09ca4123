package realnode

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/test/cluster"
)

// workloadUsesPrewarmedImage: after the ephemeral Secret is gone, a pod whose own
// Secret holds the same credentials starts from the prewarmed image. Kubelet
// (KEP-2535) matches the credentials by a hash of username, password and email, not by
// the Secret's name, and the registry sees no blob request for the pod.
func (e *env) workloadUsesPrewarmedImage(t *testing.T, image string) {
	ctx := t.Context()
	e.dockerConfigSecret(t, "workload-cred", cluster.RegistryUser, kube.Registry.Password)
	since := time.Now()
	pod := e.createWorkload(t, "with-credentials", image, "workload-cred")
	e.eventually("workload Running", 2*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := kube.Client.CoreV1().Pods(e.ns).Get(ctx, pod, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	msg := e.podEvent(ctx, pod, "Pulled")
	if !strings.Contains(msg, "already present on machine and can be accessed by the pod") {
		t.Fatalf("Pulled event %q: the prewarmed image was not reused", msg)
	}
	_, blobs, err := requestsFor(since, appRepo)
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) > 0 {
		t.Fatalf("the registry served %d blob requests for the workload: %+v", len(blobs), blobs)
	}
}

// workloadWithoutCredentialsFails: the image is on the node, but a pod without
// credentials may not use it (KubeletEnsureSecretPulledImages, on by default in 1.37).
func (e *env) workloadWithoutCredentialsFails(t *testing.T, image string) {
	pod := e.createWorkload(t, "without-credentials", image, "")
	var reason string
	e.eventually("workload refused the image", 2*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := kube.Client.CoreV1().Pods(e.ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, nil
		}
		if w := p.Status.ContainerStatuses[0].State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
			reason = w.Message
			return true, nil
		}
		if p.Status.Phase == corev1.PodRunning {
			t.Fatal("a pod without credentials started from the prewarmed private image")
		}
		return false, nil
	})
	if !strings.Contains(reason, "authorization failed") && !strings.Contains(reason, "no basic auth credentials") {
		t.Fatalf("refused with %q, want kubelet's missing-credentials text", reason)
	}
	t.Logf("without credentials: %q", reason)
}

func (e *env) dockerConfigSecret(t *testing.T, name, user, password string) {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg, err := json.Marshal(map[string]any{"auths": map[string]any{kube.Registry.Host: map[string]string{"username": user, "password": password, "auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}
	if _, err := kube.Client.CoreV1().Secrets(e.ns).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createWorkload runs image (the pause program) on the real node as a restricted pod
// with IfNotPresent, the way a workload that wants the prewarmed copy is written.
func (e *env) createWorkload(t *testing.T, name, image, secret string) string {
	pod := workloadPod(e.ns, name, image, secret)
	pod.Spec.NodeName = node.Name
	return e.create(t, pod)
}

// createScheduledWorkload is createWorkload through the scheduler, which honours the
// node's taints (a pod with spec.nodeName set bypasses them): it selects the real node
// by its label and tolerates no taint.
func (e *env) createScheduledWorkload(t *testing.T, name, image, secret string) string {
	pod := workloadPod(e.ns, name, image, secret)
	pod.Labels = map[string]string{"app": name}
	pod.Spec.NodeSelector = map[string]string{cluster.RealNodeLabel: "true"}
	return e.create(t, pod)
}

func (e *env) create(t *testing.T, pod *corev1.Pod) string {
	if _, err := kube.Client.CoreV1().Pods(e.ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return pod.Name
}

func workloadPod(ns, name, image, secret string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  new(false),
			TerminationGracePeriodSeconds: new(int64(1)),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: new(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: new(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if secret != "" {
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: secret}}
	}
	return pod
}

// podEvent returns the message of the pod's latest Event with the reason, waiting for it.
func (e *env) podEvent(ctx context.Context, pod, reason string) string {
	var msg string
	e.eventually("Event "+reason+" of "+pod, time.Minute, func(ctx context.Context) (bool, error) {
		evs, err := kube.Client.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod + ",reason=" + reason})
		if err != nil || len(evs.Items) == 0 {
			return false, nil
		}
		msg = evs.Items[len(evs.Items)-1].Message
		return true, nil
	})
	return msg
}
