package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
)

// crdSources are the CRDs of the kinds the chart renders beyond Kubernetes' own (Issuer,
// Certificate, ServiceMonitor, PrometheusRule), as their projects ship them inside their
// Go modules. `go mod download` puts a module in the module cache, the same for a
// developer and for CI, so the server-side dry-run checks those objects against the
// real schemas instead of skipping them.
var crdSources = []struct {
	module, version, dir string
	files                []string
	served               [][2]string // apiVersion, kind
}{
	{
		module: "github.com/cert-manager/cert-manager", version: "v1.21.2", dir: "deploy/crds",
		files:  []string{"cert-manager.io_issuers.yaml", "cert-manager.io_certificates.yaml"},
		served: [][2]string{{"cert-manager.io/v1", "Issuer"}, {"cert-manager.io/v1", "Certificate"}},
	},
	{
		module: "github.com/prometheus-operator/prometheus-operator", version: "v0.85.0", dir: "example/prometheus-operator-crd",
		files:  []string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"},
		served: [][2]string{{"monitoring.coreos.com/v1", "ServiceMonitor"}, {"monitoring.coreos.com/v1", "PrometheusRule"}},
	},
}

// The CRDs are installed once per test binary, by the first test that needs them.
var (
	crdsOnce sync.Once
	crdsErr  error
)

// requireCRDs installs the chart's third-party CRDs (once) or fails the test.
func requireCRDs(t *testing.T) {
	t.Helper()
	crdsOnce.Do(func() {
		start := time.Now()
		if crdsErr = installCRDs(t); crdsErr == nil {
			t.Logf("cert-manager and Prometheus Operator CRDs from the Go module cache, served after %v", time.Since(start).Round(time.Millisecond))
		}
	})
	if crdsErr != nil {
		t.Fatal(crdsErr)
	}
}

func installCRDs(t *testing.T) error {
	for _, src := range crdSources {
		dir, err := moduleDir(src.module, src.version)
		if err != nil {
			return err
		}
		args := []string{"apply", "--server-side", "--field-manager=e2e-chart-crds"}
		for _, f := range src.files {
			args = append(args, "-f", filepath.Join(dir, src.dir, f))
		}
		if _, stderr, err := tool(t, nil, "kubectl", args...); err != nil {
			return fmt.Errorf("install the CRDs of %s: %w\n%s", src.module, err, stderr)
		}
	}
	return waitServed()
}

// moduleDir downloads module@version into the module cache (a no-op when it is there)
// and returns its directory. Outside this module, so go.mod is never touched.
func moduleDir(module, version string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w\n%s%s", module, version, err, out, stderr.String())
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s", module, version, err, info.Error)
	}
	return info.Dir, nil
}

// waitServed waits until discovery lists every installed kind.
func waitServed() error {
	return wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for _, src := range crdSources {
			for _, s := range src.served {
				if !servedKind(s[0], s[1]) {
					return false, nil
				}
			}
		}
		return true, nil
	})
}

// TestChartCRDsRejectUnknownFields: the dry-run really checks the third-party objects:
// a misspelt ServiceMonitor field is refused by its CRD's schema.
func TestChartCRDsRejectUnknownFields(t *testing.T) {
	requireCRDs(t)
	sm := oneOfKind(t, renderChart(t, "typo", "default", "--values", filepath.Join(chartDir, "ci", "monitoring-values.yaml")), "ServiceMonitor")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	endpoints[0].(map[string]any)["bearerTokenFiel"] = "/token"
	if err := unstructured.SetNestedSlice(sm.Object, endpoints, "spec", "endpoints"); err != nil {
		t.Fatal(err)
	}
	args := []string{"apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-"}
	_, stderr, err := tool(t, encodeManifests(t, []*unstructured.Unstructured{sm}), "kubectl", args...)
	if err == nil || !strings.Contains(stderr, "bearerTokenFiel") {
		t.Fatalf("a ServiceMonitor with an unknown field: err %v, stderr %s", err, stderr)
	}
}
