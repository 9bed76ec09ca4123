package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/image-prewarm/image-prewarm/certs"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/logging/logtest"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

// webhookLogs collects controller-runtime's log lines (server, certificate watcher,
// handlers) of every webhook test; a failing test prints its tail.
var (
	webhookLogs    = &logtest.Buffer{}
	webhookLogOnce sync.Once
)

// webhookServer is pkg/webhook's server running in this process on 127.0.0.1, with a
// certificate for 127.0.0.1 signed by a CA of its own.
type webhookServer struct {
	t       *testing.T
	ca      *certs.KeyPair
	certDir string
	port    int
	stop    context.CancelFunc
	done    chan error
}

func startWebhook(t *testing.T) *webhookServer {
	t.Helper()
	webhookLogOnce.Do(func() {
		logger, err := logging.New(logging.FormatConsole, 1, webhookLogs)
		if err != nil {
			t.Fatal(err)
		}
		ctrllog.SetLogger(logger)
	})
	w := &webhookServer{t: t, certDir: t.TempDir(), port: freePort(t)}
	b, err := certs.Generate(w.certDir, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w.ca = b.CA
	ctx, cancel := context.WithCancel(context.Background())
	w.stop, w.done = cancel, make(chan error, 1)
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: w.port, CertDir: w.certDir})
	go func() { w.done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		w.shutdown()
		if t.Failed() {
			t.Logf("webhook log tail:\n%s", webhookLogs.Tail(4000))
		}
	})
	if err := retryFor20s(t.Context(), func() error { _, err := w.servedSerial(); return err }); err != nil {
		t.Fatalf("webhook server on port %d not serving: %v", w.port, err)
	}
	return w
}

// shutdown stops the server and waits until the port is closed.
func (w *webhookServer) shutdown() {
	if w.stop == nil {
		return
	}
	w.stop()
	if err := <-w.done; err != nil {
		w.t.Errorf("webhook server: %v", err)
	}
	w.stop = nil
}

// clientConfig addresses the server by URL, trusting its CA.
func (w *webhookServer) clientConfig() admissionregistrationv1.WebhookClientConfig {
	url := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(w.port))
	return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: w.ca.CertPEM}
}

// servedSerial connects as the API server does (verifying against the CA, for the IP)
// and returns the serial of the certificate served.
func (w *webhookServer) servedSerial() (*big.Int, error) {
	roots := x509.NewCertPool()
	roots.AddCert(w.ca.Cert)
	d := &tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, NetDialer: &net.Dialer{Timeout: 2 * time.Second}}
	conn, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(w.port)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// retryFor20s calls try until it succeeds, for at most 20 s.
func retryFor20s(ctx context.Context, try func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		err := try()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// onlyThisNamespace scopes a webhook to the test's namespace, so concurrent tests in
// other namespaces never reach this test's server.
func (e *env) onlyThisNamespace() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{e.ns},
	}}}
}

// registerMutating installs webhook.MutatingConfiguration for w, scoped to e.ns, and
// returns its name; it is deleted when the test ends.
func (e *env) registerMutating(w *webhookServer, policy admissionregistrationv1.FailurePolicyType) string {
	e.t.Helper()
	cfg := webhook.MutatingConfiguration("image-prewarm-e2e-"+e.ns, w.clientConfig(), policy)
	cfg.Webhooks[0].NamespaceSelector = e.onlyThisNamespace()
	api := kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(e.t.Context(), cfg, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = api.Delete(context.Background(), cfg.Name, metav1.DeleteOptions{}) })
	return cfg.Name
}

func (e *env) registerValidating(w *webhookServer, policy admissionregistrationv1.FailurePolicyType) {
	e.t.Helper()
	cfg := webhook.ValidatingConfiguration("image-prewarm-e2e-"+e.ns, w.clientConfig(), policy)
	cfg.Webhooks[0].NamespaceSelector = e.onlyThisNamespace()
	api := kube.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := api.Create(e.t.Context(), cfg, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = api.Delete(context.Background(), cfg.Name, metav1.DeleteOptions{}) })
}

// setFailurePolicy changes a registered mutating configuration's failurePolicy.
func (e *env) setFailurePolicy(name string, policy admissionregistrationv1.FailurePolicyType) {
	e.t.Helper()
	api := kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := api.Get(e.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.Webhooks[0].FailurePolicy = &policy
	if _, err := api.Update(e.t.Context(), cfg, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// waitMutating waits until the API server calls the mutating webhook: it picks up new
// configurations asynchronously. The probe is a dry run (the webhook is side-effect free).
func (e *env) waitMutating() {
	e.t.Helper()
	probe := e.pod("probe", map[string]string{jobs.LabelPullSecret: "probe-secret"})
	e.eventually("mutating webhook called", 30*time.Second, func(ctx context.Context) (bool, error) {
		got, err := e.createPod(ctx, kube.Client, probe, true)
		return err == nil && len(got.Spec.ImagePullSecrets) == 1, nil
	})
}

// pod is a Pod Security "restricted" pod that stays Pending (no node matches), so only
// admission matters.
func (e *env) pod(name string, labels map[string]string, secrets ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeSelector:    map[string]string{"e2e-webhook": "no-such-node"},
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "c", Image: "harbor.example.com/ml/app:1",
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	for _, s := range secrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return p
}

func (e *env) createPod(ctx context.Context, client kubernetes.Interface, p *corev1.Pod, dryRun bool) (*corev1.Pod, error) {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return client.CoreV1().Pods(e.ns).Create(ctx, p, opts)
}

// warningClient returns a client whose API warnings (kubectl prints them) land in buf.
func warningClient(t *testing.T, buf *logtest.Buffer) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(kube.Config)
	cfg.WarningHandler = rest.NewWarningWriter(buf, rest.WarningWriterOptions{})
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// webhookRequests reads image_prewarm_webhook_requests_total for one webhook and result.
func webhookRequests(t *testing.T, hook, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.WebhookRequests.WithLabelValues(hook, result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func secretNames(p *corev1.Pod) []string {
	var names []string
	for _, ref := range p.Spec.ImagePullSecrets {
		names = append(names, ref.Name)
	}
	return names
}
