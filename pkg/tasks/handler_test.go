package tasks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/pkg/tasks/taskstest"
)

func harborRequest(password string) string {
	return fmt.Sprintf(`{"images":["harbor.example.com/ml/pytorch:2.5.1","nginx:1.27"],"batchSize":3,
		"registry":"harbor.example.com","username":"robot$prewarm","password":%q,"nodeSelector":{"pool":"gpu"}}`, password)
}

func TestCreateWithCredentials(t *testing.T) {
	a := newTestAPI(t)
	rec := a.do(http.MethodPost, BasePath, adminToken, harborRequest(sentinel))
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	var c Created
	decodeBody(t, rec, &c)
	if loc := rec.Header().Get("Location"); loc != BasePath+"/"+c.TaskID {
		t.Errorf("Location %q", loc)
	}
	// The ConfigMap first, then the Secret created already owned by it: no patch, which
	// the least-privilege Role does not grant.
	want := []string{"create configmaps", "create secrets"}
	if got := a.writes(); !slices.Equal(got, want) {
		t.Fatalf("writes %v, want %v", got, want)
	}
	secret, err := a.client.CoreV1().Secrets(testNS).Get(context.Background(), jobs.SecretName(c.TaskID), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkTaskSecret(t, secret, c.TaskID)
	cm := a.configMap(specName(c.TaskID))
	if cm.Labels[config.ConfigLabel] != "true" || cm.Labels[LabelTask] != "true" || cm.Labels[LabelTaskID] != c.TaskID || cm.Annotations[AnnotationCreatedBy] != "admin" {
		t.Errorf("ConfigMap metadata %v %v", cm.Labels, cm.Annotations)
	}
	spec, err := config.FromConfigMap(cm)
	if err != nil {
		t.Fatalf("the task's spec does not parse: %v", err)
	}
	if !spec.Once || spec.PullSecret != secret.Name || len(spec.Registries) != 1 || spec.Registries[0].Server != "harbor.example.com" ||
		spec.Registries[0].CredentialsSecret != "" || spec.Rollout.MaxConcurrentNodes.IntVal != 3 || spec.NodeSelector["pool"] != "gpu" {
		t.Errorf("spec %+v", spec)
	}
	assertNoSentinel(t, a)
}

func checkTaskSecret(t *testing.T, s *corev1.Secret, id string) {
	t.Helper()
	if s.Type != corev1.SecretTypeDockerConfigJson || s.Labels[jobs.LabelApp] != jobs.AppName || s.Labels[LabelTaskID] != id {
		t.Errorf("Secret %s type %s labels %v", s.Name, s.Type, s.Labels)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "ConfigMap" || s.OwnerReferences[0].Name != specName(id) {
		t.Errorf("Secret owners %v, want the task ConfigMap", s.OwnerReferences)
	}
	var cfg struct {
		Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		t.Fatal(err)
	}
	e := cfg.Auths["harbor.example.com"]
	if e.Username != "robot$prewarm" || e.Password != sentinel || e.Auth != base64.StdEncoding.EncodeToString([]byte("robot$prewarm:"+sentinel)) {
		t.Errorf("auths %+v", cfg.Auths)
	}
}

// assertNoSentinel: the password is in no response, no log line and no ConfigMap.
func assertNoSentinel(t *testing.T, a *testAPI) {
	t.Helper()
	encoded := base64.StdEncoding.EncodeToString([]byte(sentinel))
	places := map[string]string{"responses": strings.Join(a.bodies, "\n"), "log": a.logs.String()}
	cms, _ := a.client.CoreV1().ConfigMaps(testNS).List(context.Background(), metav1.ListOptions{})
	raw, _ := json.Marshal(cms)
	places["configmaps"] = string(raw)
	for where, text := range places {
		if strings.Contains(text, sentinel) || strings.Contains(text, encoded) {
			t.Errorf("the password leaked into the %s", where)
		}
	}
	if !strings.Contains(a.logs.String(), "task API request") {
		t.Errorf("the log is empty; the leak check proves nothing")
	}
}

func TestCreateWithoutCredentials(t *testing.T) {
	a := newTestAPI(t)
	id := a.create(`{"images":["nginx:1.27","registry.k8s.io/pause:3.10"]}`)
	if got := a.writes(); !slices.Equal(got, []string{"create configmaps"}) {
		t.Fatalf("writes %v, want only the ConfigMap", got)
	}
	spec, err := config.FromConfigMap(a.configMap(specName(id)))
	if err != nil {
		t.Fatal(err)
	}
	if spec.PullSecret != "" || len(spec.Registries) != 0 || spec.Rollout.MaxConcurrentNodes.IntVal != DefaultBatchSize || spec.NodeSelector != nil {
		t.Errorf("spec %+v", spec)
	}
}

func TestCredentialRules(t *testing.T) {
	harbor := `"images":["harbor.example.com/a:1"]`
	tests := map[string]struct {
		body      string
		wantField string
	}{
		"registry without password":        {`{` + harbor + `,"registry":"harbor.example.com","username":"u"}`, "password"},
		"registry without username":        {`{` + harbor + `,"registry":"harbor.example.com","password":"p"}`, "username"},
		"username without registry":        {`{"images":["nginx"],"username":"u"}`, "registry"},
		"password without registry":        {`{"images":["nginx"],"password":"p"}`, "registry"},
		"credentials for an unused server": {`{` + harbor + `,"registry":"ghcr.io","username":"u","password":"p"}`, "registry"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := newTestAPI(t)
			rec := a.do(http.MethodPost, BasePath, adminToken, tc.body)
			e := decodeError(t, rec)
			if rec.Code != http.StatusBadRequest || e.Field != tc.wantField || !strings.Contains(e.Message, tc.wantField) {
				t.Fatalf("%d %+v, want 400 naming %s", rec.Code, e, tc.wantField)
			}
			if w := a.writes(); len(w) != 0 {
				t.Fatalf("a refused request wrote %v", w)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	tests := map[string]struct {
		header   string
		guardErr error
		want     int
	}{
		"no header":         {"", nil, http.StatusUnauthorized},
		"basic auth":        {"Basic YWRtaW46YWRtaW4=", nil, http.StatusUnauthorized},
		"bearer, no token":  {"Bearer ", nil, http.StatusUnauthorized},
		"two tokens":        {"Bearer a b", nil, http.StatusUnauthorized},
		"unknown token":     {"Bearer forged", nil, http.StatusUnauthorized},
		"lower-case bearer": {"bearer " + adminToken, nil, http.StatusCreated},
		"review fails":      {"Bearer " + adminToken, errAPIDown, http.StatusInternalServerError},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := newTestAPI(t)
			a.guard.err = tc.guardErr
			req := httptest.NewRequest(http.MethodPost, BasePath, strings.NewReader(harborRequest(sentinel)))
			req.Header.Set("Content-Type", "application/json")
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := a.serve(req, "")
			if rec.Code != tc.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tc.want)
			}
			if tc.want == http.StatusCreated {
				return
			}
			e := decodeError(t, rec)
			if tc.want == http.StatusUnauthorized && (e.Field != "Authorization" || rec.Header().Get("WWW-Authenticate") == "") {
				t.Errorf("401 %+v, headers %v", e, rec.Header())
			}
			if w := a.writes(); len(w) != 0 {
				t.Errorf("an unauthenticated request wrote %v", w)
			}
			assertNoSentinel(t, a)
		})
	}
}

func TestAuthorization(t *testing.T) {
	a := newTestAPI(t)
	id := a.create(`{"images":["nginx:1.27"]}`)
	before := len(a.writes())
	tests := map[string]struct {
		method, target, token, body string
		want                        int
	}{
		"nobody creates":  {http.MethodPost, BasePath, nobodyToken, harborRequest(sentinel), http.StatusForbidden},
		"nobody lists":    {http.MethodGet, BasePath, nobodyToken, "", http.StatusForbidden},
		"nobody gets":     {http.MethodGet, BasePath + "/" + id, nobodyToken, "", http.StatusForbidden},
		"nobody deletes":  {http.MethodDelete, BasePath + "/" + id, nobodyToken, "", http.StatusForbidden},
		"reader creates":  {http.MethodPost, BasePath, readerToken, harborRequest(sentinel), http.StatusForbidden},
		"reader deletes":  {http.MethodDelete, BasePath + "/" + id, readerToken, "", http.StatusForbidden},
		"reader gets":     {http.MethodGet, BasePath + "/" + id, readerToken, "", http.StatusOK},
		"reader lists":    {http.MethodGet, BasePath, readerToken, "", http.StatusOK},
		"forbidden first": {http.MethodPost, BasePath, nobodyToken, "{not json", http.StatusForbidden},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := a.do(tc.method, tc.target, tc.token, tc.body)
			if rec.Code != tc.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tc.want)
			}
			if tc.want == http.StatusForbidden {
				if e := decodeError(t, rec); !strings.Contains(e.Message, "may not") || !strings.Contains(e.Message, "tasks.image-prewarm.io") {
					t.Errorf("403 message %q", e.Message)
				}
			}
		})
	}
	if w := a.writes(); len(w) != before {
		t.Errorf("forbidden requests wrote %v", w[before:])
	}
	assertNoSentinel(t, a)
}

