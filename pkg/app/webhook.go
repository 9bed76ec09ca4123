package app

import (
	"context"
	"fmt"

	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

// runWebhook serves the admission webhooks on every replica until ctx ends, once the
// serving certificate has loaded: before that a handshake could only fail, so the port
// stays closed and /readyz says why. The webhooks make no API calls while handling a
// request, so they need no client.
func runWebhook(ctx context.Context, srv ctrlwebhook.Server, cert *servingCert, port int) error {
	logger := logging.FromContext(ctx).WithName("webhook")
	if !cert.wait(ctx) {
		return nil
	}
	logger.Info("starting admission webhooks", "port", port,
		"paths", []string{webhook.MutatePodsPath, webhook.ValidateConfigMapsPath})
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("webhook server on port %d: %w", port, err)
	}
	return nil
}
