package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/logging/logtest"
	"github.com/image-prewarm/image-prewarm/pkg/tasks"
	"github.com/image-prewarm/image-prewarm/pkg/tasks/taskstest"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

// taskAPI is the task API served in-process over TLS (a throwaway certificate) on
// 127.0.0.1 with the admin clientset: it does the TokenReviews and SubjectAccessReviews
// against the real API server. Its log lines and every response body are kept for the
// credential checks.
type taskAPI struct {
	e      *env
	url    string
	client *http.Client
	logs   *logtest.Buffer

	mu     sync.Mutex
	bodies []string
}

func (e *env) startTaskAPI() *taskAPI {
	e.t.Helper()
	logs := &logtest.Buffer{}
	logger, err := logging.New(logging.FormatJSON, 2, logs)
	if err != nil {
		e.t.Fatal(err)
	}
	dir := e.t.TempDir()
	pool, err := taskstest.WriteServingCert(dir, "task-api-e2e")
	if err != nil {
		e.t.Fatal(err)
	}
	pair, err := certwatcher.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		e.t.Fatal(err)
	}
	tlsConfig := tasks.TLSConfig(pair.GetCertificate)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	srv := tasks.New(tasks.Options{
		Client: kube.Client, Namespace: e.ns, Logger: logger,
		Guard: &tasks.KubeGuard{Client: kube.Client, Namespace: e.ns},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tasks.Serve(ctx, l, srv.Handler(), tlsConfig, logger) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("task API: %v", err)
		}
	})
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	return &taskAPI{e: e, url: "https://" + l.Addr().String(), logs: logs, client: &http.Client{Transport: transport, Timeout: time.Minute}}
}

// send sends req with token ("" for none) and returns the status, content type and body.
func (a *taskAPI) send(req *http.Request, token string) (int, string, []byte) {
	a.e.t.Helper()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.client.Do(req.WithContext(a.e.t.Context()))
	if err != nil {
		a.e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		a.e.t.Fatal(err)
	}
	a.mu.Lock()
	a.bodies = append(a.bodies, string(body))
	a.mu.Unlock()
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// do sends a JSON body (nil for none) and decodes a 2xx answer into out.
func (a *taskAPI) do(method, path, token string, body, out any) int {
	a.e.t.Helper()
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			a.e.t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.url+path, r)
	if err != nil {
		a.e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	code, _, raw := a.send(req, token)
	if code < 300 && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.e.t.Fatalf("%s %s: %d %s: %v", method, path, code, raw, err)
		}
	}
	return code
}

// taskRequest is a request body as a client sends it.
type taskRequest struct {
	Images       []string          `json:"images"`
	BatchSize    int               `json:"batchSize,omitempty"`
	Registry     string            `json:"registry,omitempty"`
	Username     string            `json:"username,omitempty"`
	Password     string            `json:"password,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// harborTask is a task for this test's nodes with harbor.example.com credentials whose
// password is the sentinel.
func (e *env) harborTask(batch int) taskRequest {
	return taskRequest{
		Images: threeImages, BatchSize: batch, NodeSelector: map[string]string{"e2e": e.ns},
		Registry: "harbor.example.com", Username: "robot$prewarm", Password: sentinel,
	}
}

func (a *taskAPI) create(token string, req taskRequest) string {
	a.e.t.Helper()
	var created tasks.Created
	if code := a.do(http.MethodPost, tasks.BasePath, token, req, &created); code != http.StatusCreated {
		a.e.t.Fatalf("POST: HTTP %d: %s", code, a.lastBody())
	}
	return created.TaskID
}

func (a *taskAPI) get(token, id string) *tasks.Task {
	a.e.t.Helper()
	var t tasks.Task
	if code := a.do(http.MethodGet, tasks.BasePath+"/"+id, token, nil, &t); code != http.StatusOK {
		a.e.t.Fatalf("GET %s: HTTP %d: %s", id, code, a.lastBody())
	}
	return &t
}

// waitState polls GET until cond holds.
func (a *taskAPI) waitState(token, id, what string, cond func(*tasks.Task) bool) *tasks.Task {
	a.e.t.Helper()
	var last *tasks.Task
	a.e.eventually(what, 2*time.Minute, func(context.Context) (bool, error) {
		last = a.get(token, id)
		return cond(last), nil
	})
	return last
}

func stateIs(state string) func(*tasks.Task) bool {
	return func(t *tasks.Task) bool { return t.State == state }
}

func (a *taskAPI) lastBody() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.bodies) == 0 {
		return ""
	}
	return a.bodies[len(a.bodies)-1]
}

// assertNoLeak checks the task API's responses and log lines for the sentinel password,
// then everything e.assertNoCredentialLeak checks (controller log, Events, ConfigMaps,
// Jobs, pods).
func (a *taskAPI) assertNoLeak() {
	a.e.t.Helper()
	a.assertNoLeakInAPI()
	a.e.assertNoCredentialLeak()
}

// assertNoLeakInAPI checks the task API's responses and log lines only.
func (a *taskAPI) assertNoLeakInAPI() {
	a.e.t.Helper()
	a.mu.Lock()
	responses := strings.Join(a.bodies, "\n")
	a.mu.Unlock()
	encoded := base64.StdEncoding.EncodeToString([]byte(sentinel))
	for where, text := range map[string]string{"task API responses": responses, "task API log": a.logs.String()} {
		if strings.Contains(text, sentinel) || strings.Contains(text, encoded) {
			a.e.t.Errorf("the sentinel password leaked into the %s", where)
		}
	}
	if !strings.Contains(a.logs.String(), "task API request") {
		a.e.t.Errorf("the task API log looks empty; the leak check would prove nothing")
	}
}

// taskTokens creates two ServiceAccounts and returns a token for each: "task-user" may
// create, get, list and delete tasks in the test namespace; "task-nobody" may not.
func (e *env) taskTokens() (allowed, denied string) {
	e.t.Helper()
	ctx := e.t.Context()
	allowed, err := prewarmtest.TaskUser(ctx, kube.Client, e.ns, "task-user", tasks.VerbCreate, tasks.VerbGet, tasks.VerbList, tasks.VerbDelete)
	if err != nil {
		e.t.Fatal(err)
	}
	if denied, err = prewarmtest.TaskUser(ctx, kube.Client, e.ns, "task-nobody"); err != nil {
		e.t.Fatal(err)
	}
	return allowed, denied
}

// objectNames lists the namespace's ConfigMaps and Secrets, to prove a refused request
// created nothing.
func (e *env) objectNames() []string {
	e.t.Helper()
	var names []string
	cms, err := kube.Client.CoreV1().ConfigMaps(e.ns).List(e.t.Context(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, cm := range cms.Items {
		names = append(names, "configmap/"+cm.Name)
	}
	secrets, err := kube.Client.CoreV1().Secrets(e.ns).List(e.t.Context(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range secrets.Items {
		names = append(names, "secret/"+s.Name)
	}
	sort.Strings(names)
	return names
}