func TestMalformedRequests(t *testing.T) {
	cases := taskstest.Malformed()
	if len(cases) < 100 {
		t.Fatalf("the corpus has %d cases, want 100+", len(cases))
	}
	a := newTestAPI(t)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			req, err := c.NewRequest("")
			if err != nil {
				t.Fatal(err)
			}
			rec := a.serve(req, adminToken)
			if err := c.Check(rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()); err != nil {
				t.Fatal(err)
			}
		})
	}
	if w := a.writes(); len(w) != 0 {
		t.Errorf("malformed requests wrote %v", w)
	}
}

func TestPasswordNeverInResponses(t *testing.T) {
	a := newTestAPI(t)
	id := a.create(harborRequest(sentinel))
	a.writeStatus(id, &status.Status{Phase: status.PhaseRunning, Total: 2, Counts: map[string]int{"Running": 2}})
	a.getTask(id)
	a.do(http.MethodGet, BasePath, adminToken, "")
	// The password in every wrong place a request can put it.
	for _, body := range []string{
		`{"images":["nginx"],"password":"` + sentinel + `"}`,
		`{"images":["harbor.example.com/a:1"],"registry":"harbor.example.com","username":"` + sentinel + `:x","password":"` + sentinel + `"}`,
		`{"images":["` + sentinel + `"]}`, // an image is echoed: a password is never one
		`{"images":["nginx"],"` + sentinel + `":1}`,
		`{"images":["nginx"],"password":"` + sentinel + `"` + "\x00",
		`{"images":["nginx"],"batchSize":"` + sentinel + `","password":"` + sentinel + `"}`,
		`{"images":["nginx"],"registry":"harbor.example.com","username":"u","password":"` + sentinel + `","password":"` + sentinel + `"}`,
	} {
		a.do(http.MethodPost, BasePath, adminToken, body)
	}
	a.do(http.MethodDelete, BasePath+"/"+id, adminToken, "")
	a.getTask(id)
	// Image and field names are echoed on purpose; drop those two answers from the check.
	a.bodies = slices.DeleteFunc(a.bodies, func(b string) bool {
		return strings.Contains(b, `images[0]: \"`+sentinel) || strings.Contains(b, `unknown field \"`+sentinel)
	})
	assertNoSentinel(t, a)
}

