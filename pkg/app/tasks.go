package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/tasks"
)

// runTaskAPI serves /api/v1/tasks on cfg.TaskAPIAddr (TLS from cfg.CertDir unless
// --task-api-plain-http) and runs the retention janitor, until ctx ends. Every replica
// runs both: requests are stateless and the janitor's deletes are idempotent.
func runTaskAPI(ctx context.Context, cfg *Config, client kubernetes.Interface) error {
	logger := logging.FromContext(ctx).WithName("tasks")
	var tlsConfig *tls.Config
	if !cfg.TaskAPIPlainHTTP {
		var err error
		if tlsConfig, err = tasks.TLSConfig(cfg.CertDir, logger); err != nil {
			return fmt.Errorf("--cert-dir %s: %w", cfg.CertDir, err)
		}
	}
	l, err := net.Listen("tcp", cfg.TaskAPIAddr)
	if err != nil {
		return fmt.Errorf("--task-api-addr %s: %w", cfg.TaskAPIAddr, err)
	}
	srv := tasks.New(tasks.Options{
		Client:    client,
		Namespace: cfg.Namespace,
		Guard:     &tasks.KubeGuard{Client: client, Namespace: cfg.Namespace},
		Logger:    logger,
	})
	go tasks.NewJanitor(client, cfg.Namespace, cfg.TaskRetention, logger.WithName("janitor")).Run(ctx)
	return tasks.Serve(ctx, l, srv.Handler(), tlsConfig, logger)
}
