package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
)

// privateSpec is a spec for this test's nodes with a private registry.
func (e *env) privateSpec(window int, images ...string) string {
	return fmt.Sprintf(`registries:
  - server: harbor.example.com
    credentialsSecret: harbor-robot
images: [%s]
nodeSelector: {e2e: %s}
rollout:
  maxConcurrentNodes: %d
  pullTimeout: 5m
`, strings.Join(images, ", "), e.ns, window)
}

func (e *env) publicSpec(window int, images ...string) string {
	return fmt.Sprintf("images: [%s]\nnodeSelector: {e2e: %s}\nrollout: {maxConcurrentNodes: %d}\n", strings.Join(images, ", "), e.ns, window)
}

var threeImages = []string{"harbor.example.com/ml/pytorch:2.5.1", "harbor.example.com/ml/triton:24.1", "nginx:1.27"}

func TestWindowedRolloutWithPrivateRegistry(t *testing.T) {
	e := newEnv(t)
	nodes := e.nodes("n", 20)
	e.credentials("harbor-robot", "robot$prewarm", sentinel)
	jw := e.watchJobs()
	e.startController()
	e.applySpec("ml", e.privateSpec(5, threeImages...))

	<-jw.firstSeen
	secretName := e.checkSecretWhileRunning()
	st := e.waitStatus("ml", "run succeeded", phaseIs(status.PhaseSucceeded))
	if st.Counts["Succeeded"] != len(nodes) || st.Total != len(nodes) {
		t.Fatalf("counts %v total %d, want %d succeeded", st.Counts, st.Total, len(nodes))
	}
	maxActive, created := jw.snapshot()
	if maxActive > 5 || maxActive < 2 {
		t.Fatalf("at most %d Jobs were active at once; want a window of 5 (2..5)", maxActive)
	}
	for _, n := range nodes {
		if created[n] != 1 {
			t.Errorf("node %s got %d Jobs, want 1", n, created[n])
		}
	}
	for _, job := range e.createdJobs() {
		ps := job.Spec.Template.Spec.ImagePullSecrets
		if len(ps) != 1 || ps[0].Name != secretName {
			t.Errorf("Job %s imagePullSecrets = %v, want [%s]", job.Name, ps, secretName)
		}
	}
	e.eventually("Secret reaped", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })
	e.assertNoCredentialLeak()
	t.Logf("max active Jobs: %d (window 5), nodes: %d", maxActive, len(nodes))
}

// checkSecretWhileRunning asserts the pull Secret exists while Jobs run and holds a
// correct .dockerconfigjson; it returns the Secret's name.
func (e *env) checkSecretWhileRunning() string {
	e.t.Helper()
	secrets := e.secrets()
	if len(secrets) != 1 {
		e.t.Fatalf("want exactly 1 pull Secret while Jobs run, got %d", len(secrets))
	}
	s := secrets[0]
	if s.Type != corev1.SecretTypeDockerConfigJson || !strings.HasPrefix(s.Name, "image-pull-secret-") {
		e.t.Fatalf("Secret %s has type %s", s.Name, s.Type)
	}
	var cfg struct {
		Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		e.t.Fatal(err)
	}
	entry, ok := cfg.Auths["harbor.example.com"]
	want := base64.StdEncoding.EncodeToString([]byte("robot$prewarm:" + sentinel))
	if !ok || entry.Auth != want || entry.Password != sentinel {
		e.t.Fatalf("dockerconfigjson auths = %v, want harbor.example.com with auth %s", cfg.Auths, want)
	}
	return s.Name
}

// assertNoCredentialLeak searches for the sentinel password everywhere but Secrets:
// controller logs, Events, ConfigMaps (specs and status), Jobs and pods.
func (e *env) assertNoCredentialLeak() {
	e.t.Helper()
	ctx := e.t.Context()
	places := map[string]any{"controller log": e.logs.String(), "events": e.events(), "jobs": e.createdJobs()}
	if cms, err := kube.Client.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		places["configmaps"] = cms.Items
	}
	if pods, err := kube.Client.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		places["pods"] = pods.Items
	}
	encoded := base64.StdEncoding.EncodeToString([]byte(sentinel))
	for where, v := range places {
		raw, _ := json.Marshal(v)
		text := string(raw)
		if s, ok := v.(string); ok {
			text = s
		}
		if strings.Contains(text, sentinel) || strings.Contains(text, encoded) {
			e.t.Errorf("the sentinel password leaked into %s", where)
		}
	}
	if !strings.Contains(e.logs.String(), `"spec"`) {
		e.t.Errorf("controller log looks empty; the leak check would prove nothing")
	}
}

