package realnode

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/pkg/tasks"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

// Show 1 through the task API: a one-shot task with per-task credentials; the real
// kubelet pulls with the task's ephemeral Secret, and no response carries the password.
func TestTaskAPIPullsWithPerTaskCredentials(t *testing.T) {
	e := newEnv(t)
	e.startController()
	token := e.taskToken()
	since := time.Now()
	body := map[string]any{
		"images": []string{ref(taskRepo)}, "batchSize": 1,
		"registry": kube.Registry.Host, "username": cluster.RegistryUser, "password": kube.Registry.Password,
	}
	var responses strings.Builder
	var code int
	var raw []byte
	e.eventually("task created", time.Minute, func(context.Context) (bool, error) {
		var err error
		code, raw, err = e.call(http.MethodPost, tasks.BasePath, token, body)
		return err == nil, nil // the controller process may still be starting its listener
	})
	responses.Write(raw)
	var created tasks.Created
	if code != http.StatusCreated || json.Unmarshal(raw, &created) != nil {
		t.Fatalf("POST: HTTP %d: %s", code, raw)
	}
	var task tasks.Task
	e.eventually("task done", 4*time.Minute, func(context.Context) (bool, error) {
		code, raw, err := e.call(http.MethodGet, tasks.BasePath+"/"+created.TaskID, token, nil)
		responses.Write(raw)
		return err == nil && code == http.StatusOK && json.Unmarshal(raw, &task) == nil &&
			task.State != status.PhasePending && task.State != status.PhaseRunning, nil
	})
	if task.State != status.PhaseSucceeded || task.Progress.Succeeded != 1 {
		t.Fatalf("task ended %s with progress %+v", task.State, task.Progress)
	}
	e.assertAuthenticatedPull(since, taskRepo)
	if strings.Contains(responses.String(), kube.Registry.Password) {
		t.Error("a task API response carries the password")
	}
	e.assertNoPassword(kube.Registry.Password)
}

// taskToken is a ServiceAccount token allowed to create and read tasks in the namespace.
func (e *env) taskToken() string {
	e.t.Helper()
	token, err := prewarmtest.TaskUser(e.t.Context(), kube.Client, e.ns, "task-user", tasks.VerbCreate, tasks.VerbGet)
	if err != nil {
		e.t.Fatal(err)
	}
	return token
}

// call sends one task API request and returns the status code and the body.
func (e *env) call(method, path, token string, body any) (int, []byte, error) {
	var in io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		in = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.taskURL+path, in)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}
