// Package prewarmtest creates and reads image-prewarm's own objects for the e2e,
// real-node and benchmark tests against a real API server: prewarm specs, credentials
// Secrets, status records and task API tokens. One copy, so every suite means the
// same thing by "apply a spec" or "the run's status".
package prewarmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"

	authnv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/pkg/tasks"
)

// ApplySpec creates the prewarm ConfigMap name with spec, or updates it if it exists.
func ApplySpec(ctx context.Context, client kubernetes.Interface, ns, name, spec string) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{config.ConfigLabel: "true"}},
		Data:       map[string]string{config.SpecKey: spec},
	}
	cms := client.CoreV1().ConfigMaps(ns)
	_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *corev1.ConfigMap
		if cur, err = cms.Get(ctx, name, metav1.GetOptions{}); err == nil {
			cur.Data = cm.Data
			_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("apply spec %s: %w", name, err)
	}
	return nil
}

// BasicAuth creates a kubernetes.io/basic-auth credentials Secret.
func BasicAuth(ctx context.Context, client kubernetes.Interface, ns, name, user, password string) error {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{corev1.BasicAuthUsernameKey: user, corev1.BasicAuthPasswordKey: password},
	}
	_, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
	return err
}

// Status reads the spec's status record, summary and segments; an error when it is
// absent or not wholly readable.
func Status(ctx context.Context, client kubernetes.Interface, ns, spec string) (*status.Status, error) {
	st, _, err := status.Read(ctx, client, ns, spec)
	if st == nil && err == nil {
		return nil, fmt.Errorf("no status of %s yet", spec)
	}
	return st, err
}

// TaskUser creates the ServiceAccount name with a Role allowing verbs on tasks in ns
// (none: no Role, a user the task API must refuse) and returns a token of it.
func TaskUser(ctx context.Context, client kubernetes.Interface, ns, name string, verbs ...string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if len(verbs) > 0 {
		if err := grantTasks(ctx, client, ns, name, verbs); err != nil {
			return "", err
		}
	}
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}
	tr, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

func grantTasks(ctx context.Context, client kubernetes.Interface, ns, name string, verbs []string) error {
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{tasks.Group}, Resources: []string{tasks.Resource}, Verbs: verbs}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{})
	return err
}

// JobRecord holds every Job a watch saw in a namespace, in its last seen state: the
// controller deletes a Job once its node's outcome is recorded, so a test that checks
// what a run created must have watched it.
type JobRecord struct {
	mu   sync.Mutex
	last map[types.UID]batchv1.Job
}

// ResumingWatch watches from the resourceVersion a list gives now, and resumes where it
// left off whenever the API server ends the watch, until ctx ends. The API server ends
// a watch whose reader falls behind a burst of events (a window of Job creates sent at
// once does it), and a plain watch then ends silently: a test counting from it would
// miss the rest.
func ResumingWatch(ctx context.Context, list func(context.Context, metav1.ListOptions) (string, error), watchFn cache.WatchFuncWithContext, opts metav1.ListOptions) (watch.Interface, error) {
	rv, err := list(ctx, opts)
	if err != nil {
		return nil, err
	}
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.LabelSelector, o.FieldSelector = opts.LabelSelector, opts.FieldSelector
		return watchFn(ctx, o)
	}}
	return watchtools.NewRetryWatcherWithContext(ctx, rv, lw)
}

// ListVersion turns a typed List into what ResumingWatch starts from: the list's
// resourceVersion.
func ListVersion[L interface{ GetResourceVersion() string }](list func(context.Context, metav1.ListOptions) (L, error)) func(context.Context, metav1.ListOptions) (string, error) {
	return func(ctx context.Context, o metav1.ListOptions) (string, error) {
		l, err := list(ctx, o)
		if err != nil {
			return "", err
		}
		return l.GetResourceVersion(), nil
	}
}

// WatchJobs is a resuming watch of the namespace's Jobs.
func WatchJobs(ctx context.Context, client kubernetes.Interface, ns string) (watch.Interface, error) {
	api := client.BatchV1().Jobs(ns)
	return ResumingWatch(ctx, ListVersion(api.List), api.Watch, metav1.ListOptions{})
}

// RecordJobs watches the namespace's Jobs until ctx ends.
func RecordJobs(ctx context.Context, client kubernetes.Interface, ns string) (*JobRecord, error) {
	w, err := WatchJobs(ctx, client, ns)
	if err != nil {
		return nil, err
	}
	r := &JobRecord{last: map[types.UID]batchv1.Job{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if job, ok := ev.Object.(*batchv1.Job); ok {
				r.mu.Lock()
				r.last[job.UID] = *job
				r.mu.Unlock()
			}
		}
	}()
	return r, nil
}

// OfRun returns the recorded Jobs labeled with the run.
func (r *JobRecord) OfRun(runID string) []batchv1.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []batchv1.Job
	for _, j := range r.last {
		if j.Labels[jobs.LabelRun] == runID {
			out = append(out, j)
		}
	}
	return out
}

// BuildController builds cmd/image-prewarm from this tree into dir and returns its
// path: the suites run the binary as it ships, not the controller in-process.
func BuildController(dir string) (string, error) {
	_, self, _, _ := runtime.Caller(0)
	out := filepath.Join(dir, "image-prewarm")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/image-prewarm")
	cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build image-prewarm: %w: %s", err, msg)
	}
	return out, nil
}
