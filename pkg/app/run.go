package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/image-prewarm/image-prewarm/pkg/controller"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

// RESTConfig loads the kubeconfig, or the in-cluster configuration when it is empty.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "image-prewarm"
	return cfg, nil
}

// Run starts the parts cfg turns on and blocks until ctx ends.
func Run(ctx context.Context, cfg *Config, restCfg *rest.Config, logger logr.Logger) error {
	ctx = logging.IntoContext(ctx, logger)
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 3)
	if cfg.MetricsAddr != "" {
		srv, err := serveMetrics(cfg.MetricsAddr, logger)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if cfg.Controller {
		go func() { errs <- runController(ctx, cfg, client) }()
	}
	if cfg.Webhook {
		go func() { errs <- runWebhook(ctx, cfg, client) }()
	}
	if cfg.TaskAPI {
		go func() { errs <- runTaskAPI(ctx, cfg, client) }()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}

func runController(ctx context.Context, cfg *Config, client kubernetes.Interface) error {
	start := func(ctx context.Context) {
		metrics.IsLeader.WithLabelValues().Set(1)
		c := controller.New(client, controller.Options{Namespace: cfg.Namespace, NoopImage: cfg.NoopImage})
		if err := c.Run(ctx, cfg.Workers); err != nil {
			logging.FromContext(ctx).Error(err, "controller stopped")
		}
	}
	if !cfg.LeaderElection {
		start(ctx)
		return nil
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: cfg.LeaseName, Namespace: cfg.Namespace},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	// Losing the lease (e.g. the API server was away longer than the renew deadline)
	// stops this replica's controller; it then competes again instead of exiting, so an
	// API server outage heals without a pod restart. The controller's state is rebuilt
	// from the cluster each time it starts.
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   cfg.LeaseDuration,
			RenewDeadline:   cfg.LeaseDuration * 2 / 3,
			RetryPeriod:     cfg.LeaseDuration / 7,
			ReleaseOnCancel: true,
			Name:            cfg.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: start,
				OnStoppedLeading: func() {
					metrics.IsLeader.WithLabelValues().Set(0)
					logging.FromContext(ctx).Info("leadership lost; competing again")
				},
			},
		})
	}
	return nil
}

// serveMetrics serves /metrics, /healthz and /readyz until closed.
func serveMetrics(addr string, logger logr.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/readyz", ok)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(err, "metrics server stopped")
		}
	}()
	logger.Info("serving metrics", "addr", l.Addr().String())
	return srv, nil
}
