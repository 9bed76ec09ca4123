package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// chartDir is the chart under test, relative to this package.
const chartDir = "../../charts/image-prewarm"

// toolTimeout bounds one helm or kubectl run. Not the test's context: tool also runs in
// cleanups, after that context is cancelled.
const toolTimeout = 2 * time.Minute

// tool runs helm or kubectl from the cluster's bin directory against the test cluster,
// with helm's state in a temporary directory.
func tool(t *testing.T, stdin []byte, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(kube.BinDir, name), args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kube.Kubeconfig,
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// mustTool is tool that fails the test on a non-zero exit.
func mustTool(t *testing.T, stdin []byte, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := tool(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return stdout, stderr
}

// helmTemplateArgs are the arguments of `helm template release chart -n ns args…`. No
// --kube-version: helm is built as its release is (build.sh), so its default Kubernetes
// version is a current one (TestChartRendersWithoutKubeVersion).
func helmTemplateArgs(release, ns string, args ...string) []string {
	return append([]string{"template", release, chartDir, "--namespace", ns}, args...)
}

// renderChart renders the chart (`helm template`) without its test hooks (templates/tests,
// which renderChartTests renders) and decodes every object.
func renderChart(t *testing.T, release, ns string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	return render(t, helmTemplateArgs(release, ns, append([]string{"--skip-tests"}, args...)...))
}

// renderChartTests renders only the chart's `helm test` hooks.
func renderChartTests(t *testing.T, release, ns string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	var tests []*unstructured.Unstructured
	for _, o := range render(t, helmTemplateArgs(release, ns, args...)) {
		if o.GetAnnotations()["helm.sh/hook"] == "test" {
			tests = append(tests, o)
		}
	}
	return tests
}

func render(t *testing.T, args []string) []*unstructured.Unstructured {
	t.Helper()
	out, _ := mustTool(t, nil, "helm", args...)
	objs, err := decodeManifests([]byte(out))
	if err != nil {
		t.Fatalf("decode rendered chart: %v\n%s", err, out)
	}
	return objs
}

func decodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// encodeManifests joins objects into one multi-document YAML stream (JSON documents).
func encodeManifests(t *testing.T, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
		buf.WriteString("\n")
	}
	return buf.Bytes()
}

func ofKinds(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if slices.Contains(kinds, o.GetKind()) {
			out = append(out, o)
		}
	}
	return out
}

func oneOfKind(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := ofKinds(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s in the rendered chart, got %d", kind, len(found))
	}
	return found[0]
}

// servedKind reports whether the API server serves kind in apiVersion.
func servedKind(apiVersion, kind string) bool {
	list, err := kube.Client.Discovery().ServerResourcesForGroupVersion(apiVersion)
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Kind == kind {
			return true
		}
	}
	return false
}

// kubectlApply applies objs with server-side apply (strict field validation) and returns
// kubectl's stderr, where the API server's warnings appear. dryRun: nothing is persisted.
func kubectlApply(t *testing.T, objs []*unstructured.Unstructured, dryRun bool) string {
	t.Helper()
	args := []string{"apply", "--server-side", "--field-manager=e2e-chart-test", "--validate=strict", "-f", "-"}
	if dryRun {
		args = append(args, "--dry-run=server")
	}
	_, stderr := mustTool(t, encodeManifests(t, objs), "kubectl", args...)
	return stderr
}

// applyForReal creates objs and deletes the cluster-scoped ones when the test ends
// (namespaced ones go with the test namespace).
func applyForReal(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	var clusterScoped []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetNamespace() == "" {
			clusterScoped = append(clusterScoped, o)
		}
	}
	t.Cleanup(func() {
		if len(clusterScoped) == 0 {
			return
		}
		_, stderr, err := tool(t, encodeManifests(t, clusterScoped), "kubectl", "delete", "--ignore-not-found", "-f", "-")
		if err != nil {
			t.Errorf("clean up cluster-scoped objects: %v\n%s", err, stderr)
		}
	})
	if stderr := kubectlApply(t, objs, false); stderr != "" {
		t.Logf("kubectl apply: %s", stderr)
	}
}
