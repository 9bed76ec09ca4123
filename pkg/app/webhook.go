package app

import (
	"context"

	"k8s.io/client-go/kubernetes"
)

// runWebhook serves the admission webhooks until ctx ends. (Being built: pkg/webhook.)
func runWebhook(ctx context.Context, cfg *Config, client kubernetes.Interface) error {
	<-ctx.Done()
	return nil
}