func TestNoCredentialsNoSecret(t *testing.T) {
	e := newEnv(t)
	e.nodes("n", 4)
	e.startController()
	e.applySpec("public", e.publicSpec(2, "nginx:1.27", "registry.k8s.io/pause:3.10"))
	st := e.waitStatus("public", "run succeeded", phaseIs(status.PhaseSucceeded))
	if st.Counts["Succeeded"] != 4 {
		t.Fatalf("counts %v", st.Counts)
	}
	if s := e.secrets(); len(s) != 0 {
		t.Fatalf("a run without credentials created Secrets: %v", s)
	}
	for _, job := range e.createdJobs() {
		if len(job.Spec.Template.Spec.ImagePullSecrets) != 0 || job.Spec.Template.Labels[jobs.LabelPullSecret] != "" {
			t.Fatalf("Job %s refers to a pull Secret", job.Name)
		}
	}
}

func TestPullFailuresOnSomeNodes(t *testing.T) {
	e := newEnv(t)
	good := e.nodes("good", 4)
	bad := e.nodes("bad", 2)
	e.credentials("harbor-robot", "robot", sentinel)
	e.startController()
	e.applySpec("mixed", e.privateSpec(3, "harbor.example.com/fail/model:1", "nginx:1.27"))
	st := e.waitStatus("mixed", "run completed with failures", phaseIs(status.PhaseCompletedFailed))
	if st.Counts["Succeeded"] != len(good) || st.Counts["Failed"] != len(bad) {
		t.Fatalf("counts %v, want %d succeeded and %d failed", st.Counts, len(good), len(bad))
	}
	for _, n := range bad {
		r := st.Results[n]
		if r.Phase != "Failed" || !strings.Contains(r.Reason, "ErrImagePull") || !strings.Contains(r.Reason, "401 Unauthorized") {
			t.Errorf("node %s result %+v, want Failed with kubelet's ErrImagePull 401 reason", n, r)
		}
	}
	failedEvents := 0
	for _, ev := range e.events() {
		if ev.Reason == "NodeFailed" && strings.Contains(ev.Message, "401") {
			failedEvents++
		}
	}
	if failedEvents != len(bad) {
		t.Errorf("%d NodeFailed Events, want %d", failedEvents, len(bad))
	}
	e.eventually("Secret reaped", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })
	e.assertNoCredentialLeak()
}

func TestNodeJoiningLaterIsPrewarmed(t *testing.T) {
	e := newEnv(t)
	e.nodes("n", 3)
	e.credentials("harbor-robot", "robot", sentinel)
	e.startController()
	e.applySpec("grow", e.privateSpec(5, threeImages...))
	e.waitStatus("grow", "first run succeeded", phaseIs(status.PhaseSucceeded))
	e.eventually("Secret reaped", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })

	jw := e.watchJobs()
	late := e.nodes("late", 1) // returns once the node is Ready
	added := time.Now()
	e.eventually("a Job for the late node", 30*time.Second, func(context.Context) (bool, error) {
		_, created := jw.snapshot()
		return created[late[0]] == 1, nil
	})
	t.Logf("node Ready → its Job seen after %v", time.Since(added).Round(time.Millisecond))
	st := e.waitStatus("grow", "late node succeeded", func(s *status.Status) bool {
		return s.Phase == status.PhaseSucceeded && s.Results[late[0]].Phase == "Succeeded"
	})
	if st.Total != 4 {
		t.Fatalf("total %d, want 4", st.Total)
	}
	created := 0
	for _, ev := range e.events() {
		if ev.Reason == "PullSecretCreated" {
			created += int(ev.Count)
		}
	}
	if created < 2 {
		t.Fatalf("PullSecretCreated %d times, want the Secret re-created for the late node", created)
	}
	e.eventually("Secret reaped again", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })
}

