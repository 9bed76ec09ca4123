package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
)

// decoder decodes the objects of admission requests. Its scheme knows core/v1 only:
// a request carrying any other kind fails to decode instead of being misread.
var decoder = func() admission.Decoder {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	return admission.NewDecoder(scheme)
}()

// Mutate adds the Secret named by the pod's jobs.LabelPullSecret label to
// spec.imagePullSecrets unless it is already there, and reports whether it changed the
// pod. A pod without the label, or whose label is not a valid Secret name, is left
// alone. Calling it again changes nothing (the API server may reinvoke the webhook).
func Mutate(pod *corev1.Pod) (changed bool) {
	name, err := pullSecretName(pod)
	if err != nil || name == "" {
		return false
	}
	if hasPullSecret(pod, name) {
		return false
	}
	pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
	return true
}

func hasPullSecret(pod *corev1.Pod, name string) bool {
	return slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(ref corev1.LocalObjectReference) bool { return ref.Name == name })
}

// pullSecretName returns the value of the pod's jobs.LabelPullSecret label: "" without
// the label, an error when the value cannot name a Secret. Label values allow
// characters ("_", upper case) and an emptiness Secret names do not.
func pullSecretName(pod *corev1.Pod) (string, error) {
	name, ok := pod.Labels[jobs.LabelPullSecret]
	if !ok {
		return "", nil
	}
	if msgs := content.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return "", fmt.Errorf("label %s=%q is not a valid Secret name (%s); imagePullSecrets left unchanged", jobs.LabelPullSecret, name, msgs[0])
	}
	return name, nil
}

// PodMutator is the admission.Handler of the mutating webhook: decode, Mutate, patch.
type PodMutator struct{}

// Handle never denies a pod: a label it cannot use is reported as a warning (shown by
// kubectl) and the pod is admitted unchanged, since refusing it would block a Job's
// pods for a problem the Job controller cannot fix.
func (PodMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create {
		return admission.Allowed("")
	}
	pod := &corev1.Pod{}
	if err := decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	name, err := pullSecretName(pod)
	if err != nil {
		logging.FromContext(ctx).Info("pull secret label unusable", "reason", err.Error())
		return admission.Allowed("").WithWarnings(err.Error())
	}
	// Prewarm Jobs already carry their Secret, so the usual request changes nothing:
	// answer it before encoding the pod.
	if name == "" || hasPullSecret(pod, name) {
		return admission.Allowed("")
	}
	// The patch is the difference between two encodings of our own decoded pod, not
	// between the request's raw bytes and our encoding: diffing against the raw bytes
	// would also "fix" every field our types encode differently, and remove every field
	// of a newer API server that our types do not know.
	original, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode pod: %w", err))
	}
	if !Mutate(pod) {
		return admission.Allowed("")
	}
	mutated, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode pod: %w", err))
	}
	return admission.PatchResponseFromRaw(original, mutated)
}
