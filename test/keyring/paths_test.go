package keyring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/controller"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/pkg/tasks"
)

const ns = "prewarm"

func init() {
	// The fake API server panics when a watcher falls 100 events behind
	// (client-go testing's tracker); the controller makes hundreds of objects here
	// in a burst.
	watch.DefaultChanSize = 1 << 16
}

// specCase is one prewarm spec ConfigMap and the credentials Secrets it names.
type specCase struct {
	name    string
	spec    string // prewarm.yaml
	sources []*corev1.Secret
}

func (c specCase) configMap() *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: ns, UID: types.UID("uid-" + c.name), Labels: map[string]string{config.ConfigLabel: "true"}},
		Data:       map[string]string{config.SpecKey: c.spec},
	}
}

// specYAML renders a spec; JSON is YAML, and it quotes "[::1]:5000" for us.
func specYAML(registries []config.Registry, images ...string) string {
	b, err := json.Marshal(config.Spec{Registries: registries, Images: images})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// controllerSecrets runs the real controller (pkg/controller) against a fake API
// server holding one Ready node, the cases' credentials Secrets and spec ConfigMaps,
// and returns each spec's ephemeral pull Secret as the controller created it. Every
// case must be a valid spec: the test fails naming the cases that got no Secret.
func controllerSecrets(t *testing.T, cases []specCase) map[string]*corev1.Secret {
	t.Helper()
	// The simple clientset: the field-managed one spends most of this test in
	// managed-fields bookkeeping of its hundreds of creates.
	client := fake.NewSimpleClientset()
	ctx := t.Context()
	mustCreate := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	_, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	mustCreate(err)
	for _, c := range cases {
		for _, s := range c.sources {
			_, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
			mustCreate(err)
		}
		_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, c.configMap(), metav1.CreateOptions{})
		mustCreate(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c := controller.New(client, controller.Options{Namespace: ns, NoopImage: "noop:1"})
	go func() { defer close(done); _ = c.Run(runCtx, 8) }()
	defer func() { cancel(); <-done }()

	got := map[string]*corev1.Secret{}
	failed := map[string]string{} // spec -> the run's failure, from its status
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: jobs.LabelApp + "=" + jobs.AppName})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			s := &list.Items[i]
			for _, c := range cases {
				if s.Labels[jobs.LabelSpec] == jobs.SpecLabelValue(c.name) {
					got[c.name] = s
				}
			}
		}
		for _, c := range cases {
			if got[c.name] != nil || failed[c.name] != "" {
				continue
			}
			st, err := client.CoreV1().ConfigMaps(ns).Get(ctx, status.Name(c.name), metav1.GetOptions{})
			if err == nil && (st.Data["phase"] == "Failed" || st.Data["phase"] == "Invalid") {
				failed[c.name] = st.Data["message"]
			}
		}
		return len(got)+len(failed) == len(cases), nil
	})
	if err != nil || len(failed) > 0 {
		var missing []string
		for _, c := range cases {
			if got[c.name] == nil && len(missing) < 10 {
				missing = append(missing, fmt.Sprintf("%s (%q)", c.name, failed[c.name]))
			}
		}
		t.Fatalf("the controller made no pull Secret for %d of %d specs (%v), the first: %s",
			len(cases)-len(got), len(cases), err, strings.Join(missing, "; "))
	}
	return got
}

// taskAPI is the real task API (pkg/tasks) on a fake API server; every caller may
// do everything.
type taskAPI struct {
	client *fake.Clientset
	h      http.Handler
}

type allowAll struct{}

func (allowAll) Authenticate(context.Context, string) (*tasks.User, error) {
	return &tasks.User{Name: "keyring-test"}, nil
}

func (allowAll) Authorize(context.Context, *tasks.User, string, string) (bool, string, error) {
	return true, "", nil
}

func newTaskAPI() *taskAPI {
	client := fake.NewClientset()
	srv := tasks.New(tasks.Options{Client: client, Namespace: ns, Guard: allowAll{}, Logger: logr.Discard()})
	return &taskAPI{client: client, h: srv.Handler()}
}

// taskRequest is the body of POST /api/v1/tasks.
type taskRequest struct {
	Images   []string `json:"images"`
	Registry string   `json:"registry,omitempty"`
	Username string   `json:"username,omitempty"`
	Password string   `json:"password,omitempty"`
}

// create posts the request and returns the task's pull Secret, or the API's refusal.
func (a *taskAPI) create(t *testing.T, req taskRequest) (*corev1.Secret, *tasks.Error) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, tasks.BasePath, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer any")
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, r)
	switch rec.Code {
	case http.StatusCreated:
		var created tasks.Created
		if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
			t.Fatalf("201 body %s: %v", rec.Body, err)
		}
		s, err := a.client.CoreV1().Secrets(ns).Get(t.Context(), jobs.SecretName(created.TaskID), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("task %s created without its pull Secret: %v", created.TaskID, err)
		}
		return s, nil
	case http.StatusBadRequest:
		var refused tasks.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &refused); err != nil {
			t.Fatalf("400 body %s: %v", rec.Body, err)
		}
		return nil, &refused
	}
	t.Fatalf("POST %s: %d %s", body, rec.Code, rec.Body)
	return nil, nil
}
