package e2e

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/controller"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/logging/logtest"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

const (
	// Images under harbor.example.com/fail/ fail with 401 on nodes whose name has "bad".
	failImages = `^harbor\.example\.com/fail/`
	failNodes  = `bad`
	noopImage  = "example.com/image-prewarm:e2e"
	// sentinel is a password that must appear nowhere but in pull Secrets.
	sentinel = "S3ntinel-Pa55w0rd-e2e"
)

var kube *cluster.Cluster

func TestMain(m *testing.M) {
	pulls := cluster.PullBehaviour{Delay: time.Second, Jitter: time.Second, FailImagePattern: failImages, FailNodePattern: failNodes}
	os.Exit(cluster.RunTests(m, cluster.Options{Pulls: pulls}, func(c *cluster.Cluster) { kube = c }))
}

// env is one test's namespace (Pod Security "restricted" enforced), its nodes and its
// controller, whose log lines are kept for the credential checks.
type env struct {
	t       *testing.T
	ns      string
	logs    *logtest.Buffer
	created *jobWatch // every Job of the namespace, from the start
	// createdPods: every prewarm pod of the namespace, from the start (they go with
	// their Jobs once recorded).
	createdPods *podWatch
	stop        context.CancelFunc
	done        chan struct{}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "_", "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	err := kube.Namespace(t.Context(), ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ns: ns, logs: &logtest.Buffer{}}
	e.created, e.createdPods = e.watchJobs(), e.watchPods()
	t.Cleanup(e.stopController)
	return e
}

// createdJobs returns every Job created in the namespace during the test, in the last
// state the watch saw: the controller deletes a Job once its outcome is recorded, so a
// check of the Jobs a run created cannot list them afterwards.
func (e *env) createdJobs() []batchv1.Job {
	e.t.Helper()
	e.created.mu.Lock()
	defer e.created.mu.Unlock()
	out := make([]batchv1.Job, 0, len(e.created.last))
	for _, j := range e.created.last {
		out = append(out, *j)
	}
	if len(out) == 0 {
		e.t.Fatal("no Job was ever created in the namespace")
	}
	return out
}

func (e *env) startController() { e.startControllerWith(kube.Client) }

// startControllerWith runs the controller with the given client (e.g. one that
// impersonates the chart's ServiceAccount).
func (e *env) startControllerWith(client kubernetes.Interface) {
	logger, err := logging.New(logging.FormatJSON, 2, e.logs)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(logging.IntoContext(context.Background(), logger))
	e.stop, e.done = cancel, make(chan struct{})
	c := controller.New(client, controller.Options{Namespace: e.ns, NoopImage: noopImage})
	go func() {
		defer close(e.done)
		if err := c.Run(ctx, 4); err != nil {
			e.t.Errorf("controller: %v", err)
		}
	}()
}

func (e *env) stopController() {
	if e.stop != nil {
		e.stop()
		<-e.done
		e.stop = nil
	}
}

// nodes creates n Ready fake nodes labeled for this test, named <ns>-<prefix>-NNN.
func (e *env) nodes(prefix string, n int, mutate ...func(*cluster.NodeSpec)) []string {
	e.t.Helper()
	specs := cluster.FakeNodes(e.ns+"-"+prefix, n)
	for i := range specs {
		specs[i].Labels = map[string]string{"e2e": e.ns}
		for _, m := range mutate {
			m(&specs[i])
		}
	}
	if err := kube.CreateNodes(e.t.Context(), specs...); err != nil {
		e.t.Fatal(err)
	}
	names := cluster.Names(specs)
	if err := kube.WaitNodesReady(e.t.Context(), names...); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		for _, n := range names {
			_ = kube.DeleteNode(context.Background(), n)
		}
	})
	return names
}

func (e *env) applySpec(name, spec string) {
	e.t.Helper()
	if err := prewarmtest.ApplySpec(e.t.Context(), kube.Client, e.ns, name, spec); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) credentials(name, user, password string) {
	e.t.Helper()
	if err := prewarmtest.BasicAuth(e.t.Context(), kube.Client, e.ns, name, user, password); err != nil {
		e.t.Fatal(err)
	}
}

