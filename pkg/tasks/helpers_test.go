package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/logging/logtest"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

const (
	testNS = "prewarm"
	// sentinel is a password that must appear nowhere but in the pull Secret.
	sentinel = "S3ntinel-Pa55w0rd-unit"
	// Tokens the fake guard knows.
	adminToken  = "admin-token"
	readerToken = "reader-token"
	nobodyToken = "nobody-token"
)

// fakeGuard knows tokens and each user's verbs; no HTTP, no API server.
type fakeGuard struct {
	users  map[string]*User
	rights map[string][]string
	err    error // returned by Authenticate when set
	panics bool  // Authorize panics, to test recovery
}

func newFakeGuard() *fakeGuard {
	return &fakeGuard{
		users: map[string]*User{
			adminToken:  {Name: "admin"},
			readerToken: {Name: "reader"},
			nobodyToken: {Name: "nobody"},
		},
		rights: map[string][]string{
			"admin":  {VerbCreate, VerbGet, VerbList, VerbDelete},
			"reader": {VerbGet, VerbList},
		},
	}
}

func (g *fakeGuard) Authenticate(_ context.Context, token string) (*User, error) {
	if g.err != nil {
		return nil, g.err
	}
	if u, ok := g.users[token]; ok {
		return u, nil
	}
	return nil, ErrUnauthenticated
}

func (g *fakeGuard) Authorize(_ context.Context, u *User, verb, _ string) (bool, string, error) {
	if g.panics {
		panic("authorizer exploded")
	}
	return slices.Contains(g.rights[u.Name], verb), "", nil
}

type testAPI struct {
	t      *testing.T
	client *fake.Clientset
	guard  *fakeGuard
	srv    *Server
	h      http.Handler
	logs   *logtest.Buffer
	// bodies holds every response body, for the credential checks.
	bodies []string
}

func newTestAPI(t *testing.T) *testAPI {
	t.Helper()
	logs := &logtest.Buffer{}
	logger, err := logging.New(logging.FormatJSON, 2, logs)
	if err != nil {
		t.Fatal(err)
	}
	a := &testAPI{t: t, client: fake.NewClientset(), guard: newFakeGuard(), logs: logs}
	a.srv = New(Options{Client: a.client, Namespace: testNS, Guard: a.guard, Logger: logger})
	a.h = a.srv.Handler()
	return a
}

// do sends a request with token ("" for none) and returns the response.
func (a *testAPI) do(method, target, token, body string) *httptest.ResponseRecorder {
	a.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	return a.serve(req, token)
}

func (a *testAPI) serve(req *http.Request, token string) *httptest.ResponseRecorder {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	a.bodies = append(a.bodies, rec.Body.String())
	return rec
}

// create posts body as admin and returns the task ID, failing unless 201.
func (a *testAPI) create(body string) string {
	a.t.Helper()
	rec := a.do(http.MethodPost, BasePath, adminToken, body)
	if rec.Code != http.StatusCreated {
		a.t.Fatalf("POST %s: %d %s", body, rec.Code, rec.Body)
	}
	var c Created
	decodeBody(a.t, rec, &c)
	if !validID(c.TaskID) {
		a.t.Fatalf("task ID %q is not valid", c.TaskID)
	}
	return c.TaskID
}

func (a *testAPI) getTask(id string) *Task {
	a.t.Helper()
	rec := a.do(http.MethodGet, BasePath+"/"+id, adminToken, "")
	if rec.Code != http.StatusOK {
		a.t.Fatalf("GET %s: %d %s", id, rec.Code, rec.Body)
	}
	var t Task
	decodeBody(a.t, rec, &t)
	return &t
}

// writeStatus stores a status ConfigMap as the controller would.
func (a *testAPI) writeStatus(id string, st *status.Status) {
	a.t.Helper()
	st.Spec = specName(id)
	cm, err := st.ConfigMap(testNS, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.client.CoreV1().ConfigMaps(testNS).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		a.t.Fatal(err)
	}
}

func (a *testAPI) configMap(name string) *corev1.ConfigMap {
	cm, err := a.client.CoreV1().ConfigMaps(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return cm
}

// writes lists the create, update, patch and delete actions so far as "verb resource".
func (a *testAPI) writes() []string {
	var out []string
	for _, act := range a.client.Actions() {
		switch act.GetVerb() {
		case "create", "update", "patch", "delete", "delete-collection":
			out = append(out, act.GetVerb()+" "+act.GetResource().Resource)
		}
	}
	return out
}

// failOn makes the fake API server fail verb on resource.
func (a *testAPI) failOn(verb, resource string) {
	a.client.PrependReactor(verb, resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errAPIDown
	})
}

func decodeBody(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %s", ct, rec.Body)
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) Error {
	t.Helper()
	var e Error
	decodeBody(t, rec, &e)
	return e
}

// errAPIDown is what a failing API server answers in tests.
var errAPIDown = errors.New("the API server is down")

var fixedNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// counterValue reads the task API request counter for code.
func counterValue(t *testing.T, code string) float64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.TaskRequests.WithLabelValues(code).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