func TestSkipsNodesWithImagesAndCordonedNodes(t *testing.T) {
	e := newEnv(t)
	images := []string{"nginx:1.27", "registry.k8s.io/pause:3.10"}
	e.nodes("plain", 2)
	warm := e.nodes("warm", 2, func(s *cluster.NodeSpec) {
		s.Images = []string{"docker.io/library/nginx:1.27", "registry.k8s.io/pause:3.10", "other:1"}
	})
	cordoned := e.nodes("cordoned", 1, func(s *cluster.NodeSpec) { s.Unschedulable = true })
	e.startController()
	e.applySpec("skip", e.publicSpec(5, images...))
	st := e.waitStatus("skip", "run succeeded", phaseIs(status.PhaseSucceeded))
	if st.Counts["Skipped"] != 2 || st.Counts["Succeeded"] != 2 || st.Total != 4 {
		t.Fatalf("counts %v total %d, want 2 skipped + 2 succeeded", st.Counts, st.Total)
	}
	for _, job := range e.createdJobs() {
		if n := jobs.NodeOf(&job); n == warm[0] || n == warm[1] || n == cordoned[0] {
			t.Errorf("Job %s created for skipped node %s", job.Name, n)
		}
	}
}

func TestSpecEditedThenDeleted(t *testing.T) {
	e := newEnv(t)
	e.nodes("n", 10)
	e.credentials("harbor-robot", "robot", sentinel)
	jw := e.watchJobs()
	e.startController()
	e.applySpec("edit", e.privateSpec(2, "harbor.example.com/ml/a:1"))
	<-jw.firstSeen
	oldRun := e.jobs()[0].Labels[jobs.LabelRun]
	e.applySpec("edit", e.privateSpec(3, "harbor.example.com/ml/b:1"))
	e.eventually("old run's active Jobs and Secret gone", 30*time.Second, func(context.Context) (bool, error) {
		for _, j := range e.jobs() {
			if j.Labels[jobs.LabelRun] == oldRun && j.DeletionTimestamp == nil && !jobs.Finished(&j) {
				return false, nil
			}
		}
		for _, s := range e.secrets() {
			if s.Labels[jobs.LabelRun] == oldRun {
				return false, nil
			}
		}
		return true, nil
	})
	st := e.waitStatus("edit", "new run succeeded", phaseIs(status.PhaseSucceeded))
	if st.RunID == oldRun || st.Counts["Succeeded"] != 10 {
		t.Fatalf("status %+v after edit", st)
	}
	e.applySpec("edit", e.privateSpec(1, "harbor.example.com/ml/c:1")) // a third run, in flight
	e.eventually("third run running", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 1, nil })
	if err := kube.Client.CoreV1().ConfigMaps(e.ns).Delete(t.Context(), "edit", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("Jobs and Secret deleted with the spec", 30*time.Second, func(context.Context) (bool, error) {
		active := 0
		for _, j := range e.jobs() {
			if j.DeletionTimestamp == nil {
				active++
			}
		}
		return active == 0 && len(e.secrets()) == 0, nil
	})
}

func TestControllerRestartMidRollout(t *testing.T) {
	e := newEnv(t)
	nodes := e.nodes("n", 20)
	e.credentials("harbor-robot", "robot", sentinel)
	jw := e.watchJobs()
	e.startController()
	e.applySpec("restart", e.privateSpec(4, threeImages...))
	e.eventually("a few Jobs", time.Minute, func(context.Context) (bool, error) {
		_, created := jw.snapshot()
		return len(created) >= 6, nil
	})
	e.stopController()
	time.Sleep(2 * time.Second) // Jobs finish while no controller runs
	e.startController()
	st := e.waitStatus("restart", "run succeeded after restart", phaseIs(status.PhaseSucceeded))
	if st.Counts["Succeeded"] != len(nodes) {
		t.Fatalf("counts %v", st.Counts)
	}
	_, created := jw.snapshot()
	for _, n := range nodes {
		if created[n] != 1 {
			t.Errorf("node %s got %d Jobs, want exactly 1", n, created[n])
		}
	}
	e.eventually("Secret reaped", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })
	e.assertNoCredentialLeak()
}
