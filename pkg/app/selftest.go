package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

// SelfTestConfig is what `image-prewarm selftest` checks: the chart's `helm test` pod
// runs it in the release namespace as a ServiceAccount of its own.
type SelfTestConfig struct {
	Kubeconfig string
	Namespace  string
	// Webhook: the API server must reach the validating webhook, which must deny a
	// server-side dry-run of an invalid prewarm ConfigMap (the RBAC needed: create
	// configmaps; nothing is stored).
	Webhook bool
	// LeaseName, when set: the Lease must have a holder that renewed it within its
	// duration, i.e. a controller is running (get on that Lease).
	LeaseName string
	// Timeout bounds the retries of each check: replicas may still be starting.
	Timeout time.Duration
}

// ParseSelfTest reads the selftest flags.
func ParseSelfTest(args []string, out io.Writer) (*SelfTestConfig, error) {
	c := &SelfTestConfig{}
	fs := flag.NewFlagSet("image-prewarm selftest", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty: in-cluster configuration")
	fs.StringVar(&c.Namespace, "namespace", envOr("POD_NAMESPACE", "image-prewarm"), "the release namespace")
	fs.BoolVar(&c.Webhook, "webhook", true, "check that the validating webhook denies an invalid spec (server-side dry-run)")
	fs.StringVar(&c.LeaseName, "lease-name", "", "check that this leader election Lease is held and fresh; empty: skip")
	fs.DurationVar(&c.Timeout, "timeout", time.Minute, "how long each check is retried")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--namespace %q: %s", c.Namespace, msgs[0]))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %v: want a positive duration", c.Timeout))
	}
	return c, errors.Join(errs...)
}

// SelfTest runs the checks cfg turns on, printing one line per check to out, and
// returns the failures.
func SelfTest(ctx context.Context, cfg *SelfTestConfig, client kubernetes.Interface, out io.Writer) error {
	type check struct {
		name string
		run  func(context.Context) (string, error)
	}
	var checks []check
	if cfg.Webhook {
		checks = append(checks, check{"webhook", func(ctx context.Context) (string, error) { return webhookDenies(ctx, client, cfg.Namespace) }})
	}
	if cfg.LeaseName != "" {
		checks = append(checks, check{"lease", func(ctx context.Context) (string, error) { return leaseHeld(ctx, client, cfg.Namespace, cfg.LeaseName) }})
	}
	var errs []error
	for _, c := range checks {
		msg, err := retry(ctx, cfg.Timeout, c.run)
		if err != nil {
			fmt.Fprintf(out, "FAIL %s: %v\n", c.name, err)
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
			continue
		}
		fmt.Fprintf(out, "ok   %s: %s\n", c.name, msg)
	}
	return errors.Join(errs...)
}

// retry runs check every 2 s until it passes or timeout; the last error is kept.
func retry(ctx context.Context, timeout time.Duration, check func(context.Context) (string, error)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		msg, err := check(ctx)
		if err == nil {
			return msg, nil
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(2 * time.Second):
		}
	}
}

// selfTestSpec is invalid (no images), so the validating webhook must deny it.
const selfTestSpec = "images: []\n"

// webhookDenies dry-runs an invalid prewarm ConfigMap: only our webhook's denial passes.
// Admitted means the webhook was not called (not registered, or failurePolicy Ignore
// while it is unreachable); any other error, that the API server could not reach it.
func webhookDenies(ctx context.Context, client kubernetes.Interface, ns string) (string, error) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "image-prewarm-selftest", Namespace: ns, Labels: map[string]string{config.ConfigLabel: "true"}},
		Data:       map[string]string{config.SpecKey: selfTestSpec},
	}
	_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	denial := fmt.Sprintf("admission webhook %q denied the request", webhook.ValidatingWebhookName)
	switch {
	case err == nil:
		return "", errors.New("an invalid prewarm spec was admitted: the validating webhook was not called")
	case strings.Contains(err.Error(), denial):
		return "validating webhook denied an invalid spec (server-side dry-run)", nil
	}
	return "", fmt.Errorf("the API server did not get the webhook's answer: %w", err)
}

// leaseSkew allows for clocks that differ between the holder's node and this pod's.
const leaseSkew = 5 * time.Second

// leaseHeld checks that someone holds the Lease and renewed it within its duration.
func leaseHeld(ctx context.Context, client kubernetes.Interface, ns, name string) (string, error) {
	lease, err := client.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	s := lease.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return "", fmt.Errorf("lease %s has no holder", name)
	}
	age := time.Since(s.RenewTime.Time).Round(time.Second)
	if age > time.Duration(*s.LeaseDurationSeconds)*time.Second+leaseSkew {
		return "", fmt.Errorf("lease %s: %s renewed it %s ago, longer than its %ds duration", name, *s.HolderIdentity, age, *s.LeaseDurationSeconds)
	}
	return fmt.Sprintf("lease %s held by %s, renewed %s ago", name, *s.HolderIdentity, age), nil
}
