package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/image-prewarm/image-prewarm/certs"
	"github.com/image-prewarm/image-prewarm/pkg/app"
	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/pkg/tasks"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
	"github.com/image-prewarm/image-prewarm/test/observability"
)

// TestMetricsDashboardAndAlertsDuringRollout scrapes metrics.Registry with a real
// Prometheus during a private-registry rollout where one image fails on the "bad" nodes,
// then checks the contract between pkg/metrics, the chart's dashboard and alert rules:
// every documented series is in Prometheus, every dashboard query returns data, every
// alert expression evaluates, and promtool finds nothing wrong with /metrics.
//
// /metrics is served as a replica serves it (app.ServeMetrics: HTTPS, TokenReview +
// SubjectAccessReview against the real API server), and Prometheus scrapes it as a
// ServiceMonitor does: over HTTPS, verifying the certificate, with the token of a
// ServiceAccount bound to the chart's metrics-reader ClusterRole.
//
// The webhook and the task API do not run in the controller: their series get samples
// from their real handlers, served in-process over plain HTTP (the validating webhook
// allows one spec and denies one, the mutating webhook patches one pod, the task API
// answers 401 to a request without a token and to one with a token the API server
// does not know).
func TestMetricsDashboardAndAlertsDuringRollout(t *testing.T) {
	start := time.Now()
	bin, err := observability.Install(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	installed := time.Since(start)
	e := newEnv(t)
	good := e.nodes("good", 4)
	bad := e.nodes("bad", 2)
	e.credentials("harbor-robot", "robot", sentinel)

	target := e.serveMetrics()
	prom, err := observability.Start(t.Context(), observability.Options{
		BinDir: bin, Dir: t.TempDir(), Target: target.addr, Interval: time.Second, TLS: &target.scrape,
		RuleFiles: []string{observability.ChartPath(observability.RulesFile)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)
	e.waitQuery(prom, `up{job="image-prewarm"} == 1`, "Prometheus scrapes /metrics")

	e.startController()
	validSpec, invalidSpec := e.privateSpec(3, "harbor.example.com/fail/model:1", "nginx:1.27"), fmt.Sprintf("images: []\nnodeSelector: {e2e: %s}\n", e.ns)
	e.applySpec("observed", validSpec)
	e.applySpec("observed-invalid", invalidSpec)
	e.callWebhooks(validSpec, invalidSpec)
	e.callTaskAPI()

	st := e.waitStatus("observed", "run completed with failures", phaseIs(status.PhaseCompletedFailed))
	if st.Counts["Succeeded"] != len(good) || st.Counts["Failed"] != len(bad) {
		t.Fatalf("counts %v, want %d succeeded and %d failed", st.Counts, len(good), len(bad))
	}
	e.waitStatus("observed-invalid", "invalid spec reported", phaseIs(status.PhaseInvalid))
	e.eventually("Secret reaped", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })
	rolledOut := time.Since(start)
	e.waitQuery(prom, fmt.Sprintf(`timestamp(up{job="image-prewarm"}) > %d`, time.Now().Unix()+1), "a scrape after the rollout")

	e.assertDocumentedSeriesScraped(prom)
	e.assertQueriesAnswer(prom, "observed|observed-invalid")
	e.assertPromtoolCheckMetrics(bin, target)
	t.Logf("install %s, rollout finished after %s, checks %s", installed.Round(time.Millisecond),
		rolledOut.Round(time.Millisecond), (time.Since(start) - rolledOut).Round(time.Millisecond))
}

// metricsTarget is /metrics as a replica serves it, and how a scraper reaches it.
type metricsTarget struct {
	addr   string
	scrape observability.ScrapeTLS
	client *http.Client
	token  string
}

// serveMetrics serves metrics.Registry through app.ServeMetrics on a loopback port with
// a certificate for 127.0.0.1, the admin's client doing the reviews, and writes the CA
// and the token of a ServiceAccount bound to the chart's metrics-reader ClusterRole
// (rendered and applied for this test) for Prometheus.
func (e *env) serveMetrics() *metricsTarget {
	e.t.Helper()
	dir := e.t.TempDir()
	b, err := certs.Generate(dir, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	pair, err := certwatcher.New(filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))
	if err != nil {
		e.t.Fatal(err)
	}
	srv, err := app.ServeMetrics(app.MetricsOptions{Addr: "127.0.0.1:0", Secure: true, GetCertificate: pair.GetCertificate,
		Auth: app.MetricsAuth(kube.Client, logr.Discard()), Logger: logr.Discard()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

	reader := ofKinds(renderChart(e.t, "obs", e.ns, "--set", "fullnameOverride="+e.ns), "ClusterRole")
	applyForReal(e.t, reader)
	token := serviceAccountToken(e.t, e.ns, "prometheus")
	bindClusterRole(e.t, e.ns, "prometheus", e.ns+"-metrics-reader")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		e.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(b.CA.Cert)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return &metricsTarget{addr: srv.Addr, scrape: observability.ScrapeTLS{CAFile: filepath.Join(dir, certs.CAFile), TokenFile: tokenFile},
		client: client, token: token}
}

// waitQuery waits until expr returns at least one sample.
func (e *env) waitQuery(prom *observability.Prometheus, expr, what string) {
	e.t.Helper()
	e.eventually(what, time.Minute, func(ctx context.Context) (bool, error) {
		r, err := prom.Query(ctx, expr)
		if err != nil {
			return false, err
		}
		return r.Samples > 0, nil
	})
}

// callWebhooks sends admission reviews to the real webhook handlers (the server's mux,
// without TLS): the valid spec is allowed, the invalid one denied, a labeled pod patched.
func (e *env) callWebhooks(validSpec, invalidSpec string) {
	e.t.Helper()
	srv := httptest.NewServer(webhook.NewServer(webhook.Options{}).WebhookMux())
	defer srv.Close()
	for spec, wantAllowed := range map[string]bool{validSpec: true, invalidSpec: false} {
		cm := &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe", Namespace: e.ns, Labels: map[string]string{config.ConfigLabel: "true"}},
			Data:       map[string]string{config.SpecKey: spec},
		}
		resp := e.review(srv.URL+webhook.ValidateConfigMapsPath, "configmaps", "ConfigMap", cm)
		if resp.Allowed != wantAllowed {
			e.t.Errorf("validating webhook allowed=%v for %q, want %v (%v)", resp.Allowed, spec, wantAllowed, resp.Result)
		}
	}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe", Namespace: e.ns, Labels: map[string]string{jobs.LabelPullSecret: "image-pull-secret-probe"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1.27"}}},
	}
	if resp := e.review(srv.URL+webhook.MutatePodsPath, "pods", "Pod", pod); !resp.Allowed || len(resp.Patch) == 0 {
		e.t.Errorf("mutating webhook did not patch a labeled pod: %+v", resp)
	}
}