func TestGetAndList(t *testing.T) {
	a := newTestAPI(t)
	id := a.create(harborRequest(sentinel))
	other := a.create(`{"images":["nginx:1.27"]}`)
	if got := a.getTask(other); got.State != status.PhasePending || got.BatchSize != DefaultBatchSize || got.Registry != "" {
		t.Errorf("fresh task %+v, want Pending with defaults", got)
	}
	started := fixedNow.Add(-time.Minute)
	a.writeStatus(id, &status.Status{
		Phase: status.PhaseRunning, Total: 4, Started: started,
		Counts:  map[string]int{"Succeeded": 1, "Failed": 1, "Running": 1, "Pending": 1},
		Results: map[string]status.Result{"n1": {Phase: "Succeeded"}, "n2": {Phase: "Failed", Reason: "ErrImagePull: 401 Unauthorized"}},
	})
	// A spec that is not a task, with its status: never listed.
	plain := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ml", Namespace: testNS, Labels: map[string]string{config.ConfigLabel: "true"}}}
	if _, err := a.client.CoreV1().ConfigMaps(testNS).Create(context.Background(), plain, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := a.getTask(id)
	want := Progress{Pending: 1, Running: 1, Succeeded: 1, Failed: 1, Reported: 2}
	if got.State != status.PhaseRunning || got.Total != 4 || got.Progress != want || !got.StartTime.Equal(started) ||
		got.Registry != "harbor.example.com" || got.BatchSize != 3 || len(got.Images) != 2 || got.NodeSelector["pool"] != "gpu" {
		t.Errorf("task %+v", got)
	}
	if len(got.FailedNodes) != 1 || got.FailedNodes[0] != (FailedNode{Node: "n2", State: "Failed", Reason: "ErrImagePull: 401 Unauthorized"}) {
		t.Errorf("failed nodes %+v", got.FailedNodes)
	}
	rec := a.do(http.MethodGet, BasePath, adminToken, "")
	var list List
	decodeBody(t, rec, &list)
	var ids []string
	for _, task := range list.Tasks {
		ids = append(ids, task.TaskID)
	}
	slices.Sort(ids)
	wantIDs := []string{id, other}
	slices.Sort(wantIDs)
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("listed %v, want %v", ids, wantIDs)
	}
	assertNoSentinel(t, a)
}

