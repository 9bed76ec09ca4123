package webhook

import (
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

// Names of the webhooks inside their configurations (they must be qualified names).
const (
	MutatingWebhookName   = "pull-secrets.image-prewarm.io"
	ValidatingWebhookName = "prewarm-configs.image-prewarm.io"
)

// TimeoutSeconds bounds each call: the handlers work in memory, so 5 s is only ever
// reached when the server is unreachable, and then a pod create should fail (or be
// admitted, with Ignore) quickly rather than after the 10 s default.
const TimeoutSeconds int32 = 5

// MutatingConfiguration is the configuration the chart installs for the mutating
// webhook, as Go. clientConfig addresses the server without a path (a Service, or a URL
// such as https://127.0.0.1:9443); the webhook's path is added here.
//
// The objectSelector sends only pods carrying jobs.LabelPullSecret: every other pod of
// the cluster is admitted without a call, so an outage of this webhook, whatever the
// failurePolicy, never touches other workloads.
func MutatingConfiguration(name string, clientConfig admissionregistrationv1.WebhookClientConfig, failurePolicy admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    MutatingWebhookName,
			ClientConfig:            withPath(clientConfig, MutatePodsPath),
			Rules:                   rules("pods", admissionregistrationv1.Create),
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: jobs.LabelPullSecret, Operator: metav1.LabelSelectorOpExists}}},
			FailurePolicy:           &failurePolicy,
			MatchPolicy:             new(admissionregistrationv1.Equivalent),
			SideEffects:             new(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          new(TimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			// IfNeeded: a later mutating webhook may rewrite imagePullSecrets; being
			// called again is harmless because Mutate is idempotent.
			ReinvocationPolicy: new(admissionregistrationv1.IfNeededReinvocationPolicy),
		}},
	}
}

// ValidatingConfiguration is the configuration the chart installs for the validating
// webhook, as Go: prewarm ConfigMaps (labeled config.ConfigLabel=true), CREATE and
// UPDATE. clientConfig is as for MutatingConfiguration.
func ValidatingConfiguration(name string, clientConfig admissionregistrationv1.WebhookClientConfig, failurePolicy admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    ValidatingWebhookName,
			ClientConfig:            withPath(clientConfig, ValidateConfigMapsPath),
			Rules:                   rules("configmaps", admissionregistrationv1.Create, admissionregistrationv1.Update),
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{config.ConfigLabel: "true"}},
			FailurePolicy:           &failurePolicy,
			MatchPolicy:             new(admissionregistrationv1.Equivalent),
			SideEffects:             new(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          new(TimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// rules matches the core/v1 resource for the given operations, namespaced only.
func rules(resource string, ops ...admissionregistrationv1.OperationType) []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: ops,
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{corev1.GroupName},
			APIVersions: []string{corev1.SchemeGroupVersion.Version},
			Resources:   []string{resource},
			Scope:       new(admissionregistrationv1.NamespacedScope),
		},
	}}
}

// withPath returns a copy of cc addressing path on the same server.
func withPath(cc admissionregistrationv1.WebhookClientConfig, path string) admissionregistrationv1.WebhookClientConfig {
	switch {
	case cc.Service != nil:
		svc := *cc.Service
		svc.Path = &path
		cc.Service = &svc
	case cc.URL != nil:
		url := strings.TrimSuffix(*cc.URL, "/") + path
		cc.URL = &url
	}
	cc.CABundle = append([]byte(nil), cc.CABundle...)
	return cc
}