func (e *env) review(url, resource, kind string, obj runtime.Object) *admissionv1.AdmissionResponse {
	e.t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		e.t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("probe-" + resource), Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: resource}, Operation: admissionv1.Create,
			Namespace: e.ns, Name: "webhook-probe", Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, _ := json.Marshal(review)
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
		e.t.Fatalf("admission review at %s: HTTP %d, %v", url, resp.StatusCode, err)
	}
	return out.Response
}

// callTaskAPI sends two unauthenticated requests to the real task API handler: no token,
// and a token the API server's TokenReview rejects. Both must answer 401.
func (e *env) callTaskAPI() {
	e.t.Helper()
	api := tasks.New(tasks.Options{Client: kube.Client, Namespace: e.ns, Guard: &tasks.KubeGuard{Client: kube.Client, Namespace: e.ns}, Logger: logr.Discard()})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	for _, token := range []string{"", "not-a-token"} {
		req, _ := http.NewRequestWithContext(e.t.Context(), http.MethodGet, srv.URL+tasks.BasePath, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			e.t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			e.t.Errorf("task API with token %q: HTTP %d, want 401", token, resp.StatusCode)
		}
	}
}

// assertDocumentedSeriesScraped checks that every series of the pkg/metrics doc comment
// has samples in Prometheus (a histogram through its _count series).
func (e *env) assertDocumentedSeriesScraped(prom *observability.Prometheus) {
	e.t.Helper()
	doc, err := observability.MetricsDoc()
	if err != nil {
		e.t.Fatal(err)
	}
	documented, err := metrics.DocumentedSeries(doc)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := prom.Query(e.t.Context(), `count by (__name__) ({__name__=~"image_prewarm_.*"})`)
	if err != nil {
		e.t.Fatal(err)
	}
	var missing []string
	for _, d := range documented {
		name := d.Name
		if d.Type == "histogram" {
			name += "_count"
		}
		if !slices.Contains(r.Names, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		e.t.Errorf("documented series without samples in Prometheus: %s", strings.Join(missing, ", "))
	}
	e.t.Logf("%d of %d documented series have samples in Prometheus", len(documented)-len(missing), len(documented))
}

// assertQueriesAnswer runs every dashboard query (which must return data) and every
// alert expression (which must evaluate; empty when not firing) through the HTTP API,
// and checks that Prometheus evaluated every loaded alert rule without error.
func (e *env) assertQueriesAnswer(prom *observability.Prometheus, specs string) {
	e.t.Helper()
	dash, err := observability.LoadDashboard(observability.ChartPath(observability.DashboardFile))
	if err != nil {
		e.t.Fatal(err)
	}
	rules, err := observability.LoadRules(observability.ChartPath(observability.RulesFile))
	if err != nil {
		e.t.Fatal(err)
	}
	vars := observability.QueryVars(specs)
	withData, evaluated := 0, 0
	for _, q := range dash.Queries() {
		expr := observability.Expand(q.Expr, vars)
		r, err := prom.Query(e.t.Context(), expr)
		switch {
		case err != nil:
			e.t.Errorf("%s: %v", q.Source, err)
		case r.Samples == 0:
			e.t.Errorf("%s returned no data: %s", q.Source, expr)
		default:
			withData++
		}
	}
	for _, q := range rules.Queries() {
		if _, err := prom.Query(e.t.Context(), q.Expr); err != nil {
			e.t.Errorf("%s: %v", q.Source, err)
		} else {
			evaluated++
		}
	}
	health, err := prom.Rules(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	healthy := 0
	for _, h := range health {
		if h.Health != "ok" {
			e.t.Errorf("alert rule %s: health %s %s", h.Name, h.Health, h.LastError)
			continue
		}
		healthy++
	}
	if len(health) != len(rules.AllRules()) {
		e.t.Errorf("Prometheus loaded %d rules, the chart has %d", len(health), len(rules.AllRules()))
	}
	e.t.Logf("%d of %d dashboard queries returned data; %d of %d alert expressions evaluated; %d rules healthy in Prometheus",
		withData, len(dash.Queries()), evaluated, len(rules.Queries()), healthy)
}

// assertPromtoolCheckMetrics lints the /metrics exposition with promtool check metrics.
func (e *env) assertPromtoolCheckMetrics(bin string, target *metricsTarget) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.t.Context(), http.MethodGet, "https://"+target.addr+app.MetricsPath, nil)
	req.Header.Set("Authorization", "Bearer "+target.token)
	resp, err := target.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := observability.Promtool(e.t.Context(), bin, e.t.TempDir(), body, "check", "metrics")
	if err != nil || strings.TrimSpace(out) != "" {
		e.t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
