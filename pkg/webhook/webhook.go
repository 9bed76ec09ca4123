// Package webhook holds image-prewarm's admission webhooks and the server that serves
// them:
//
//   - mutating, pods CREATE (only pods labeled image-prewarm.io/pull-secret): adds the
//     label's Secret to spec.imagePullSecrets, once;
//   - validating, prewarm ConfigMaps CREATE/UPDATE: rejects an invalid spec with every
//     problem and its path, at kubectl apply time rather than in an Event later.
//
// Neither makes an API call while handling a request: the pod label carries the Secret
// name and the spec validation is pure, so the webhooks have no side effects and are
// safe for dry-run requests.
package webhook

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

// Paths served, and the names the metrics and logs use for the two webhooks.
const (
	MutatePodsPath         = "/mutate-pods"
	ValidateConfigMapsPath = "/validate-prewarm-configmaps"

	MutatePodsName         = "mutate-pods"
	ValidateConfigMapsName = "validate-prewarm-configmaps"
)

// Certificate file names in Options.CertDir: the keys of a kubernetes.io/tls Secret,
// so the chart mounts the Secret as the directory unchanged.
const (
	CertName = "tls.crt"
	KeyName  = "tls.key"
)

// Options configure the server.
type Options struct {
	// Host to listen on; empty: every address.
	Host string
	Port int
	// CertDir holds tls.crt and tls.key. The server reloads them when they change
	// (a renewed Secret, cert-manager's rotation) without a restart.
	CertDir string
	// GetCertificate, when set, supplies the serving certificate instead of CertDir: a
	// process whose other servers use the same pair keeps one watcher for all of them.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// NewServer returns controller-runtime's webhook server with both webhooks registered.
// Start it with Start(ctx); it stops when ctx ends.
func NewServer(o Options) webhook.Server {
	tlsOpts := []func(*tls.Config){http1Only, tls12Min}
	if o.GetCertificate != nil {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = o.GetCertificate })
	}
	srv := webhook.NewServer(webhook.Options{
		Host:     o.Host,
		Port:     o.Port,
		CertDir:  o.CertDir,
		CertName: CertName,
		KeyName:  KeyName,
		TLSOpts:  tlsOpts,
	})
	srv.Register(MutatePodsPath, &webhook.Admission{Handler: instrument(MutatePodsName, &PodMutator{})})
	srv.Register(ValidateConfigMapsPath, &webhook.Admission{Handler: instrument(ValidateConfigMapsName, &ConfigValidator{})})
	// Every series exists at 0 from the start, so rates and alerts work before the
	// first request.
	for _, name := range []string{MutatePodsName, ValidateConfigMapsName} {
		for _, r := range []string{metrics.WebhookAllowed, metrics.WebhookDenied, metrics.WebhookPatched, metrics.WebhookError} {
			metrics.WebhookRequests.WithLabelValues(name, r)
		}
	}
	return srv
}

// http1Only turns HTTP/2 off: its rapid-reset and stream-flood attacks
// (CVE-2023-44487, CVE-2023-39325) reach any client that can open a connection, and the
// API server speaks HTTP/1.1 to webhooks just as well.
func http1Only(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }

func tls12Min(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }

// instrument records every response of h in the webhook metrics under name.
func instrument(name string, h admission.Handler) admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		start := time.Now()
		resp := h.Handle(ctx, req)
		metrics.WebhookLatency.WithLabelValues(name).Observe(time.Since(start).Seconds())
		metrics.WebhookRequests.WithLabelValues(name, result(resp)).Inc()
		return resp
	})
}

// result classifies a response for the result label: a denial (403, a policy decision)
// is told apart from a failure to decide (bad request, internal error).
func result(resp admission.Response) string {
	switch {
	case resp.Allowed && len(resp.Patches) > 0:
		return metrics.WebhookPatched
	case resp.Allowed:
		return metrics.WebhookAllowed
	case resp.Result != nil && resp.Result.Code == http.StatusForbidden:
		return metrics.WebhookDenied
	}
	return metrics.WebhookError
}
