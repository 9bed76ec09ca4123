package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/image-prewarm/image-prewarm/pkg/app"
	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

// scenarios are the ci/*-values.yaml files the chart must ship, each with its own checks
// on the rendered objects (common checks run for every scenario).
var scenarios = map[string]func(t *testing.T, ns string, objs []*unstructured.Unstructured){
	"default":                   checkDefaultScenario,
	"cert-manager":              checkCertManagerScenario,
	"existing-secret":           checkExistingSecretScenario,
	"with-prewarm-specs":        checkPrewarmSpecsScenario,
	"monitoring":                checkMonitoringScenario,
	"single-replica-no-webhook": checkSingleReplicaScenario,
}

func ciValuesFiles(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, f := range files {
		byName[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	for name := range scenarios {
		if byName[name] == "" {
			t.Errorf("missing scenario ci/%s-values.yaml", name)
		}
	}
	return byName
}

func TestChartLint(t *testing.T) {
	files := ciValuesFiles(t)
	files["chart defaults"] = ""
	for name, file := range files {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir}
			if file != "" {
				args = append(args, "--values", file)
			}
			out, _ := mustTool(t, nil, "helm", args...)
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint:\n%s", out)
			}
		})
	}
}

// TestChartScenariosServerDryRun renders every ci/*-values.yaml scenario and applies it
// to the real API server with a server-side dry-run, strict field validation, in a
// namespace enforcing and warning on Pod Security "restricted": every object must be
// accepted without a single warning, the cert-manager and Prometheus Operator ones
// against their real CRDs (chart_crds_test.go).
func TestChartScenariosServerDryRun(t *testing.T) {
	ns := "chart-scenarios"
	err := kube.Namespace(t.Context(), ns, map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
	})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	requireCRDs(t)
	for name, file := range ciValuesFiles(t) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			objs := renderChart(t, name, ns, "--values", file)
			checkCommon(t, objs)
			if check := scenarios[name]; check != nil {
				check(t, ns, objs)
			}
			for _, o := range objs {
				if !servedKind(o.GetAPIVersion(), o.GetKind()) {
					t.Fatalf("%s %s: %s is not served by the API server", o.GetKind(), o.GetName(), o.GetAPIVersion())
				}
			}
			stderr := kubectlApply(t, objs, true)
			if strings.Contains(stderr, "Warning") {
				t.Errorf("the API server warned:\n%s", stderr)
			}
			t.Logf("all %d objects accepted by the server-side dry-run (%v)", len(objs), time.Since(start).Round(time.Millisecond))
		})
	}
}

