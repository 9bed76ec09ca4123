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

// runTaskAPI serves /api/v1/tasks on cfg.TaskAPIAddr (TLS with the serving certificate
// unless --task-api-plain-http) and runs the retention janitor, until ctx ends. Every
// replica runs both: requests are stateless and the janitor's deletes are idempotent.
// With TLS it listens only once the certificate has loaded, as the webhook does.
func runTaskAPI(ctx context.Context, cfg *Config, client kubernetes.Interface, cert *servingCert, ready *serving) error {
	logger := logging.FromContext(ctx).WithName("tasks")
	go tasks.NewJanitor(client, cfg.Namespace, cfg.TaskRetention, logger.WithName("janitor")).Run(ctx)
	var tlsConfig *tls.Config
	if !cfg.TaskAPIPlainHTTP {
		if !cert.wait(ctx) {
			return nil
		}
		tlsConfig = tasks.TLSConfig(cert.GetCertificate)
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
	ready.on.Store(true)
	defer ready.on.Store(false)
	return tasks.Serve(ctx, l, srv.Handler(), tlsConfig, logger)
}