func TestCancel(t *testing.T) {
	a := newTestAPI(t)
	id := a.create(harborRequest(sentinel))
	a.writeStatus(id, &status.Status{Phase: status.PhaseRunning, Total: 3, Counts: map[string]int{"Succeeded": 1, "Running": 2},
		Results: map[string]status.Result{"n1": {Phase: "Succeeded"}}})
	for _, node := range []string{"n2", "n3"} {
		job := jobs.BuildJob(jobs.JobParams{Ref: jobs.RunRef{Namespace: testNS, Spec: specName(id), RunID: "0123456789"}, Node: node})
		if _, err := a.client.BatchV1().Jobs(testNS).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rec := a.do(http.MethodDelete, BasePath+"/"+id, adminToken, "")
	var c Cancelled
	decodeBody(t, rec, &c)
	if rec.Code != http.StatusOK || c != (Cancelled{TaskID: id, State: status.PhaseCancelled}) {
		t.Fatalf("DELETE: %d %+v", rec.Code, c)
	}
	if js, _ := a.client.BatchV1().Jobs(testNS).List(context.Background(), metav1.ListOptions{}); len(js.Items) != 0 {
		t.Errorf("%d Jobs left", len(js.Items))
	}
	if s, _ := a.client.CoreV1().Secrets(testNS).List(context.Background(), metav1.ListOptions{}); len(s.Items) != 0 {
		t.Errorf("%d Secrets left", len(s.Items))
	}
	if a.configMap(specName(id)) != nil || a.configMap(statusName(id)) != nil || a.configMap(tombstoneName(id)) == nil {
		t.Errorf("after DELETE want only the tombstone")
	}
	got := a.getTask(id)
	if got.State != status.PhaseCancelled || got.Progress.Succeeded != 1 || got.FinishTime.IsZero() || len(got.Images) != 2 || got.CreatedBy != "admin" {
		t.Errorf("cancelled task %+v", got)
	}
	again := a.do(http.MethodDelete, BasePath+"/"+id, adminToken, "")
	if decodeBody(t, again, &c); again.Code != http.StatusOK || c.State != status.PhaseCancelled {
		t.Errorf("second DELETE: %d %+v", again.Code, c)
	}
	var list List
	decodeBody(t, a.do(http.MethodGet, BasePath, adminToken, ""), &list)
	if len(list.Tasks) != 1 || list.Tasks[0].State != status.PhaseCancelled {
		t.Errorf("list after DELETE %+v", list.Tasks)
	}
	assertNoSentinel(t, a)
}

func TestDeleteFinishedTaskKeepsItsResult(t *testing.T) {
	a := newTestAPI(t)
	id := a.create(`{"images":["nginx:1.27"]}`)
	a.writeStatus(id, &status.Status{Phase: status.PhaseSucceeded, Total: 1, Finished: fixedNow, Counts: map[string]int{"Succeeded": 1}})
	rec := a.do(http.MethodDelete, BasePath+"/"+id, adminToken, "")
	var c Cancelled
	decodeBody(t, rec, &c)
	if c.State != status.PhaseSucceeded {
		t.Fatalf("DELETE of a finished task answered %+v, want its result Succeeded", c)
	}
	if got := a.getTask(id); got.State != status.PhaseSucceeded || !got.FinishTime.Equal(fixedNow) {
		t.Errorf("task %+v", got)
	}
}

func TestCreateFailuresUndoTheirWrites(t *testing.T) {
	tests := map[string]struct {
		verb, resource string
	}{
		"ConfigMap create fails": {"create", "configmaps"},
		"Secret create fails":    {"create", "secrets"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := newTestAPI(t)
			a.failOn(tc.verb, tc.resource)
			rec := a.do(http.MethodPost, BasePath, adminToken, harborRequest(sentinel))
			e := decodeError(t, rec)
			if rec.Code != http.StatusInternalServerError || !strings.Contains(e.Message, rec.Header().Get(headerRequestID)) {
				t.Fatalf("%d %+v, want a generic 500 with the request ID", rec.Code, e)
			}
			s, _ := a.client.CoreV1().Secrets(testNS).List(context.Background(), metav1.ListOptions{})
			cms, _ := a.client.CoreV1().ConfigMaps(testNS).List(context.Background(), metav1.ListOptions{})
			if len(s.Items)+len(cms.Items) != 0 {
				t.Errorf("left %d Secrets and %d ConfigMaps behind", len(s.Items), len(cms.Items))
			}
			if !strings.Contains(a.logs.String(), errAPIDown.Error()) {
				t.Errorf("the cause is not logged")
			}
			assertNoSentinel(t, a)
		})
	}
}

