package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/certs"
	"github.com/image-prewarm/image-prewarm/pkg/app"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

// TestChartInstallReadinessMetricsAndHelmTest installs the chart for real (tls.mode
// helm, restricted namespace) and runs two replicas with its Deployment's args as its
// ServiceAccount (see chart_replicas_test.go): "replica-ready" with a certificate and
// "replica-no-cert" with an empty certificate directory. Then:
//   - replica-no-cert answers /healthz (liveness keeps it) but not /readyz, which names
//     the certificate; its pod is NotReady and the Service's EndpointSlice lists it
//     ready=false beside replica-ready's ready=true. Once its certificate is written it
//     turns ready, without a restart;
//   - /metrics answers 401 without a token or with an unknown one, 403 to a
//     ServiceAccount without the chart's metrics-reader ClusterRole, 200 to one bound to it;
//   - `helm test` passes: its pod (created by helm, admitted under restricted) runs
//     image-prewarm selftest as its own ServiceAccount: the API server calls
//     replica-ready's validating webhook, which denies the dry-run, and the Lease is held.
func TestChartInstallReadinessMetricsAndHelmTest(t *testing.T) {
	e := newEnv(t)
	start := time.Now()
	release := "ready"
	mustTool(t, nil, "helm", "install", release, chartDir, "--namespace", e.ns, "--set", "fullnameOverride="+e.ns,
		// No node has this label: the Deployment's own pods stay Pending and unaddressed.
		"--set-string", "nodeSelector.image-prewarm-e2e="+e.ns, "--set", "tests.timeout=30s")
	t.Cleanup(func() {
		_, _, _ = tool(t, nil, "helm", "uninstall", release, "--namespace", e.ns, "--wait", "--timeout", "60s")
	})
	d, err := kube.Client.AppsV1().Deployments(e.ns).Get(t.Context(), e.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	asChart := saConfig(e.ns, d.Spec.Template.Spec.ServiceAccountName)
	good := startReplica(t, d, "replica-ready", "10.250.0.1", asChart)
	bad := startReplica(t, d, "replica-no-cert", "10.250.0.2", asChart)
	ca := writeReplicaCert(t, good)
	node := standInNode(t, e.ns)
	good.createStandIn(d, node)
	bad.createStandIn(d, node)

	e.eventually("EndpointSlice: replica-ready ready, replica-no-cert not", time.Minute, func(ctx context.Context) (bool, error) {
		return syncedEndpoints(ctx, t, e.ns, good, bad) == "replica-ready ready=true, replica-no-cert ready=false", nil
	})
	if code, _ := bad.get(app.LivePath); code != http.StatusOK {
		t.Errorf("replica-no-cert /healthz: %d; liveness would restart it", code)
	}
	if _, reason := bad.get(app.ReadyPath + "/" + app.CheckCertificate); !strings.Contains(reason, "tls.crt") {
		t.Errorf("replica-no-cert /readyz/certificate: %q, want the missing file named", reason)
	}
	t.Logf("replica without a certificate: live, not ready, ready=false in the EndpointSlice (%v)", time.Since(start).Round(time.Millisecond))

	t.Run("metrics need a token allowed to get /metrics", func(t *testing.T) { checkMetricsAccess(t, e.ns, good, ca) })
	t.Run("helm test", func(t *testing.T) {
		routeValidatingWebhook(t, e.ns, good)
		runHelmTest(t, e.ns, release, node)
	})

	writeReplicaCert(t, bad)
	e.eventually("replica-no-cert ready once its certificate exists", time.Minute, func(ctx context.Context) (bool, error) {
		return syncedEndpoints(ctx, t, e.ns, good, bad) == "replica-ready ready=true, replica-no-cert ready=true", nil
	})
	lease, err := kube.Client.CoordinationV1().Leases(e.ns).Get(t.Context(), e.ns+"-controller", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("lease: %v", err)
	}
	standby := map[string]*replica{good.name: bad, bad.name: good}[*lease.Spec.HolderIdentity]
	if standby == nil {
		t.Fatalf("the Lease is held by %s, neither replica", *lease.Spec.HolderIdentity)
	}
	if code, _ := standby.get(app.LivePath); code != http.StatusOK || !standby.ready() {
		t.Errorf("%s, waiting for the Lease, is not live and ready", standby.name)
	}
	t.Logf("%s holds the Lease; %s, waiting for it, is live and ready", *lease.Spec.HolderIdentity, standby.name)
	t.Logf("install, readiness, metrics access and helm test: %v", time.Since(start).Round(time.Millisecond))
}

// syncedEndpoints plays the kubelet for both stand-ins once and reports how the
// Service's EndpointSlices list them.
func syncedEndpoints(ctx context.Context, t *testing.T, ns string, rs ...*replica) string {
	t.Helper()
	var parts []string
	for _, r := range rs {
		if _, err := r.syncStandIn(ctx, ns); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, r.name+" "+endpointReady(t, ns, ns, r.name))
	}
	return strings.Join(parts, ", ")
}

