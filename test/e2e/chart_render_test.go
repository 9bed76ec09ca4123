package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestChartRendersWithoutKubeVersion: the helm that build.sh makes is built as helm's
// release Makefile builds it, so it reports a release version and assumes a current
// Kubernetes when no cluster and no --kube-version are given. A plain `go install`
// assumes v1.20.0, and this chart (kubeVersion >=1.30) then fails to render.
func TestChartRendersWithoutKubeVersion(t *testing.T) {
	version, _ := mustTool(t, nil, "helm", "version", "--template", "{{ .Version }}")
	if !regexp.MustCompile(`^v3\.\d+\.\d+$`).MatchString(version) {
		t.Errorf("helm version %q, want a release version vX.Y.Z", version)
	}
	probe := t.TempDir()
	writeFiles(t, probe, map[string]string{
		"Chart.yaml":          "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
		"templates/kube.yaml": "# {{ .Capabilities.KubeVersion.Version }}\n",
	})
	out, _ := mustTool(t, nil, "helm", "template", probe)
	assumed := regexp.MustCompile(`# v(\d+)\.(\d+)\.\d+`).FindStringSubmatch(out)
	floor := chartKubeVersionFloor(t)
	if assumed == nil || atoi(t, assumed[1]) != 1 || atoi(t, assumed[2]) < floor {
		t.Fatalf("helm assumes Kubernetes %q without --kube-version, below the chart's floor 1.%d", out, floor)
	}
	objs := renderChart(t, "plain", "default") // no --kube-version: the chart's floor holds
	t.Logf("helm %s assumes Kubernetes v%s.%s; the chart renders %d objects without flags", version, assumed[1], assumed[2], len(objs))
}

// chartKubeVersionFloor is the minor version of Chart.yaml's kubeVersion ">=1.N…".
func chartKubeVersionFloor(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^kubeVersion: ">=1\.(\d+)`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("Chart.yaml has no kubeVersion >=1.N")
	}
	return atoi(t, string(m[1]))
}

// TestChartMetricsModes renders the two other ways to serve and scrape /metrics: a
// ServiceMonitor reading a chart-made scraper token from a Secret (for a Prometheus that
// may not read files), and plain HTTP (metrics.secure=false: no token, no TLS). The
// scraper's objects pass a server-side dry-run in a restricted namespace.
func TestChartMetricsModes(t *testing.T) {
	ns := "chart-scenarios"
	monitoring := filepath.Join(chartDir, "ci", "monitoring-values.yaml")
	t.Run("token from a Secret", func(t *testing.T) {
		objs := renderChart(t, "scrape", ns, "--values", monitoring, "--set", "serviceMonitor.authorization=secret")
		scraper := ofKinds(objs, "ServiceAccount", "Secret", "ClusterRoleBinding")
		var names []string
		for _, o := range scraper {
			if strings.HasSuffix(o.GetName(), "-metrics-scraper") {
				names = append(names, o.GetKind())
			}
		}
		ep := serviceMonitorEndpoint(t, objs)
		cred, _, _ := unstructured.NestedString(ep, "authorization", "credentials", "name")
		if len(names) != 3 || !strings.HasSuffix(cred, "-metrics-scraper") || ep["bearerTokenFile"] != nil {
			t.Errorf("scraper objects %v, ServiceMonitor endpoint %v", names, ep)
		}
		if err := kube.Namespace(t.Context(), ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatal(err)
		}
		if stderr := kubectlApply(t, ofKinds(objs, "ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding"), true); strings.Contains(stderr, "Warning") {
			t.Errorf("the API server warned:\n%s", stderr)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		objs := renderChart(t, "plain", ns, "--values", monitoring, "--set", "metrics.secure=false")
		checkCommon(t, objs) // probes over HTTP
		if args := deploymentOf(t, objs).Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--metrics-secure=false") {
			t.Errorf("args %v", args)
		}
		ep := serviceMonitorEndpoint(t, objs)
		if ep["scheme"] != "http" || ep["port"] != "http-metrics" || ep["bearerTokenFile"] != nil || ep["tlsConfig"] != nil {
			t.Errorf("ServiceMonitor endpoint %v", ep)
		}
	})
}

func serviceMonitorEndpoint(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	endpoints, _, _ := unstructured.NestedSlice(oneOfKind(t, objs, "ServiceMonitor").Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints: %v", endpoints)
	}
	return endpoints[0].(map[string]any)
}

// TestChartTestHooks: `helm test` renders a restricted pod running our image's selftest
// with the checks the values turn on (none: no test), and RBAC that grants only what
// those checks need; everything is a test hook, so an install creates none of it.
func TestChartTestHooks(t *testing.T) {
	tests := map[string]struct {
		args        []string
		wantArgs    []string
		wantVerbs   []string // resource/verb pairs of the Role
		wantNoHooks bool
	}{
		"defaults": {wantArgs: []string{"--webhook=true", "--lease-name=hooks-image-prewarm-controller"}, wantVerbs: []string{"configmaps/create", "leases/get"}},
		"no webhook": {args: []string{"--values", filepath.Join(chartDir, "ci", "single-replica-no-webhook-values.yaml")},
			wantArgs: []string{"--webhook=false", "--lease-name=hooks-image-prewarm-controller"}, wantVerbs: []string{"leases/get"}},
		"nothing to check": {args: []string{"--set", "webhook.enabled=false", "--set", "controller.leaderElection.enabled=false"},
			wantNoHooks: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hooks := renderChartTests(t, "hooks", "default", tc.args...)
			if tc.wantNoHooks {
				if len(hooks) != 0 {
					t.Fatalf("%d test hooks rendered with nothing to check", len(hooks))
				}
				return
			}
			containers, _, _ := unstructured.NestedSlice(oneOfKind(t, hooks, "Pod").Object, "spec", "containers")
			args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
			for _, want := range append([]string{"selftest"}, tc.wantArgs...) {
				if !slices.Contains(args, want) {
					t.Errorf("selftest args %v lack %s", args, want)
				}
			}
			if got := roleVerbs(oneOfKind(t, hooks, "Role")); !slices.Equal(got, tc.wantVerbs) {
				t.Errorf("Role grants %v, want %v", got, tc.wantVerbs)
			}
			for _, o := range renderChart(t, "hooks", "default", tc.args...) {
				if o.GetAnnotations()["helm.sh/hook"] != "" {
					t.Errorf("%s %s is a hook in the install", o.GetKind(), o.GetName())
				}
			}
		})
	}
}

func roleVerbs(role *unstructured.Unstructured) []string {
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	var out []string
	for _, r := range rules {
		rule := r.(map[string]any)
		res, _, _ := unstructured.NestedStringSlice(rule, "resources")
		verbs, _, _ := unstructured.NestedStringSlice(rule, "verbs")
		for _, x := range res {
			for _, v := range verbs {
				out = append(out, x+"/"+v)
			}
		}
	}
	slices.Sort(out)
	return out
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
