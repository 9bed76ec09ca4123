package webhook

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/image-prewarm/image-prewarm/pkg/config"
)

const (
	validSpec   = "images: [nginx:1.27, registry.k8s.io/pause:3.10]\nrollout: {maxConcurrentNodes: 5}\n"
	invalidSpec = "images: [nginx:1.27, 'UPPER/Case::bad', harbor.example.com/x:1]\nrollout: {maxConcurrentNodes: 0, pullTimeout: 1s}\n"
)

// configMap builds a ConfigMap with the given labels and data.
func configMap(labels map[string]string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "ml", Namespace: "ns", Labels: labels},
		Data:       data,
	}
}

var specLabel = map[string]string{config.ConfigLabel: "true"}

func TestConfigValidatorHandle(t *testing.T) {
	tests := map[string]struct {
		op          admissionv1.Operation
		obj         *corev1.ConfigMap
		wantAllowed bool
		wantCode    int32
		wantMessage []string
	}{
		"valid spec":           {op: admissionv1.Create, obj: configMap(specLabel, map[string]string{config.SpecKey: validSpec}), wantAllowed: true},
		"valid spec on update": {op: admissionv1.Update, obj: configMap(specLabel, map[string]string{config.SpecKey: validSpec}), wantAllowed: true},
		"every problem with its path": {
			op: admissionv1.Create, obj: configMap(specLabel, map[string]string{config.SpecKey: invalidSpec}),
			wantCode:    403,
			wantMessage: []string{"invalid prewarm spec", "images[1]:", "images[2]: registry \"harbor.example.com\" is not listed", "rollout.maxConcurrentNodes:", "rollout.pullTimeout:"},
		},
		"invalid on update": {
			op: admissionv1.Update, obj: configMap(specLabel, map[string]string{config.SpecKey: "images: []"}),
			wantCode: 403, wantMessage: []string{"images: at least one image is required"},
		},
		"spec key missing": {
			op: admissionv1.Create, obj: configMap(specLabel, map[string]string{"other.yaml": "x"}),
			wantCode: 403, wantMessage: []string{"data.prewarm.yaml: is missing"},
		},
		"not YAML": {
			op: admissionv1.Create, obj: configMap(specLabel, map[string]string{config.SpecKey: "images: [unterminated"}),
			wantCode: 403, wantMessage: []string{"invalid prewarm spec"},
		},
		"label removed: no longer a spec": {op: admissionv1.Update, obj: configMap(nil, map[string]string{config.SpecKey: invalidSpec}), wantAllowed: true},
		"label not true":                  {op: admissionv1.Create, obj: configMap(map[string]string{config.ConfigLabel: "false"}, nil), wantAllowed: true},
		"delete is never validated":       {op: admissionv1.Delete, obj: configMap(specLabel, map[string]string{config.SpecKey: invalidSpec}), wantAllowed: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := ConfigValidator{}.Handle(t.Context(), request(t, tc.op, tc.obj))
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v (result %+v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if tc.wantCode != 0 && (resp.Result == nil || resp.Result.Code != tc.wantCode) {
				t.Fatalf("result %+v, want code %d", resp.Result, tc.wantCode)
			}
			for _, want := range tc.wantMessage {
				if !strings.Contains(resp.Result.Message, want) {
					t.Errorf("message %q lacks %q", resp.Result.Message, want)
				}
			}
		})
	}
}

// TestConfigValidatorMatchesController: the webhook's verdict is config.FromConfigMap's,
// message included, so kubectl shows what the controller's Event would say.
func TestConfigValidatorMatchesController(t *testing.T) {
	cm := configMap(specLabel, map[string]string{config.SpecKey: invalidSpec})
	_, err := config.FromConfigMap(cm)
	resp := ConfigValidator{}.Handle(t.Context(), request(t, admissionv1.Create, cm))
	if err == nil || resp.Result.Message != err.Error() {
		t.Fatalf("webhook message %q, controller error %v", resp.Result.Message, err)
	}
}

func TestConfigValidatorBadRequest(t *testing.T) {
	req := request(t, admissionv1.Create, pod(nil))
	resp := ConfigValidator{}.Handle(t.Context(), req)
	if resp.Allowed || resp.Result.Code != 400 {
		t.Fatalf("a pod sent to the ConfigMap validator: %+v", resp.Result)
	}
	empty := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: admissionv1.Create}}
	if resp := (ConfigValidator{}).Handle(t.Context(), empty); resp.Allowed || resp.Result.Code != 400 {
		t.Fatalf("an empty request: %+v", resp.Result)
	}
}
