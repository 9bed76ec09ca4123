package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/pkg/tasks"
	"github.com/image-prewarm/image-prewarm/pkg/tasks/taskstest"
)

// TestTaskWithCredentials: an authorized token creates a task with harbor.example.com
// credentials; the Secret exists before the first Job, every Job refers to it, the task
// completes and the Secret is reaped.
func TestTaskWithCredentials(t *testing.T) {
	e := newEnv(t)
	nodes := e.nodes("n", 6)
	allowed, _ := e.taskTokens()
	jw := e.watchJobs()
	e.startController()
	api := e.startTaskAPI()
	start := time.Now()
	id := api.create(allowed, e.harborTask(2))
	t.Logf("POST answered in %v", time.Since(start).Round(time.Millisecond))
	e.waitFirstJob(jw)
	secret, err := kube.Client.CoreV1().Secrets(e.ns).Get(t.Context(), jobs.SecretName(id), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the first Job exists but the task's Secret does not: %v", err)
	}
	checkTaskSecret(t, secret, id)
	done := api.waitState(allowed, id, "task succeeded", stateIs(status.PhaseSucceeded))
	t.Logf("task done %v after POST", time.Since(start).Round(time.Millisecond))
	if done.Total != len(nodes) || done.Progress.Succeeded != len(nodes) || len(done.FailedNodes) != 0 || done.FinishTime.IsZero() {
		t.Fatalf("task %+v, want %d nodes succeeded", done, len(nodes))
	}
	for _, job := range e.createdJobs() {
		ps := job.Spec.Template.Spec.ImagePullSecrets
		if len(ps) != 1 || ps[0].Name != secret.Name {
			t.Errorf("Job %s imagePullSecrets = %v, want [%s]", job.Name, ps, secret.Name)
		}
		if job.CreationTimestamp.Before(&secret.CreationTimestamp) {
			t.Errorf("Job %s was created before the Secret", job.Name)
		}
	}
	if _, created := jw.snapshot(); len(created) != len(nodes) {
		t.Errorf("Jobs for %d nodes, want %d", len(created), len(nodes))
	}
	e.eventually("Secret reaped", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })
	var list tasks.List
	if code := api.do(http.MethodGet, tasks.BasePath, allowed, nil, &list); code != http.StatusOK || len(list.Tasks) != 1 || list.Tasks[0].TaskID != id {
		t.Errorf("list: HTTP %d %+v", code, list.Tasks)
	}
	api.assertNoLeak()
}

func (e *env) waitFirstJob(jw *jobWatch) {
	e.t.Helper()
	select {
	case <-jw.firstSeen:
	case <-time.After(time.Minute):
		e.t.Fatalf("no Job within a minute\ncontroller log tail:\n%s", e.logs.Tail(3000))
	}
}