func TestIDCollisionDrawsAnotherID(t *testing.T) {
	a := newTestAPI(t)
	taken := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: jobs.SecretName("aaaaaaaaaa"), Namespace: testNS}}
	if _, err := a.client.CoreV1().Secrets(testNS).Create(context.Background(), taken, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"aaaaaaaaaa", "bbbbbbbbbb"}
	a.srv.newID = func() string { id := ids[0]; ids = ids[1:]; return id }
	if id := a.create(harborRequest(sentinel)); id != "bbbbbbbbbb" {
		t.Fatalf("got ID %s, want the second draw", id)
	}
	if _, err := a.client.CoreV1().Secrets(testNS).Get(context.Background(), taken.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the Secret that was there first was touched: %v", err)
	}
}

func TestPanicIsA500(t *testing.T) {
	a := newTestAPI(t)
	a.guard.panics = true
	before := counterValue(t, "500")
	rec := a.do(http.MethodGet, BasePath, adminToken, "")
	e := decodeError(t, rec)
	if rec.Code != http.StatusInternalServerError || strings.Contains(e.Message, "exploded") {
		t.Fatalf("%d %+v, want a generic 500", rec.Code, e)
	}
	if !strings.Contains(a.logs.String(), "authorizer exploded") {
		t.Errorf("the panic is not logged")
	}
	if got := counterValue(t, "500"); got != before+1 {
		t.Errorf("500 counter %v → %v", before, got)
	}
}

func TestUnknownTask(t *testing.T) {
	a := newTestAPI(t)
	// A ConfigMap named like a task but not labeled one is not a task.
	impostor := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: specName("cccccccccc"), Namespace: testNS}}
	if _, err := a.client.CoreV1().ConfigMaps(testNS).Create(context.Background(), impostor, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		rec := a.do(method, BasePath+"/cccccccccc", adminToken, "")
		if e := decodeError(t, rec); rec.Code != http.StatusNotFound || e.Field != "id" {
			t.Errorf("%s: %d %+v", method, rec.Code, e)
		}
	}
	if a.configMap(impostor.Name) == nil {
		t.Errorf("DELETE removed a ConfigMap that is not a task")
	}
}