// status waits until the spec's status ConfigMap satisfies cond and returns it.
func (e *env) waitStatus(spec string, what string, cond func(*status.Status) bool) *status.Status {
	e.t.Helper()
	var last *status.Status
	e.eventually(what, 2*time.Minute, func(ctx context.Context) (bool, error) {
		st, err := prewarmtest.Status(ctx, kube.Client, e.ns, spec)
		if err == nil {
			last = st
		}
		return err == nil && cond(st), nil
	})
	return last
}

func phaseIs(phase string) func(*status.Status) bool {
	return func(s *status.Status) bool { return s.Phase == phase }
}

func (e *env) eventually(what string, timeout time.Duration, cond wait.ConditionWithContextFunc) {
	e.t.Helper()
	if err := wait.PollUntilContextTimeout(e.t.Context(), 100*time.Millisecond, timeout, true, cond); err != nil {
		e.t.Fatalf("waiting for %s: %v\ncontroller log tail:\n%s", what, err, e.logs.Tail(3000))
	}
}

func (e *env) jobs() []batchv1.Job {
	e.t.Helper()
	list, err := kube.Client.BatchV1().Jobs(e.ns).List(e.t.Context(), metav1.ListOptions{LabelSelector: jobs.LabelApp + "=" + jobs.AppName})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

func (e *env) secrets() []corev1.Secret {
	e.t.Helper()
	list, err := kube.Client.CoreV1().Secrets(e.ns).List(e.t.Context(), metav1.ListOptions{LabelSelector: jobs.LabelApp + "=" + jobs.AppName})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

func (e *env) events() []corev1.Event {
	e.t.Helper()
	list, err := kube.Client.CoreV1().Events(e.ns).List(e.t.Context(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// jobWatch records, from a watch on the namespace's Jobs, the most Jobs active at once
// and how many times a Job was created for each node.
type jobWatch struct {
	mu        sync.Mutex
	active    map[string]bool
	maxActive int
	created   map[string]int // node → Job ADDED events with distinct UIDs
	uids      map[string]bool
	last      map[types.UID]*batchv1.Job // every Job seen, in its last seen state
	firstSeen chan struct{}
	first     sync.Once
	stop      func()
}

// watchNamespaceJobs is a resuming watch of the test namespace's Jobs
// (prewarmtest.ResumingWatch says why).
func (e *env) watchNamespaceJobs() watch.Interface {
	e.t.Helper()
	w, err := prewarmtest.WatchJobs(context.Background(), kube.Client, e.ns)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(w.Stop)
	return w
}

func (e *env) watchJobs() *jobWatch {
	e.t.Helper()
	w := e.watchNamespaceJobs()
	jw := &jobWatch{active: map[string]bool{}, created: map[string]int{}, uids: map[string]bool{},
		last: map[types.UID]*batchv1.Job{}, firstSeen: make(chan struct{}), stop: w.Stop}
	go func() {
		for ev := range w.ResultChan() {
			if job, ok := ev.Object.(*batchv1.Job); ok {
				jw.observe(ev.Type, job)
			}
		}
	}()
	return jw
}

func (jw *jobWatch) observe(t watch.EventType, job *batchv1.Job) {
	jw.mu.Lock()
	defer jw.mu.Unlock()
	jw.last[job.UID] = job
	if !jw.uids[string(job.UID)] {
		jw.uids[string(job.UID)] = true
		jw.created[jobs.NodeOf(job)]++
		jw.first.Do(func() { close(jw.firstSeen) })
	}
	finished := t == watch.Deleted || job.DeletionTimestamp != nil || jobs.Finished(job)
	if finished {
		delete(jw.active, job.Name)
	} else {
		jw.active[job.Name] = true
	}
	jw.maxActive = max(jw.maxActive, len(jw.active))
}

func (jw *jobWatch) snapshot() (maxActive int, created map[string]int) {
	jw.mu.Lock()
	defer jw.mu.Unlock()
	created = make(map[string]int, len(jw.created))
	for k, v := range jw.created {
		created[k] = v
	}
	return jw.maxActive, created
}