// checkTaskSecret: the task's dockerconfigjson Secret holds the request's credentials
// and is owned by the task's ConfigMap, so the garbage collector removes it with the task.
func checkTaskSecret(t *testing.T, s *corev1.Secret, id string) {
	t.Helper()
	if s.Type != corev1.SecretTypeDockerConfigJson || s.Labels[tasks.LabelTaskID] != id {
		t.Errorf("Secret %s: type %s labels %v", s.Name, s.Type, s.Labels)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Name != "task-"+id || s.OwnerReferences[0].UID == "" {
		t.Errorf("Secret owners %+v, want the task's ConfigMap", s.OwnerReferences)
	}
	var cfg struct {
		Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		t.Fatal(err)
	}
	entry := cfg.Auths["harbor.example.com"]
	if entry.Password != sentinel || entry.Auth != base64.StdEncoding.EncodeToString([]byte("robot$prewarm:"+sentinel)) {
		t.Errorf("the Secret does not hold the request's credentials for harbor.example.com")
	}
}

// TestTaskAuth: no token → 401, an invalid token → 401, a token without the right →
// 403; nothing is created in any case.
func TestTaskAuth(t *testing.T) {
	e := newEnv(t)
	allowed, denied := e.taskTokens()
	api := e.startTaskAPI()
	before := e.objectNames()
	one := tasks.BasePath + "/abcdefghij"
	requests := map[string]struct {
		method, path string
		body         any
	}{
		"create": {http.MethodPost, tasks.BasePath, e.harborTask(2)},
		"list":   {http.MethodGet, tasks.BasePath, nil},
		"get":    {http.MethodGet, one, nil},
		"delete": {http.MethodDelete, one, nil},
	}
	tokens := map[string]struct {
		token string
		want  int
	}{
		"no token":            {"", http.StatusUnauthorized},
		"invalid token":       {"not-a-token", http.StatusUnauthorized},
		"forged JWT":          {"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", http.StatusUnauthorized},
		"token without right": {denied, http.StatusForbidden},
	}
	for tname, tok := range tokens {
		for rname, r := range requests {
			t.Run(tname+"/"+rname, func(t *testing.T) {
				if code := api.do(r.method, r.path, tok.token, r.body, nil); code != tok.want {
					t.Fatalf("HTTP %d %s, want %d", code, api.lastBody(), tok.want)
				}
				var answer tasks.Error
				if err := json.Unmarshal([]byte(api.lastBody()), &answer); err != nil || answer.Message == "" {
					t.Fatalf("answer %q is not a JSON error", api.lastBody())
				}
			})
		}
	}
	if after := e.objectNames(); !slices.Equal(before, after) {
		t.Fatalf("refused requests changed the namespace: %v → %v", before, after)
	}
	if code := api.do(http.MethodGet, tasks.BasePath, allowed, nil, nil); code != http.StatusOK {
		t.Fatalf("the allowed token cannot list: HTTP %d %s", code, api.lastBody())
	}
	api.assertNoLeakInAPI()
}

// TestTaskCancel: DELETE mid-run deletes the remaining Jobs and the Secret, and the task
// then reads Cancelled.
func TestTaskCancel(t *testing.T) {
	e := newEnv(t)
	e.nodes("n", 8)
	allowed, _ := e.taskTokens()
	jw := e.watchJobs()
	e.startController()
	api := e.startTaskAPI()
	id := api.create(allowed, e.harborTask(2))
	e.eventually("two Jobs running", time.Minute, func(context.Context) (bool, error) {
		_, created := jw.snapshot()
		return len(created) >= 2, nil
	})
	_, atDelete := jw.snapshot()
	start := time.Now()
	var answer tasks.Cancelled
	if code := api.do(http.MethodDelete, tasks.BasePath+"/"+id, allowed, nil, &answer); code != http.StatusOK ||
		answer != (tasks.Cancelled{TaskID: id, State: status.PhaseCancelled}) {
		t.Fatalf("DELETE: HTTP %d %s", code, api.lastBody())
	}
	t.Logf("DELETE answered in %v", time.Since(start).Round(time.Millisecond))
	// The task API deleted the Secret itself: gone at once, whatever the controller does.
	if _, err := kube.Client.CoreV1().Secrets(e.ns).Get(t.Context(), jobs.SecretName(id), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Secret is still there after DELETE answered: %v", err)
	}
	e.eventually("no Job left", 10*time.Second, func(context.Context) (bool, error) {
		for _, j := range e.jobs() {
			if j.DeletionTimestamp == nil {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("Jobs gone %v after DELETE", time.Since(start).Round(time.Millisecond))
	_, created := jw.snapshot()
	got := api.get(allowed, id)
	if got.State != status.PhaseCancelled || got.FinishTime.IsZero() || got.Progress.Reported >= 8 || len(got.Images) != len(threeImages) {
		t.Fatalf("cancelled task %+v", got)
	}
	time.Sleep(2 * time.Second) // a lagging controller must not start anything now
	if _, after := jw.snapshot(); len(after) != len(created) || len(e.jobs()) != 0 || len(e.secrets()) != 0 {
		t.Fatalf("after the cancel: Jobs for %d nodes (were %d), %d Jobs, %d Secrets", len(after), len(created), len(e.jobs()), len(e.secrets()))
	}
	var list tasks.List
	if api.do(http.MethodGet, tasks.BasePath, allowed, nil, &list); len(list.Tasks) != 1 || list.Tasks[0].State != status.PhaseCancelled {
		t.Errorf("list after cancel: %+v", list.Tasks)
	}
	t.Logf("cancelled after %d of 8 nodes reported; Jobs were started on %d nodes before DELETE, %d in all", got.Progress.Reported, len(atDelete), len(created))
	api.assertNoLeak()
}

// TestTaskSurvivesControllerRestart: the controller stops mid-task and starts again; the
// task's Secret survives (the controller cannot re-create it), the task completes with
// one Job per node, and the Secret is reaped.
func TestTaskSurvivesControllerRestart(t *testing.T) {
	e := newEnv(t)
	nodes := e.nodes("n", 10)
	allowed, _ := e.taskTokens()
	jw := e.watchJobs()
	e.startController()
	api := e.startTaskAPI()
	id := api.create(allowed, e.harborTask(3))
	e.eventually("a few Jobs", time.Minute, func(context.Context) (bool, error) {
		_, created := jw.snapshot()
		return len(created) >= 4, nil
	})
	e.stopController()
	time.Sleep(2 * time.Second) // Jobs finish while no controller runs
	if _, err := kube.Client.CoreV1().Secrets(e.ns).Get(t.Context(), jobs.SecretName(id), metav1.GetOptions{}); err != nil {
		t.Fatalf("the task's Secret is gone while the controller is down: %v", err)
	}
	if mid := api.get(allowed, id); mid.State == status.PhaseSucceeded {
		t.Fatalf("the task finished before the restart; the test proves nothing: %+v", mid)
	}
	e.startController()
	done := api.waitState(allowed, id, "task succeeded after the restart", stateIs(status.PhaseSucceeded))
	if done.Progress.Succeeded != len(nodes) {
		t.Fatalf("task %+v", done)
	}
	_, created := jw.snapshot()
	for _, n := range nodes {
		if created[n] != 1 {
			t.Errorf("node %s got %d Jobs, want exactly 1", n, created[n])
		}
	}
	e.eventually("Secret reaped", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })
	api.assertNoLeak()
}

// TestTaskMalformedRequests: the corpus of malformed requests (100+) through the real
// server with an authorized token: each gets its 4xx with a JSON message naming the
// field, and nothing is created.
func TestTaskMalformedRequests(t *testing.T) {
	e := newEnv(t)
	allowed, _ := e.taskTokens()
	api := e.startTaskAPI()
	before := e.objectNames()
	cases := taskstest.Malformed()
	if len(cases) < 100 {
		t.Fatalf("%d cases, want 100+", len(cases))
	}
	start := time.Now()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			req, err := c.NewRequest(api.url)
			if err != nil {
				t.Fatal(err)
			}
			code, contentType, body := api.send(req, allowed)
			if err := c.Check(code, contentType, body); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Logf("%d malformed requests answered in %v", len(cases), time.Since(start).Round(time.Millisecond))
	if after := e.objectNames(); !slices.Equal(before, after) {
		t.Fatalf("malformed requests changed the namespace: %v → %v", before, after)
	}
}
