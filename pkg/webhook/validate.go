package webhook

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
)

// ConfigValidator is the admission.Handler of the validating webhook: it runs the
// controller's own parsing and validation (config.FromConfigMap) on prewarm ConfigMaps,
// so what the webhook admits is exactly what the controller accepts.
type ConfigValidator struct{}

// Handle denies an invalid spec with the ValidationError's message: every problem with
// its path ("images[1]: ...; rollout.maxConcurrentNodes: ...").
func (ConfigValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	cm := &corev1.ConfigMap{}
	if err := decoder.Decode(req, cm); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode ConfigMap: %w", err))
	}
	// The objectSelector also matches an update whose old object had the label; once
	// the label is gone the ConfigMap is no longer a spec and anything goes.
	if cm.Labels[config.ConfigLabel] != "true" {
		return admission.Allowed("")
	}
	if _, err := config.FromConfigMap(cm); err != nil {
		logging.FromContext(ctx).V(1).Info("prewarm spec rejected", logging.KeySpec, cm.Name, "reason", err.Error())
		return admission.Denied(err.Error())
	}
	return admission.Allowed("")
}
