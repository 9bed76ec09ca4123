// Package app wires the binary: flags are parsed once, validated into a typed Config,
// and Run starts the parts the Config turns on.
package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
)

// Config is the validated configuration of one image-prewarm process.
type Config struct {
	// Kubeconfig is empty in a pod (in-cluster configuration).
	Kubeconfig string
	// Namespace holds the prewarm ConfigMaps, the pull Secrets and the Jobs.
	Namespace string
	// Controller turns the reconciler on (leader-elected when LeaderElection is set).
	Controller bool
	Workers    int
	// NoopImage is the image-prewarm image itself: it carries /prewarm-noop into Jobs.
	NoopImage      string
	LeaderElection bool
	LeaseName      string
	LeaseDuration  time.Duration
	// Identity names this replica in the Lease; defaults to the host name.
	Identity string
	// Webhook serves the mutating and validating admission webhooks on WebhookPort with
	// the certificate in CertDir (tls.crt, tls.key; reloaded when the files change).
	Webhook     bool
	WebhookPort int
	CertDir     string
	// TaskAPI serves /api/v1/tasks on TaskAPIAddr (TLS with CertDir unless TaskAPIPlainHTTP).
	TaskAPI          bool
	TaskAPIAddr      string
	TaskAPIPlainHTTP bool
	// TaskRetention is how long finished tasks are kept before they are cleaned up.
	TaskRetention time.Duration
	// MetricsAddr serves /metrics, /healthz and /readyz; empty turns it off.
	MetricsAddr string
	// MetricsSecure serves MetricsAddr over HTTPS (the pair in CertDir when the webhook or
	// TLS task API load it, else self-signed), /metrics behind TokenReview +
	// SubjectAccessReview. False: plain HTTP, /metrics open (local use only).
	MetricsSecure bool
	LogFormat     string
	LogVerbosity  int
}

// ErrHelp is returned when --help was asked for; usage has been printed.
var ErrHelp = flag.ErrHelp

// Parse reads flags into a validated Config. Usage goes to out.
func Parse(args []string, out io.Writer) (*Config, error) {
	host, _ := os.Hostname()
	c := &Config{}
	fs := flag.NewFlagSet("image-prewarm", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty: in-cluster configuration")
	fs.StringVar(&c.Namespace, "namespace", envOr("POD_NAMESPACE", "image-prewarm"), "namespace of prewarm ConfigMaps, pull Secrets and Jobs")
	fs.BoolVar(&c.Controller, "controller", true, "run the controller (prewarm ConfigMaps → Secret + Jobs)")
	fs.IntVar(&c.Workers, "workers", 4, "concurrent spec reconciles")
	fs.StringVar(&c.NoopImage, "noop-image", envOr("NOOP_IMAGE", "ghcr.io/image-prewarm/image-prewarm:latest"), "image holding /prewarm-noop (this project's image)")
	fs.BoolVar(&c.LeaderElection, "leader-elect", true, "elect one active controller through a Lease")
	fs.StringVar(&c.LeaseName, "lease-name", "image-prewarm-controller", "name of the leader election Lease")
	fs.DurationVar(&c.LeaseDuration, "lease-duration", 15*time.Second, "leader election lease duration")
	fs.StringVar(&c.Identity, "identity", envOr("POD_NAME", host), "this replica's name in the Lease")
	fs.BoolVar(&c.Webhook, "webhook", true, "serve the admission webhooks")
	fs.IntVar(&c.WebhookPort, "webhook-port", 9443, "webhook HTTPS port")
	fs.StringVar(&c.CertDir, "cert-dir", "/tls", "directory with tls.crt and tls.key for the webhook and task API")
	fs.BoolVar(&c.TaskAPI, "task-api", true, "serve the task API (/api/v1/tasks)")
	fs.StringVar(&c.TaskAPIAddr, "task-api-addr", ":8443", "task API address")
	fs.BoolVar(&c.TaskAPIPlainHTTP, "task-api-plain-http", false, "serve the task API without TLS (local use only)")
	fs.DurationVar(&c.TaskRetention, "task-retention", 24*time.Hour, "how long finished tasks are kept")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":8080", "address for /metrics, /healthz, /readyz; empty: off")
	fs.BoolVar(&c.MetricsSecure, "metrics-secure", true, "serve --metrics-addr over HTTPS with /metrics behind TokenReview + SubjectAccessReview (get /metrics); false: plain HTTP, /metrics open to anyone (local use only)")
	fs.StringVar(&c.LogFormat, "log-format", logging.FormatJSON, "log format: json or console")
	fs.IntVar(&c.LogVerbosity, "v", 0, "log verbosity (0..10)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, c.Validate()
}

// Validate reports every problem at once, each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--namespace %q: %s", c.Namespace, msgs[0]))
	}
	if c.Workers < 1 || c.Workers > 64 {
		errs = append(errs, fmt.Errorf("--workers %d: want 1..64", c.Workers))
	}
	if c.Controller && c.NoopImage == "" {
		errs = append(errs, errors.New("--noop-image: required with --controller"))
	}
	if c.LeaderElection && (c.LeaseDuration < 2*time.Second || c.Identity == "") {
		errs = append(errs, fmt.Errorf("--lease-duration %v (min 2s) and --identity %q (non-empty) for leader election", c.LeaseDuration, c.Identity))
	}
	if msgs := validation.IsDNS1123Subdomain(c.LeaseName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--lease-name %q: %s", c.LeaseName, msgs[0]))
	}
	if c.Webhook && (c.WebhookPort < 1 || c.WebhookPort > 65535) {
		errs = append(errs, fmt.Errorf("--webhook-port %d: want 1..65535", c.WebhookPort))
	}
	if (c.Webhook || (c.TaskAPI && !c.TaskAPIPlainHTTP)) && c.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir: required for the webhook and the TLS task API"))
	}
	if c.TaskAPI {
		if _, _, err := net.SplitHostPort(c.TaskAPIAddr); err != nil {
			errs = append(errs, fmt.Errorf("--task-api-addr %q: %w", c.TaskAPIAddr, err))
		}
		if c.TaskRetention < time.Minute {
			errs = append(errs, fmt.Errorf("--task-retention %v: want at least 1m", c.TaskRetention))
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-addr %q: %w", c.MetricsAddr, err))
		}
	}
	if c.LogFormat != logging.FormatJSON && c.LogFormat != logging.FormatConsole {
		errs = append(errs, fmt.Errorf("--log-format %q: want json or console", c.LogFormat))
	}
	if c.LogVerbosity < 0 || c.LogVerbosity > 10 {
		errs = append(errs, fmt.Errorf("-v %d: want 0..10", c.LogVerbosity))
	}
	return errors.Join(errs...)
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
