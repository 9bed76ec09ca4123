package app

import (
	"context"

	"k8s.io/client-go/kubernetes"
)

// runTaskAPI serves /api/v1/tasks until ctx ends. (Being built: pkg/tasks.)
func runTaskAPI(ctx context.Context, cfg *Config, client kubernetes.Interface) error {
	<-ctx.Done()
	return nil
}