// checkCommon holds for every scenario: DNS-label names, a restricted Deployment.
func checkCommon(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		if errs := validation.IsDNS1123Label(o.GetName()); len(errs) > 0 {
			t.Errorf("%s %q: %s", o.GetKind(), o.GetName(), errs[0])
		}
	}
	d := deploymentOf(t, objs)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	sc, psc := c.SecurityContext, pod.SecurityContext
	restricted := psc != nil && *psc.RunAsNonRoot && *psc.RunAsUser == 65532 && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault &&
		sc != nil && *sc.ReadOnlyRootFilesystem && !*sc.AllowPrivilegeEscalation && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"})
	if !restricted {
		t.Errorf("Deployment security context is not restricted: pod %+v container %+v", psc, sc)
	}
	live, ready := c.LivenessProbe.HTTPGet, c.ReadinessProbe.HTTPGet
	if live.Path != app.LivePath || ready.Path != app.ReadyPath || live.Port.String() != "metrics" || ready.Port.String() != "metrics" {
		t.Errorf("probes: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	// HTTPS on the metrics port exactly when the binary serves it so (--metrics-secure).
	secure := !slices.Contains(c.Args, "--metrics-secure=false")
	if want := map[bool]corev1.URIScheme{true: corev1.URISchemeHTTPS, false: corev1.URISchemeHTTP}[secure]; live.Scheme != want || ready.Scheme != want {
		t.Errorf("probe schemes %s and %s, want %s (args %v)", live.Scheme, ready.Scheme, want, c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("downward API env: %v", env)
	}
}

func deploymentOf(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(oneOfKind(t, objs, "Deployment").Object, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func checkDefaultScenario(t *testing.T, _ string, objs []*unstructured.Unstructured) {
	d := deploymentOf(t, objs)
	if *d.Spec.Replicas != 2 || !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--leader-elect=true") {
		t.Errorf("want 2 leader-elected replicas: replicas %d args %v", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Args)
	}
	if len(ofKinds(objs, "PodDisruptionBudget")) != 1 {
		t.Error("no PodDisruptionBudget")
	}
	checkHelmCA(t, oneOfKind(t, objs, "Secret"), objs)
}

// checkHelmCA: the CA in the tls.mode=helm Secret is the caBundle of both webhooks and
// signed the serving certificate for the Service's DNS name.
func checkHelmCA(t *testing.T, secret *unstructured.Unstructured, objs []*unstructured.Unstructured) {
	t.Helper()
	data, _, _ := unstructured.NestedStringMap(secret.Object, "data")
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		if got := caBundleOf(t, oneOfKind(t, objs, kind)); got != data["ca.crt"] {
			t.Errorf("%s caBundle differs from the Secret's ca.crt", kind)
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b64(t, data["ca.crt"])) {
		t.Fatal("ca.crt holds no certificate")
	}
	block, _ := pem.Decode(b64(t, data["tls.crt"]))
	if block == nil {
		t.Fatal("tls.crt holds no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	svc := oneOfKind(t, objs, "Service")
	dnsName := fmt.Sprintf("%s.%s.svc", svc.GetName(), svc.GetNamespace())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving certificate for %s: %v", dnsName, err)
	}
}

func caBundleOf(t *testing.T, webhookConfig *unstructured.Unstructured) string {
	t.Helper()
	hooks, _, _ := unstructured.NestedSlice(webhookConfig.Object, "webhooks")
	if len(hooks) != 1 {
		t.Fatalf("%s has %d webhooks, want 1", webhookConfig.GetKind(), len(hooks))
	}
	ca, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle")
	return ca
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkCertManagerScenario(t *testing.T, ns string, objs []*unstructured.Unstructured) {
	cert := oneOfKind(t, objs, "Certificate")
	oneOfKind(t, objs, "Issuer")
	want := ns + "/" + cert.GetName()
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		wh := oneOfKind(t, objs, kind)
		if got := wh.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != want {
			t.Errorf("%s inject-ca-from = %q, want %q", kind, got, want)
		}
		if caBundleOf(t, wh) != "" {
			t.Errorf("%s has a caBundle; cainjector owns it", kind)
		}
	}
	if len(ofKinds(objs, "Secret")) != 0 {
		t.Error("a Secret is rendered; cert-manager writes it")
	}
	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	if vol := deploymentOf(t, objs).Spec.Template.Spec.Volumes[0]; vol.Secret.SecretName != secretName {
		t.Errorf("Deployment mounts %s, Certificate writes %s", vol.Secret.SecretName, secretName)
	}
}

func checkExistingSecretScenario(t *testing.T, ns string, objs []*unstructured.Unstructured) {
	var values struct {
		TLS struct {
			ExistingSecret struct{ Name, CABundle string } `json:"existingSecret"`
		} `json:"tls"`
	}
	file := filepath.Join(chartDir, "ci", "existing-secret-values.yaml")
	raw, err := os.ReadFile(file)
	if err == nil {
		err = yaml.Unmarshal(raw, &values)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(ofKinds(objs, "Secret", "Certificate")) != 0 {
		t.Error("a Secret or Certificate is rendered for an existing Secret")
	}
	if vol := deploymentOf(t, objs).Spec.Template.Spec.Volumes[0]; vol.Secret.SecretName != values.TLS.ExistingSecret.Name {
		t.Errorf("Deployment mounts %s, want %s", vol.Secret.SecretName, values.TLS.ExistingSecret.Name)
	}
	// The CA given as base64 of the PEM, as certs/generate.sh prints it, lands unchanged.
	encoded := base64.StdEncoding.EncodeToString([]byte(values.TLS.ExistingSecret.CABundle))
	fromBase64 := renderChart(t, "existing-b64", ns, "--values", file, "--set", "tls.existingSecret.caBundle="+encoded)
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		if got := string(b64(t, caBundleOf(t, oneOfKind(t, objs, kind)))); got != values.TLS.ExistingSecret.CABundle {
			t.Errorf("%s caBundle is not the PEM of tls.existingSecret.caBundle", kind)
		}
		if got := caBundleOf(t, oneOfKind(t, fromBase64, kind)); got != encoded {
			t.Errorf("%s caBundle from a base64 tls.existingSecret.caBundle: %.40s…, want %.40s…", kind, got, encoded)
		}
	}
}

func checkPrewarmSpecsScenario(t *testing.T, _ string, objs []*unstructured.Unstructured) {
	specs := 0
	for _, o := range ofKinds(objs, "ConfigMap") {
		if o.GetLabels()[config.ConfigLabel] != "true" {
			continue
		}
		specs++
		cm := &corev1.ConfigMap{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, cm); err != nil {
			t.Fatal(err)
		}
		spec, err := config.FromConfigMap(cm)
		if err != nil {
			t.Errorf("ConfigMap %s: %v", cm.Name, err)
			continue
		}
		t.Logf("spec %s: %d images, run %s", cm.Name, len(spec.Images), spec.RunID())
	}
	if specs != 2 {
		t.Errorf("%d prewarm spec ConfigMaps, want 2", specs)
	}
}

func checkMonitoringScenario(t *testing.T, ns string, objs []*unstructured.Unstructured) {
	checkServiceMonitorScrapesWithToken(t, ns, objs)
	var dashboards int
	for _, o := range ofKinds(objs, "ConfigMap") {
		if o.GetLabels()["grafana_dashboard"] != "1" {
			continue
		}
		dashboards++
		data, _, _ := unstructured.NestedStringMap(o.Object, "data")
		var d struct{ Title string }
		if err := json.Unmarshal([]byte(data["image-prewarm.json"]), &d); err != nil || d.Title == "" {
			t.Errorf("dashboard JSON (title %q): %v", d.Title, err)
		}
	}
	if dashboards != 1 {
		t.Errorf("%d dashboard ConfigMaps labeled grafana_dashboard=1, want 1", dashboards)
	}
	raw, err := os.ReadFile(filepath.Join(chartDir, "alerts", "image-prewarm.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(raw, &file); err != nil {
		t.Fatalf("alerts file is not a Prometheus rule file: %v", err)
	}
	groups, _, _ := unstructured.NestedSlice(oneOfKind(t, objs, "PrometheusRule").Object, "spec", "groups")
	want, _ := json.Marshal(file.Groups)
	got, _ := json.Marshal(groups)
	if len(groups) != len(file.Groups) || string(got) != string(want) {
		t.Errorf("PrometheusRule groups %s, want the alerts file's %s", got, want)
	}
}

// checkServiceMonitorScrapesWithToken: the ServiceMonitor scrapes the Service's https
// port with Prometheus's token, verifying the certificate against the TLS Secret's CA for
// the Service's name, and the metrics-reader ClusterRole grants what /metrics checks.
func checkServiceMonitorScrapesWithToken(t *testing.T, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	endpoints, _, _ := unstructured.NestedSlice(oneOfKind(t, objs, "ServiceMonitor").Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints: %v", endpoints)
	}
	ep := endpoints[0].(map[string]any)
	svc := oneOfKind(t, objs, "Service")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	var portNames []string
	for _, p := range ports {
		portNames = append(portNames, p.(map[string]any)["name"].(string))
	}
	secret, _, _ := unstructured.NestedString(ep, "tlsConfig", "ca", "secret", "name")
	serverName, _, _ := unstructured.NestedString(ep, "tlsConfig", "serverName")
	if ep["scheme"] != "https" || !slices.Contains(portNames, ep["port"].(string)) || ep["bearerTokenFile"] != "/var/run/secrets/kubernetes.io/serviceaccount/token" ||
		secret != deploymentOf(t, objs).Spec.Template.Spec.Volumes[0].Secret.SecretName || serverName != svc.GetName()+"."+ns+".svc" {
		t.Errorf("ServiceMonitor endpoint %v; Service ports %v", ep, portNames)
	}
	var reader *rbacv1.ClusterRole
	for _, o := range ofKinds(objs, "ClusterRole") {
		if strings.HasSuffix(o.GetName(), "-metrics-reader") {
			reader = &rbacv1.ClusterRole{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, reader); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{app.MetricsPath}, Verbs: []string{"get"}}}
	if reader == nil || !apiequality.Semantic.DeepEqual(reader.Rules, want) {
		t.Errorf("metrics-reader ClusterRole %+v, want rules %+v", reader, want)
	}
}

func checkSingleReplicaScenario(t *testing.T, _ string, objs []*unstructured.Unstructured) {
	d := deploymentOf(t, objs)
	if *d.Spec.Replicas != 1 || !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--webhook=false") {
		t.Errorf("replicas %d args %v", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Args)
	}
	if n := len(ofKinds(objs, "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "PodDisruptionBudget")); n != 0 {
		t.Errorf("%d webhook configurations or PodDisruptionBudgets rendered, want none", n)
	}
	if len(ofKinds(objs, "Secret")) != 1 {
		t.Error("the task API still needs its TLS Secret")
	}
}

func TestChartSchemaRejectsBadValues(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"unknown top-level key":  {args: []string{"--set", "replicas=3"}, want: "replicas"},
		"wrong type":             {args: []string{"--set-string", "replicaCount=two"}, want: "replicaCount"},
		"unknown nested key":     {args: []string{"--set", "webhook.port=9443"}, want: "port"},
		"bad TLS mode":           {args: []string{"--set", "tls.mode=vault"}, want: "mode"},
		"existingSecret no name": {args: []string{"--set", "tls.mode=existingSecret"}, want: "existingSecret"},
		"existingSecret bad CA":  {args: []string{"--set", "tls.mode=existingSecret", "--set", "tls.existingSecret.name=x", "--set", "tls.existingSecret.caBundle=junk"}, want: "caBundle"},
		"bad failurePolicy":      {args: []string{"--set", "webhook.mutating.failurePolicy=Sometimes"}, want: "failurePolicy"},
		"bad spec name":          {args: []string{"--set", "prewarm.specs.Bad_Name.images[0]=nginx"}, want: "Bad_Name"},
		"unknown spec field":     {args: []string{"--set", "prewarm.specs.ml.images[0]=nginx", "--set", "prewarm.specs.ml.batchSize=3"}, want: "batchSize"},
		"spec without images":    {args: []string{"--set", "prewarm.specs.ml.nodeSelector.a=b"}, want: "images"},
		"bad pull timeout":       {args: []string{"--set", "prewarm.specs.ml.images[0]=nginx", "--set", "prewarm.specs.ml.rollout.pullTimeout=soon"}, want: "pullTimeout"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, stderr, err := tool(t, nil, "helm", helmTemplateArgs("schema", "default", tc.args...)...)
			if err == nil || !strings.Contains(stderr, "schema") || !strings.Contains(stderr, tc.want) {
				t.Fatalf("want a schema error naming %q; err %v, stderr:\n%s", tc.want, err, stderr)
			}
		})
	}
}

// TestChartNamesTruncatedTo63 renders with the longest names and checks every object
// name, every label value and the Lease name are valid DNS labels / label values.
func TestChartNamesTruncatedTo63(t *testing.T) {
	long := strings.Repeat("x", 52) + "y" // helm's longest release name (53)
	for name, args := range map[string][]string{
		"long release":      {"--set", "nameOverride=" + strings.Repeat("n", 63)},
		"long fullname":     {"--set", "fullnameOverride=" + strings.Repeat("f", 80)},
		"long cert-manager": {"--values", filepath.Join(chartDir, "ci", "cert-manager-values.yaml"), "--set", "fullnameOverride=" + strings.Repeat("c", 70)},
	} {
		t.Run(name, func(t *testing.T) {
			objs := renderChart(t, long, "default", append(args, "--values", filepath.Join(chartDir, "ci", "monitoring-values.yaml"))...)
			checkCommon(t, objs)
			for _, o := range objs {
				for k, v := range o.GetLabels() {
					if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
						t.Errorf("%s %s label %s=%q: %s", o.GetKind(), o.GetName(), k, v, errs[0])
					}
				}
			}
			for _, arg := range deploymentOf(t, objs).Spec.Template.Spec.Containers[0].Args {
				if lease, ok := strings.CutPrefix(arg, "--lease-name="); ok && len(validation.IsDNS1123Label(lease)) > 0 {
					t.Errorf("lease name %q is not a DNS label", lease)
				}
			}
		})
	}
}

// TestChartHelmTLSReusedOnUpgrade installs the chart for real (tls.mode=helm), upgrades
// it, and checks the upgrade kept the certificate and the CA in both caBundles.
func TestChartHelmTLSReusedOnUpgrade(t *testing.T) {
	ns := "chart-tls-upgrade"
	err := kube.Namespace(t.Context(), ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	release := "tlsreuse"
	// No node carries this label: the replicas stay Pending and touch no other test.
	pin := []string{"--set-string", "nodeSelector.image-prewarm-e2e=" + ns}
	t.Cleanup(func() {
		cmd := []string{"uninstall", release, "--namespace", ns, "--wait", "--timeout", "60s"}
		if _, stderr, err := tool(t, nil, "helm", cmd...); err != nil {
			t.Errorf("helm uninstall: %v\n%s", err, stderr)
		}
	})
	start := time.Now()
	mustTool(t, nil, "helm", append([]string{"install", release, chartDir, "--namespace", ns}, pin...)...)
	installed := liveTLS(t, ns, release)
	mustTool(t, nil, "helm", append([]string{"upgrade", release, chartDir, "--namespace", ns, "--set", "logging.verbosity=2"}, pin...)...)
	upgraded := liveTLS(t, ns, release)
	if installed != upgraded {
		t.Fatalf("helm upgrade replaced the certificate or the CA (sha256 prefixes):\nbefore %s\nafter  %s", installed, upgraded)
	}
	d, err := kube.Client.AppsV1().Deployments(ns).Get(t.Context(), release+"-image-prewarm", metav1.GetOptions{})
	if err != nil || !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "-v=2") {
		t.Fatalf("the upgrade did not reach the Deployment: %v", err)
	}
	t.Logf("install + upgrade kept the Secret and caBundles (%v)", time.Since(start).Round(time.Millisecond))
}

type tlsState struct{ secretCA, secretCert, mutatingCA, validatingCA string }

func (s tlsState) String() string {
	short := func(v string) string { sum := sha256.Sum256([]byte(v)); return hex.EncodeToString(sum[:4]) }
	return fmt.Sprintf("ca.crt %s tls.crt %s mutating caBundle %s validating caBundle %s",
		short(s.secretCA), short(s.secretCert), short(s.mutatingCA), short(s.validatingCA))
}

func liveTLS(t *testing.T, ns, release string) tlsState {
	t.Helper()
	name := release + "-image-prewarm"
	ctx := t.Context()
	s, err := kube.Client.CoreV1().Secrets(ns).Get(ctx, name+"-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := kube.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := tlsState{string(s.Data["ca.crt"]), string(s.Data["tls.crt"]), string(m.Webhooks[0].ClientConfig.CABundle), string(v.Webhooks[0].ClientConfig.CABundle)}
	if st.secretCA == "" || st.mutatingCA != st.secretCA || st.validatingCA != st.secretCA {
		t.Fatal("the webhooks' caBundle is not the Secret's ca.crt")
	}
	return st
}

// TestChartDeploymentAdmittedUnderPodSecurityRestricted creates the chart's Deployment
// for real in a namespace enforcing Pod Security "restricted": the ReplicaSet must create
// every pod (kwok then runs them on this test's nodes) with no FailedCreate.
func TestChartDeploymentAdmittedUnderPodSecurityRestricted(t *testing.T) {
	e := newEnv(t)
	e.nodes("n", 2)
	assertRestrictedEnforced(t, e.ns)
	start := time.Now()
	objs := renderChart(t, "psa", e.ns, "--set-string", "nodeSelector.e2e="+e.ns)
	applyForReal(t, ofKinds(objs, "ServiceAccount", "Secret", "Deployment"))
	d := deploymentOf(t, objs)
	e.eventually("Deployment available", time.Minute, func(ctx context.Context) (bool, error) {
		for _, ev := range e.events() {
			if ev.Reason == "FailedCreate" {
				return false, fmt.Errorf("%s %s: %s", ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Message)
			}
		}
		cur, err := kube.Client.AppsV1().Deployments(e.ns).Get(ctx, d.Name, metav1.GetOptions{})
		return err == nil && cur.Status.AvailableReplicas == *d.Spec.Replicas, nil
	})
	rss, err := kube.Client.AppsV1().ReplicaSets(e.ns).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(rss.Items) != 1 || rss.Items[0].Status.Replicas != *d.Spec.Replicas {
		t.Fatalf("want one ReplicaSet with %d pods: %v %+v", *d.Spec.Replicas, err, rss)
	}
	pods, err := kube.Client.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != int(*d.Spec.Replicas) {
		t.Fatalf("want %d pods: %v", *d.Spec.Replicas, err)
	}
	assertNoFailedCreate(t, e)
	t.Logf("%d pods admitted under restricted and running on kwok nodes (%v)", len(pods.Items), time.Since(start).Round(time.Millisecond))
}

// assertRestrictedEnforced proves the namespace really enforces "restricted": a pod
// without a security context is rejected (server-side dry-run).
func assertRestrictedEnforced(t *testing.T, ns string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "baseline-only", Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1.27"}}},
	}
	_, err := kube.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Fatalf("namespace %s does not enforce Pod Security restricted: %v", ns, err)
	}
}

func assertNoFailedCreate(t *testing.T, e *env) {
	t.Helper()
	for _, ev := range e.events() {
		if ev.Reason == "FailedCreate" {
			t.Errorf("%s %s: FailedCreate: %s", ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Message)
		}
	}
}

// TestChartWebhooksMatchGoConfiguration: the chart's webhook configurations are
// pkg/webhook's MutatingConfiguration and ValidatingConfiguration (the ones the webhook
// e2e tests register), plus the chart's namespaceSelector on the release namespace.
func TestChartWebhooksMatchGoConfiguration(t *testing.T) {
	ns := "image-prewarm"
	objs := renderChart(t, "image-prewarm", ns, "--set", "webhook.mutating.failurePolicy=Fail")
	var mutating admissionregistrationv1.MutatingWebhookConfiguration
	var validating admissionregistrationv1.ValidatingWebhookConfiguration
	for obj, into := range map[*unstructured.Unstructured]any{
		oneOfKind(t, objs, "MutatingWebhookConfiguration"):   &mutating,
		oneOfKind(t, objs, "ValidatingWebhookConfiguration"): &validating,
	} {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
			t.Fatal(err)
		}
	}
	onlyReleaseNamespace := &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	withoutPath := func(cc admissionregistrationv1.WebhookClientConfig) admissionregistrationv1.WebhookClientConfig {
		svc := *cc.Service
		svc.Path = nil
		cc.Service = &svc
		return cc
	}

	gotM := mutating.Webhooks[0]
	wantM := webhook.MutatingConfiguration(mutating.Name, withoutPath(gotM.ClientConfig), admissionregistrationv1.Fail).Webhooks[0]
	wantM.NamespaceSelector = onlyReleaseNamespace
	if !apiequality.Semantic.DeepEqual(gotM, wantM) {
		t.Errorf("mutating webhook differs from pkg/webhook's:\n%s", cmpJSON(gotM, wantM))
	}
	gotV := validating.Webhooks[0]
	wantV := webhook.ValidatingConfiguration(validating.Name, withoutPath(gotV.ClientConfig), admissionregistrationv1.Fail).Webhooks[0]
	wantV.NamespaceSelector = onlyReleaseNamespace
	if !apiequality.Semantic.DeepEqual(gotV, wantV) {
		t.Errorf("validating webhook differs from pkg/webhook's:\n%s", cmpJSON(gotV, wantV))
	}
	svc := gotM.ClientConfig.Service
	if svc.Name != "image-prewarm" || svc.Namespace != ns || *svc.Port != 443 {
		t.Errorf("webhook Service %+v, want image-prewarm.%s:443", svc, ns)
	}
}

func cmpJSON(got, want any) string {
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	return fmt.Sprintf("chart: %s\npkg/webhook: %s", g, w)
}

// TestChartValuesDocumented: a comment line right above every key of values.yaml (the
// fields of a list item's default are data, not keys).
func TestChartValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^\s*([A-Za-z_][\w.-]*):`)
	lines := strings.Split(string(raw), "\n")
	keys, itemIndent := 0, -1
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case strings.HasPrefix(trimmed, "#") || trimmed == "":
			continue
		case strings.HasPrefix(trimmed, "- "):
			itemIndent = indent
			continue
		case itemIndent >= 0 && indent > itemIndent:
			continue
		}
		itemIndent = -1
		m := key.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		keys++
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			t.Errorf("values.yaml:%d: key %q has no comment above it", i+1, m[1])
		}
	}
	if keys < 50 {
		t.Fatalf("found only %d keys; the check is broken", keys)
	}
}
