package app

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/image-prewarm/image-prewarm/pkg/controller"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
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
	// controller-runtime's webhook server, certificate watcher, probe handlers and metrics
	// filter log through its own global logger; route it to ours, as logging.New does
	// for klog.
	ctrllog.SetLogger(logger)
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := newParts(cfg, logger)
	if cfg.MetricsAddr != "" {
		srv, err := serveObservability(cfg, client, p, logger)
		if err != nil {
			return err
		}
		defer shutdown(srv, logger)
	}
	errs := make(chan error, 4)
	if p.cert != nil {
		go func() { errs <- p.cert.run(ctx) }()
	}
	if cfg.Controller {
		go func() { errs <- runController(ctx, cfg, client, &p.leader) }()
	}
	if cfg.Webhook {
		go func() { errs <- runWebhook(ctx, p.webhook, p.cert, cfg.WebhookPort) }()
	}
	if cfg.TaskAPI {
		go func() { errs <- runTaskAPI(ctx, cfg, client, p.cert, &p.taskAPI) }()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}

// parts is what the servers and their readiness checks share.
type parts struct {
	cert    *servingCert // nil when nothing serves the pair
	webhook ctrlwebhook.Server
	taskAPI serving
	leader  leaderState
}

func newParts(cfg *Config, logger logr.Logger) *parts {
	p := &parts{}
	if cfg.Webhook || (cfg.TaskAPI && !cfg.TaskAPIPlainHTTP) {
		p.cert = newServingCert(cfg.CertDir, logger.WithName("certificate"))
	}
	if cfg.Webhook {
		p.webhook = webhook.NewServer(webhook.Options{Port: cfg.WebhookPort, GetCertificate: p.cert.GetCertificate})
	}
	return p
}

// serveObservability serves /metrics (HTTPS behind TokenReview + SubjectAccessReview
// unless --metrics-secure=false), /healthz and /readyz on --metrics-addr.
func serveObservability(cfg *Config, client kubernetes.Interface, p *parts, logger logr.Logger) (*MetricsServer, error) {
	o := MetricsOptions{Addr: cfg.MetricsAddr, Secure: cfg.MetricsSecure, Logger: logger.WithName("metrics")}
	var startedChecker healthz.Checker
	if p.webhook != nil {
		startedChecker = p.webhook.StartedChecker()
	}
	o.Ready = readiness(cfg, p.cert, startedChecker, &p.taskAPI, &p.leader)
	if cfg.MetricsSecure {
		o.Auth = MetricsAuth(client, o.Logger.WithName("auth"))
		if p.cert != nil {
			o.GetCertificate = p.cert.GetCertificate
		}
	}
	return ServeMetrics(o)
}

func shutdown(srv *MetricsServer, logger logr.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Error(err, "metrics server shutdown")
	}
}

func runController(ctx context.Context, cfg *Config, client kubernetes.Interface, state *leaderState) error {
	start := func(ctx context.Context) {
		metrics.IsLeader.WithLabelValues().Set(1)
		c := controller.New(client, controller.Options{Namespace: cfg.Namespace, NoopImage: cfg.NoopImage})
		state.lead(c)
		defer state.standby()
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
