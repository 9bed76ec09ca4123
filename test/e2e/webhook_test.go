package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging/logtest"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

const injected = "image-pull-secret-x"

// TestWebhookInjectsPullSecret: the API server calls the mutating webhook over TLS for
// labeled pods, which are stored with the label's Secret in imagePullSecrets exactly once.
func TestWebhookInjectsPullSecret(t *testing.T) {
	e := newEnv(t)
	w := startWebhook(t)
	e.registerMutating(w, admissionregistrationv1.Fail)
	e.waitMutating()

	warnings := &logtest.Buffer{}
	client := warningClient(t, warnings)
	label := map[string]string{jobs.LabelPullSecret: injected}
	tests := map[string]struct {
		pod         *corev1.Pod
		wantSecrets []string
		wantWarning string
	}{
		"labeled, no imagePullSecrets": {pod: e.pod("bare", label), wantSecrets: []string{injected}},
		"labeled, already present":     {pod: e.pod("present", label, injected), wantSecrets: []string{injected}},
		"labeled, another secret":      {pod: e.pod("other", label, "team-secret"), wantSecrets: []string{"team-secret", injected}},
		"unlabeled":                    {pod: e.pod("unlabeled", nil), wantSecrets: nil},
		"label not a Secret name": {
			pod:         e.pod("bad-label", map[string]string{jobs.LabelPullSecret: "Not_A_Name"}),
			wantWarning: `"Not_A_Name" is not a valid Secret name`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			created, err := e.createPod(t.Context(), client, tc.pod, false)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := kube.Client.CoreV1().Pods(e.ns).Get(t.Context(), created.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := secretNames(stored); !slices.Equal(got, tc.wantSecrets) {
				t.Errorf("stored imagePullSecrets %q, want %q", got, tc.wantSecrets)
			}
			if tc.wantWarning != "" && !strings.Contains(warnings.String(), tc.wantWarning) {
				t.Errorf("API warnings %q lack %q", warnings.String(), tc.wantWarning)
			}
		})
	}
	t.Run("prewarm Job pods", func(t *testing.T) { e.checkJobPodsThroughWebhook() })
}

// checkJobPodsThroughWebhook runs a private-registry prewarm: its Jobs' pods carry the
// pull-secret label and go through the webhook, which must not duplicate the entry the
// Job template already has.
func (e *env) checkJobPodsThroughWebhook() {
	e.t.Helper()
	nodes := e.nodes("n", 3)
	e.credentials("harbor-robot", "robot", sentinel)
	before := webhookRequests(e.t, webhook.MutatePodsName, metrics.WebhookAllowed) + webhookRequests(e.t, webhook.MutatePodsName, metrics.WebhookPatched)
	e.startController()
	e.applySpec("ml", e.privateSpec(3, "harbor.example.com/ml/a:1"))
	e.waitStatus("ml", "run succeeded", phaseIs(status.PhaseSucceeded))
	pods := e.createdPods.pods()
	if len(pods) < len(nodes) {
		e.t.Fatalf("%d prewarm pods, want at least %d", len(pods), len(nodes))
	}
	for _, p := range pods {
		secret := p.Labels[jobs.LabelPullSecret]
		if got := secretNames(&p); secret == "" || !slices.Equal(got, []string{secret}) {
			e.t.Errorf("pod %s (label %q) has imagePullSecrets %q, want exactly [%s]", p.Name, secret, got, secret)
		}
	}
	after := webhookRequests(e.t, webhook.MutatePodsName, metrics.WebhookAllowed) + webhookRequests(e.t, webhook.MutatePodsName, metrics.WebhookPatched)
	if calls := int(after - before); calls < len(pods) {
		e.t.Errorf("the webhook answered %d requests for %d prewarm pods; each pod must go through it", calls, len(pods))
	}
}

// TestWebhookOutage: with the server down, unlabeled pods never reach it, and labeled
// pods follow the configured failurePolicy.
func TestWebhookOutage(t *testing.T) {
	e := newEnv(t)
	w := startWebhook(t)
	name := e.registerMutating(w, admissionregistrationv1.Fail)
	e.waitMutating() // the API server knows the configuration before the outage
	w.shutdown()

	if _, err := e.createPod(t.Context(), kube.Client, e.pod("unlabeled", map[string]string{"app": "other"}), false); err != nil {
		t.Fatalf("an unlabeled pod was affected by the webhook outage: %v", err)
	}
	label := map[string]string{jobs.LabelPullSecret: injected}
	// Ordered: Fail is already in force; the change to Ignore reaches the API server
	// asynchronously, hence the polling before the real create.
	for _, tc := range []struct {
		policy    admissionregistrationv1.FailurePolicyType
		wantAdmit bool
	}{
		{policy: admissionregistrationv1.Fail, wantAdmit: false},
		{policy: admissionregistrationv1.Ignore, wantAdmit: true},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			e.setFailurePolicy(name, tc.policy)
			e.eventually("failurePolicy "+string(tc.policy)+" in force", 30*time.Second, func(ctx context.Context) (bool, error) {
				_, err := e.createPod(ctx, kube.Client, e.pod("probe", label), true)
				return (err == nil) == tc.wantAdmit, nil
			})
			stored, err := e.createPod(t.Context(), kube.Client, e.pod("labeled-"+strings.ToLower(string(tc.policy)), label), false)
			switch {
			case tc.wantAdmit && err != nil:
				t.Fatalf("failurePolicy Ignore: labeled pod rejected: %v", err)
			case tc.wantAdmit && len(stored.Spec.ImagePullSecrets) != 0:
				t.Fatalf("admitted without the webhook, yet imagePullSecrets = %v", stored.Spec.ImagePullSecrets)
			case !tc.wantAdmit && (err == nil || !strings.Contains(err.Error(), webhook.MutatingWebhookName)):
				t.Fatalf("failurePolicy Fail: labeled pod created (err %v); want a rejection naming %s", err, webhook.MutatingWebhookName)
			}
			if err != nil {
				t.Logf("rejected as expected: %v", err)
			}
		})
	}
}