// writeReplicaCert gives the replica a serving pair for 127.0.0.1 and returns its CA.
func writeReplicaCert(t *testing.T, r *replica) *x509.CertPool {
	t.Helper()
	b, err := certs.Generate(r.certDir, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(b.CA.Cert)
	return pool
}

// checkMetricsAccess scrapes replica-ready (verifying its certificate) as nobody, as an
// unknown token, as a ServiceAccount without rights and as one bound to the chart's
// metrics-reader ClusterRole. The replica asks the API server as the chart's
// ServiceAccount: the chart's ClusterRole must allow the reviews.
func checkMetricsAccess(t *testing.T, ns string, r *replica, ca *x509.CertPool) {
	scraper, stranger := serviceAccountToken(t, ns, "scraper"), serviceAccountToken(t, ns, "stranger")
	bindClusterRole(t, ns, "scraper", ns+"-metrics-reader")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca}}}
	for _, tc := range []struct {
		who, token string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"unknown token", "not-a-token", http.StatusUnauthorized},
		{"ServiceAccount without metrics-reader", stranger, http.StatusForbidden},
		{"ServiceAccount bound to metrics-reader", scraper, http.StatusOK},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+r.metrics+app.MetricsPath, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.who, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || (tc.want == http.StatusOK) != strings.Contains(string(body), "image_prewarm_build_info") {
			t.Errorf("%s: HTTP %d, want %d (%.80s)", tc.who, resp.StatusCode, tc.want, body)
		}
	}
}

// serviceAccountToken creates a ServiceAccount and returns a token of it.
func serviceAccountToken(t *testing.T, ns, name string) string {
	t.Helper()
	sas := kube.Client.CoreV1().ServiceAccounts(ns)
	if _, err := sas.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := sas.CreateToken(t.Context(), name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// bindClusterRole binds role to the ServiceAccount until the test ends.
func bindClusterRole(t *testing.T, ns, sa, role string) {
	t.Helper()
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
	}
	bindings := kube.Client.RbacV1().ClusterRoleBindings()
	if _, err := bindings.Create(t.Context(), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bindings.Delete(context.Background(), b.Name, metav1.DeleteOptions{}) })
}

// routeValidatingWebhook points the release's validating webhook at replica-ready: the
// API server here resolves a Service to its ClusterIP, which nothing serves without
// kube-proxy.
func routeValidatingWebhook(t *testing.T, name string, r *replica) {
	t.Helper()
	configs := kube.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	v, err := configs.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(r.certDir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	url := "https://127.0.0.1:" + strconv.Itoa(r.webhook) + webhook.ValidateConfigMapsPath
	v.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	if _, err := configs.Update(t.Context(), v, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// runHelmTest runs `helm test` and plays scheduler and kubelet for its pod: binds it to
// node, runs its container's args through app.SelfTest as its ServiceAccount, and
// writes the outcome as the pod's phase, which helm waits for.
func runHelmTest(t *testing.T, ns, release, node string) {
	type result struct {
		out, errOut string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, err := tool(t, nil, "helm", "test", release, "--namespace", ns, "--timeout", "2m")
		done <- result{out, errOut, err}
	}()
	name := ns + "-selftest"
	pods := kube.Client.CoreV1().Pods(ns)
	var pod *corev1.Pod
	if err := retryFor20s(t.Context(), func() (err error) { pod, err = pods.Get(t.Context(), name, metav1.GetOptions{}); return err }); err != nil {
		t.Fatalf("helm test created no pod %s: %v", name, err)
	}
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: name}, Target: corev1.ObjectReference{Kind: "Node", Name: node}}
	if err := pods.Bind(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exit := runSelfTestPod(t, pod)
	r := <-done
	if (r.err == nil) != (exit == 0) || !strings.Contains(r.out, "Phase:") {
		t.Fatalf("selftest exit %d; helm test: %v\n%s%s", exit, r.err, r.out, r.errOut)
	}
	if exit != 0 {
		t.Fatalf("helm test failed:\n%s", r.out)
	}
	if _, err := kube.Client.CoreV1().ServiceAccounts(ns).Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the test's ServiceAccount outlived a passed helm test: %v", err)
	}
	suites, _, _ := strings.Cut(r.out, "NOTES:")
	t.Logf("helm test:\n%s", suites)
}

// runSelfTestPod runs the pod's command as its ServiceAccount and records the exit as
// the kubelet would; it returns the exit code.
func runSelfTestPod(t *testing.T, pod *corev1.Pod) int32 {
	t.Helper()
	c := pod.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "selftest" {
		t.Fatalf("helm test pod runs %q, want selftest", c.Args)
	}
	var out strings.Builder
	exit := int32(0)
	cfg, err := app.ParseSelfTest(c.Args[1:], &out)
	if err == nil {
		client := impersonate(t, pod.Namespace, pod.Spec.ServiceAccountName)
		err = app.SelfTest(t.Context(), cfg, client, &out)
	}
	if err != nil {
		exit = 1
		t.Errorf("selftest: %v\n%s", err, out.String())
	}
	t.Logf("selftest output:\n%s", out.String())
	phase := corev1.PodSucceeded
	if exit != 0 {
		phase = corev1.PodFailed
	}
	now := metav1.Now()
	cur, err := kube.Client.CoreV1().Pods(pod.Namespace).Get(t.Context(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Status.Phase = phase
	cur.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, StartedAt: now, FinishedAt: now}}}}
	if _, err := kube.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return exit
}
