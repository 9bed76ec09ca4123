package app

import (
	"context"
	"fmt"

	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

// runWebhook serves the admission webhooks on every replica until ctx ends. The client
// is unused on purpose: the webhooks make no API calls while handling a request.
func runWebhook(ctx context.Context, cfg *Config, _ kubernetes.Interface) error {
	base := logging.FromContext(ctx)
	// controller-runtime's server, certificate watcher and admission handlers log through
	// its own global logger (names "controller-runtime.webhook", "admission"), and the
	// handlers receive it in their context; route it to ours, as logging.New does for klog.
	ctrllog.SetLogger(base)
	logger := base.WithName("webhook")
	srv := webhook.NewServer(webhook.Options{Port: cfg.WebhookPort, CertDir: cfg.CertDir})
	logger.Info("starting admission webhooks", "port", cfg.WebhookPort, "certDir", cfg.CertDir,
		"paths", []string{webhook.MutatePodsPath, webhook.ValidateConfigMapsPath})
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("webhook server on port %d: %w", cfg.WebhookPort, err)
	}
	return nil
}