const invalidPrewarmSpec = `images: [nginx:1.27, "Bad Image!"]
rollout: {maxConcurrentNodes: 0}
`

// TestWebhookValidatesPrewarmConfigMaps: invalid specs are rejected at apply time with
// every problem's path; valid ones and unlabeled ConfigMaps are admitted.
func TestWebhookValidatesPrewarmConfigMaps(t *testing.T) {
	e := newEnv(t)
	w := startWebhook(t)
	e.registerValidating(w, admissionregistrationv1.Fail)
	cms := kube.Client.CoreV1().ConfigMaps(e.ns)
	specLabel := map[string]string{config.ConfigLabel: "true"}
	cm := func(name string, labels map[string]string, spec string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: labels}, Data: map[string]string{config.SpecKey: spec}}
	}
	e.eventually("validating webhook called", 30*time.Second, func(ctx context.Context) (bool, error) {
		_, err := cms.Create(ctx, cm("probe", specLabel, invalidPrewarmSpec), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil, nil
	})
	tests := map[string]struct {
		cm      *corev1.ConfigMap
		wantErr []string
	}{
		"invalid spec":              {cm: cm("invalid", specLabel, invalidPrewarmSpec), wantErr: []string{webhook.ValidatingWebhookName, "images[1]:", "rollout.maxConcurrentNodes:"}},
		"spec key missing":          {cm: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "nokey", Namespace: e.ns, Labels: specLabel}}, wantErr: []string{"data.prewarm.yaml"}},
		"valid spec":                {cm: cm("valid", specLabel, e.publicSpec(2, "nginx:1.27"))},
		"unlabeled, same content":   {cm: cm("not-a-spec", nil, invalidPrewarmSpec)},
		"label other than \"true\"": {cm: cm("disabled", map[string]string{config.ConfigLabel: "false"}, invalidPrewarmSpec)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := cms.Create(t.Context(), tc.cm, metav1.CreateOptions{})
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("an invalid spec was admitted")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
	t.Run("update to invalid", func(t *testing.T) {
		cur, err := cms.Get(t.Context(), "valid", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Data[config.SpecKey] = invalidPrewarmSpec
		if _, err := cms.Update(t.Context(), cur, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "images[1]") {
			t.Fatalf("update to an invalid spec: %v", err)
		}
	})
	t.Run("kubectl apply", func(t *testing.T) { e.kubectlApplyRejected() })
}

// kubectlApplyRejected applies an invalid spec with kubectl, as a user would, and
// expects the problems on stderr.
func (e *env) kubectlApplyRejected() {
	e.t.Helper()
	kubectl := filepath.Join(kube.BinDir, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		e.t.Skipf("no kubectl in %s", kube.BinDir)
	}
	manifest := filepath.Join(e.t.TempDir(), "spec.yaml")
	doc := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  labels: {" + config.ConfigLabel + ": \"true\"}\ndata:\n  " + config.SpecKey + ": |\n" +
		"    images: [nginx:1.27, \"Bad Image!\"]\n    rollout: {maxConcurrentNodes: 0}\n"
	if err := os.WriteFile(manifest, []byte(doc), 0o600); err != nil {
		e.t.Fatal(err)
	}
	out, err := exec.CommandContext(e.t.Context(), kubectl, "--kubeconfig", kube.Kubeconfig, "-n", e.ns, "apply", "-f", manifest).CombinedOutput()
	if err == nil {
		e.t.Fatalf("kubectl apply of an invalid spec succeeded:\n%s", out)
	}
	for _, want := range []string{"denied the request", "images[1]", "rollout.maxConcurrentNodes"} {
		if !strings.Contains(string(out), want) {
			e.t.Errorf("kubectl output lacks %q:\n%s", want, out)
		}
	}
}

// TestWebhookCertificateRotation: new certificate files in the cert dir are served
// without a restart, and the API server keeps calling the webhook.
func TestWebhookCertificateRotation(t *testing.T) {
	e := newEnv(t)
	w := startWebhook(t)
	old, err := w.servedSerial()
	if err != nil {
		t.Fatal(err)
	}
	next, err := w.ca.IssueServing([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if next.Cert.SerialNumber.Cmp(old) == 0 {
		t.Fatal("the new certificate has the old serial")
	}
	rotated := time.Now()
	if err := next.WriteServing(w.certDir); err != nil {
		t.Fatal(err)
	}
	e.eventually("new certificate served", 30*time.Second, func(context.Context) (bool, error) {
		serial, err := w.servedSerial()
		return err == nil && serial.Cmp(next.Cert.SerialNumber) == 0, nil
	})
	t.Logf("new certificate served %v after the files changed", time.Since(rotated).Round(time.Millisecond))
	e.registerMutating(w, admissionregistrationv1.Fail)
	e.waitMutating()
}
