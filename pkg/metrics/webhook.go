package metrics

import "github.com/prometheus/client_golang/prometheus"

// Webhook series (owned by pkg/webhook, which records them):
//
//	image_prewarm_webhook_requests_total{webhook,result}          counter, result=allowed|denied|patched|error
//	image_prewarm_webhook_request_duration_seconds{webhook}       histogram, time in the handler
//
// webhook is one of the two fixed webhook names (mutate-pods, validate-prewarm-configmaps).
var (
	WebhookRequests = counter("webhook_requests_total", "Admission requests handled by webhook and result.", "webhook", "result")

	WebhookLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "webhook_request_duration_seconds",
		Help: "Time to handle one admission request, decoding included.",
		// Handling is in-memory (no API calls), so most requests take well under a
		// millisecond; the upper buckets show trouble long before the 5 s timeout.
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 5},
	}, []string{"webhook"})
)

// Webhook results: the bounded values of the result label.
const (
	WebhookAllowed = "allowed"
	WebhookDenied  = "denied"
	WebhookPatched = "patched"
	WebhookError   = "error"
)

func init() {
	Registry.MustRegister(WebhookLatency)
}
