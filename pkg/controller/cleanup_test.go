package controller

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

func onNode(names ...string) func(*batchv1.Job) bool {
	return func(j *batchv1.Job) bool { return slices.Contains(names, jobs.NodeOf(j)) }
}

func jobNodes(t *testing.T, client *fake.Clientset) []string {
	t.Helper()
	var out []string
	for _, j := range listJobs(t, client) {
		out = append(out, jobs.NodeOf(&j))
	}
	slices.Sort(out)
	return out
}

func storedStatusOf(t *testing.T, client *fake.Clientset, spec string) *status.Status {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name(spec), metav1.GetOptions{})
	if err != nil {
		return nil
	}
	st, err := status.FromConfigMap(spec, cm)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// firstRecorded is the index of the first status write in actions whose results hold
// node, -1 if none.
func firstRecorded(actions []k8stesting.Action, spec, node string) int {
	for i, a := range actions {
		if a.GetResource().Resource != "configmaps" || (a.GetVerb() != "create" && a.GetVerb() != "update") {
			continue
		}
		cm, ok := a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap)
		if !ok || cm.Name != status.Name(spec) {
			continue
		}
		if st, err := status.FromConfigMap(spec, cm); err == nil && st.Results[node].Phase != "" {
			return i
		}
	}
	return -1
}

// jobDeletions returns, by Job name, the index of its first delete in actions and how
// many deletes it got.
func jobDeletions(actions []k8stesting.Action) (first, count map[string]int) {
	first, count = map[string]int{}, map[string]int{}
	for i, a := range actions {
		if a.GetVerb() == "delete" && a.GetResource().Resource == "jobs" {
			name := a.(k8stesting.DeleteAction).GetName()
			if count[name] == 0 {
				first[name] = i
			}
			count[name]++
		}
	}
	return first, count
}

// Successful Jobs go as soon as a stored status holds their outcome, never before,
// with background propagation (their pods go with them) and the Job's UID as a
// precondition; failed ones stay for keepFailedJobs.
func TestSucceededJobsGoOnceRecordedFailedOnesStay(t *testing.T) {
	spec := "images: [nginx:1.27]\nrollout: {maxConcurrentNodes: 3, keepFailedJobs: 1h}\n"
	client := startFake(t, node("n1", ready), node("n2", ready), node("n3", ready), specConfigMap("ml", spec))
	eventually(t, "3 Jobs", func() bool { return len(listJobs(t, client)) == 3 })
	finish(t, client, batchv1.JobComplete, onNode("n1", "n2"))
	finish(t, client, batchv1.JobFailed, onNode("n3"))
	eventually(t, "the succeeded Jobs deleted", func() bool { return slices.Equal(jobNodes(t, client), []string{"n3"}) })
	time.Sleep(100 * time.Millisecond)
	if got := jobNodes(t, client); !slices.Equal(got, []string{"n3"}) {
		t.Fatalf("Jobs left %v, want the failed node's only", got)
	}
	actions := client.Actions()
	deletes, count := jobDeletions(actions)
	for _, n := range []string{"n1", "n2"} {
		name := jobs.JobName(runIDFor("ml", mustSpec(t, spec)), n)
		del, ok := deletes[name]
		if count[name] != 1 {
			t.Errorf("node %s: %d deletes of its Job, want 1 (one write per node)", n, count[name])
		}
		if rec := firstRecorded(actions, "ml", n); !ok || rec < 0 || del < rec {
			t.Errorf("node %s: Job deleted at action %d, outcome first stored at %d: the delete must follow the record", n, del, rec)
		}
		opts := actions[del].(k8stesting.DeleteAction).GetDeleteOptions()
		if opts.PropagationPolicy == nil || *opts.PropagationPolicy != metav1.DeletePropagationBackground || opts.Preconditions == nil || opts.Preconditions.UID == nil {
			t.Errorf("node %s: delete options %+v, want background propagation and a UID precondition", n, opts)
		}
	}
	if st := storedStatusOf(t, client, "ml"); st == nil || st.Results["n1"].Phase != "Succeeded" || st.Results["n3"].Phase != "Failed" {
		t.Fatalf("status %+v", st)
	}
	if n := createdJobs(client); n != 3 {
		t.Fatalf("%d Job creates, want 3", n)
	}
}

func mustSpec(t *testing.T, text string) *config.Spec {
	t.Helper()
	s, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// While no status write lands, no finished Job goes: a restart then would find
// neither the outcome nor the Job.
func TestNoJobDeletedBeforeItsOutcomeIsStored(t *testing.T) {
	spec := "images: [nginx:1.27]\nrollout: {maxConcurrentNodes: 2, keepFailedJobs: 0s}\n"
	client := fake.NewClientset()
	var refuse atomic.Bool
	refuse.Store(true)
	for _, verb := range []string{"create", "update"} {
		client.PrependReactor(verb, "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if cm, ok := a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap); ok && strings.HasSuffix(cm.Name, "-status") && refuse.Load() {
				return true, nil, apierrors.NewServiceUnavailable("etcd is away")
			}
			return false, nil, nil
		})
	}
	client = startFakeWith(t, client, node("n1", ready), node("n2", ready), specConfigMap("ml", spec))
	eventually(t, "2 Jobs", func() bool { return len(listJobs(t, client)) == 2 })
	finish(t, client, batchv1.JobComplete, onNode("n1"))
	finish(t, client, batchv1.JobFailed, onNode("n2")) // keepFailedJobs 0: goes once recorded
	time.Sleep(300 * time.Millisecond)
	if got := jobNodes(t, client); len(got) != 2 {
		t.Fatalf("Jobs %v deleted while no status write landed", got)
	}
	refuse.Store(false)
	eventually(t, "both Jobs deleted once the status is stored", func() bool { return len(listJobs(t, client)) == 0 })
	if st := storedStatusOf(t, client, "ml"); st == nil || st.Results["n1"].Phase != "Succeeded" || st.Results["n2"].Phase != "Failed" {
		t.Fatalf("status %+v", st)
	}
}

// A run keeps its failed Jobs keepFailedJobs long, at most FailedJobsKeptPerRun of them
// (the earliest failures); the others go at once.
func TestFailedJobsKeptForTheirTimeAndBoundedInCount(t *testing.T) {
	n := config.FailedJobsKeptPerRun + 3
	objs := []any{specConfigMap("ml", fmt.Sprintf("images: [nginx:1.27]\nrollout: {maxConcurrentNodes: %d, keepFailedJobs: 2s}\n", n))}
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("n%02d", i))
		objs = append(objs, node(names[i], ready))
	}
	client := startFake(t, objs...)
	eventually(t, "every Job", func() bool { return len(listJobs(t, client)) == n })
	failedAt := time.Now()
	finish(t, client, batchv1.JobFailed, onNode(names[:config.FailedJobsKeptPerRun]...))
	eventually(t, "the first failures recorded", func() bool {
		st := storedStatusOf(t, client, "ml")
		return st != nil && st.Counts["Failed"] == config.FailedJobsKeptPerRun
	})
	time.Sleep(20 * time.Millisecond)
	finish(t, client, batchv1.JobFailed, onNode(names[config.FailedJobsKeptPerRun:]...))
	eventually(t, "the failures beyond the count deleted", func() bool { return len(listJobs(t, client)) == config.FailedJobsKeptPerRun })
	if got := jobNodes(t, client); !slices.Equal(got, names[:config.FailedJobsKeptPerRun]) {
		t.Fatalf("kept %v, want the earliest failures %v", got, names[:config.FailedJobsKeptPerRun])
	}
	eventually(t, "kept Jobs gone after keepFailedJobs", func() bool { return len(listJobs(t, client)) == 0 })
	if kept := time.Since(failedAt); kept < 2*time.Second {
		t.Fatalf("failed Jobs gone after %v, before keepFailedJobs (2s)", kept)
	}
}

// A restart resumes from the stored status: a node whose outcome is stored gets no new
// Job even though its Job is gone, and a Job that finished while no controller ran is
// recorded, then deleted, not created again.
func TestRestartCreatesNoJobForRecordedNodes(t *testing.T) {
	text := "images: [nginx:1.27]\nrollout: {maxConcurrentNodes: 5}\n"
	runID := runIDFor("ml", mustSpec(t, text))
	prior := &status.Status{Spec: "ml", RunID: runID, Phase: status.PhaseRunning, Results: map[string]status.Result{
		"done": {Phase: "Succeeded"}, "broke": {Phase: "Failed", Reason: "ErrImagePull: 401 Unauthorized"},
	}}
	stored, err := prior.ConfigMap(ns, map[string]string{jobs.LabelApp: jobs.AppName})
	if err != nil {
		t.Fatal(err)
	}
	finished := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: jobs.JobName(runID, "meanwhile"), Namespace: ns, UID: "u-meanwhile",
			Labels:      jobs.Labels(jobs.RunRef{Namespace: ns, Spec: "ml", RunID: runID}),
			Annotations: map[string]string{jobs.AnnotationNode: "meanwhile"}},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}},
	}
	client := startFake(t, node("done", ready), node("broke", ready), node("meanwhile", ready), node("new", ready),
		stored, finished, specConfigMap("ml", text))
	eventually(t, "the new node's Job", func() bool { return slices.Contains(jobNodes(t, client), "new") })
	finish(t, client, batchv1.JobComplete, onNode("new"))
	eventually(t, "run succeeded with every outcome", func() bool {
		st := storedStatusOf(t, client, "ml")
		return st != nil && st.Done() && len(st.Results) == 4
	})
	eventually(t, "finished Jobs deleted", func() bool { return len(listJobs(t, client)) == 0 })
	st := storedStatusOf(t, client, "ml")
	want := map[string]string{"done": "Succeeded", "broke": "Failed", "meanwhile": "Succeeded", "new": "Succeeded"}
	for n, phase := range want {
		if st.Results[n].Phase != phase {
			t.Errorf("node %s: %q, want %q", n, st.Results[n].Phase, phase)
		}
	}
	if n := createdJobs(client); n != 2 { // the test's own create of "meanwhile" and "new"
		t.Fatalf("%d Job creates, want 1 by the controller", n-1)
	}
}

// A superseded run's finished Jobs are collected too: its successes at once, its
// failures when their time is up.
func TestSupersededRunsFinishedJobsCollected(t *testing.T) {
	client := startFake(t, node("n1", ready), node("n2", ready), specConfigMap("ml", "images: [nginx:1.27]\nrollout: {keepFailedJobs: 1h}\n"))
	eventually(t, "2 Jobs", func() bool { return len(listJobs(t, client)) == 2 })
	// Both finish as the spec is edited: the new run may start before their outcomes are stored.
	finish(t, client, batchv1.JobComplete, onNode("n1"))
	finish(t, client, batchv1.JobFailed, onNode("n2"))
	edited := specConfigMap("ml", "images: [nginx:1.28]\nrollout: {keepFailedJobs: 1h}\n")
	if _, err := client.CoreV1().ConfigMaps(ns).Update(t.Context(), edited, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	oldRun := runIDFor("ml", mustSpec(t, "images: [nginx:1.27]\nrollout: {keepFailedJobs: 1h}\n"))
	eventually(t, "the old run's success deleted, its failure kept", func() bool {
		var old []string
		for _, j := range listJobs(t, client) {
			if j.Labels[jobs.LabelRun] == oldRun {
				old = append(old, jobs.NodeOf(&j))
			}
		}
		return slices.Equal(old, []string{"n2"})
	})
}

func TestStatusWriterLanded(t *testing.T) {
	client := fake.NewClientset()
	var failing atomic.Bool
	client.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing.Load() {
			return true, nil, apierrors.NewInternalError(fmt.Errorf("etcd"))
		}
		return false, nil, nil
	})
	w := newStatusWriter(client, ns)
	landed := make(chan string, 10)
	w.onLanded = func(spec string) { landed <- spec }
	startWriterFor(t, w)
	first := w.write("spec", statusCM("Running"))
	if got := <-landed; got != "spec" || w.landed("spec") != first {
		t.Fatalf("landed %q seq %d, want spec at %d", got, w.landed("spec"), first)
	}
	failing.Store(true)
	second := w.write("spec", statusCM("Succeeded"))
	time.Sleep(50 * time.Millisecond)
	if w.landed("spec") != first {
		t.Fatalf("a failed write counted as landed: %d", w.landed("spec"))
	}
	failing.Store(false)
	eventually(t, "the retried write landed", func() bool { return w.landed("spec") == second })
}

func TestFailedAt(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	started := metav1.NewTime(created.Add(time.Second))
	installed := metav1.NewTime(created.Add(3 * time.Second))
	ended := metav1.NewTime(created.Add(15 * time.Minute))
	job := func(start *metav1.Time, conds ...batchv1.JobCondition) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created}, Status: batchv1.JobStatus{StartTime: start, Conditions: conds}}
	}
	waitingPod := &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{
		{Name: jobs.ContainerInstall, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{StartedAt: started, FinishedAt: installed}}},
		{Name: jobs.PullContainerName(0), State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}},
	}}}
	failed := batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: ended}
	for name, tc := range map[string]struct {
		job  *batchv1.Job
		pods []*corev1.Pod
		want metav1.Time
	}{
		"failed by its deadline":                {job: job(&started, failed), pods: []*corev1.Pod{waitingPod}, want: ended},
		"active, pod on a permanent pull error": {job: job(&started), pods: []*corev1.Pod{waitingPod}, want: installed},
		"active, its pod gone":                  {job: job(&started), want: started},
		"not started":                           {job: job(nil), want: created},
		"a condition that is not final": {job: job(&started, batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionFalse, LastTransitionTime: ended}),
			want: started},
	} {
		if got := failedAt(tc.job, tc.pods); !got.Equal(tc.want.Time) {
			t.Errorf("%s: failedAt = %v, want %v", name, got, tc.want)
		}
	}
}

func TestTrimOwned(t *testing.T) {
	now := metav1.Now()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "prewarm-r-n1", Namespace: ns, UID: "u1", ResourceVersion: "7",
			Labels:        map[string]string{jobs.LabelRun: "r", jobs.LabelSpec: "ml"},
			Annotations:   map[string]string{jobs.AnnotationNode: "n1", "other": strings.Repeat("x", 1000)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}}},
		Spec: jobs.BuildJob(jobs.JobParams{Node: "n1", Images: make([]jobs.ImagePull, 50)}).Spec,
		Status: batchv1.JobStatus{StartTime: &now, Active: 1, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded", Message: "too long", LastTransitionTime: now},
		}},
	}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "401 Unauthorized"}}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: now, FinishedAt: metav1.NewTime(now.Add(3 * time.Second))}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns, Labels: map[string]string{podJobLabel: "prewarm-r-n1"}},
		Spec:       job.Spec.Template.Spec,
		Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
			{Name: jobs.ContainerInstall, Image: "noop", ImageID: "sha256:x", State: done},
			{Name: jobs.PullContainerName(0), Image: "harbor.x/a:1", State: waiting, LastTerminationState: done},
		}},
	}
	for name, obj := range map[string]any{"job": job, "pod": pod} {
		once, _ := trimOwned(obj)
		twice, _ := trimOwned(once)
		if !reflect.DeepEqual(once, twice) {
			t.Errorf("%s: trimming twice differs from once", name)
		}
		if size(t, once)*5 > size(t, obj) {
			t.Errorf("%s: trimmed to %d bytes of %d", name, size(t, once), size(t, obj))
		}
	}
	tj, _ := trimOwned(job)
	tp, _ := trimOwned(pod)
	trimmedJob, trimmedPod := tj.(*batchv1.Job), tp.(*corev1.Pod)
	if got, want := observeJob(trimmedJob, []*corev1.Pod{trimmedPod}), observeJob(job, []*corev1.Pod{pod}); got != want {
		t.Errorf("observeJob on trimmed objects %+v, want %+v", got, want)
	}
	if jobs.NodeOf(trimmedJob) != "n1" || !jobs.Finished(trimmedJob) || !failedAt(trimmedJob, nil).Equal(now.Time) || trimmedJob.Labels[jobs.LabelRun] != "r" {
		t.Errorf("trimmed Job lost what decisions read: %+v", trimmedJob)
	}
	if lastPullError([]*corev1.Pod{trimmedPod}) != lastPullError([]*corev1.Pod{pod}) || !reflect.DeepEqual(pullDurations(trimmedPod), pullDurations(pod)) {
		t.Errorf("trimmed pod lost what decisions read: %+v", trimmedPod.Status)
	}
	pod.Status.InitContainerStatuses[1].State = waiting
	if _, ok := permanentPullError(trimmedPod); !ok {
		t.Error("trimmed pod lost its permanent pull error")
	}
	if other, _ := trimOwned(&corev1.ConfigMap{}); !reflect.DeepEqual(other, &corev1.ConfigMap{}) {
		t.Error("other kinds must pass through")
	}
}

func size(t *testing.T, obj any) int {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return len(raw)
}

// Kept failures stay kept: a failure recorded later, even one whose Job started earlier
// (it failed while no controller ran), takes no place from them, after a restart too.
func TestKeptFailuresAreNotEvictedByLaterOnes(t *testing.T) {
	text := "images: [nginx:1.27]\nrollout: {keepFailedJobs: 1h}\n"
	runID := runIDFor("ml", mustSpec(t, text))
	ref := jobs.RunRef{Namespace: ns, Spec: "ml", RunID: runID}
	prior := &status.Status{Spec: "ml", RunID: runID, Phase: status.PhaseRunning, Results: map[string]status.Result{}}
	objs := []any{}
	failedJobOn := func(node string, at time.Time) *batchv1.Job {
		return &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: jobs.JobName(runID, node), Namespace: ns, UID: types.UID("u-" + node), Labels: jobs.Labels(ref),
				Annotations: map[string]string{jobs.AnnotationNode: node}},
			Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at)}}},
		}
	}
	var kept []string
	for i := range config.FailedJobsKeptPerRun {
		n := fmt.Sprintf("kept%02d", i)
		kept = append(kept, n)
		prior.Results[n] = status.Result{Phase: "Failed", Reason: "BackoffLimitExceeded"}
		objs = append(objs, node(n, ready), failedJobOn(n, time.Now().Add(-10*time.Second)))
	}
	stored, err := prior.ConfigMap(ns, map[string]string{jobs.LabelApp: jobs.AppName})
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, node("late", ready), failedJobOn("late", time.Now().Add(-20*time.Second)), stored, specConfigMap("ml", text))
	client := startFake(t, objs...)
	eventually(t, "the late failure recorded and its Job deleted", func() bool {
		st := storedStatusOf(t, client, "ml")
		return st != nil && st.Results["late"].Phase == "Failed" && !slices.Contains(jobNodes(t, client), "late")
	})
	time.Sleep(100 * time.Millisecond)
	if got := jobNodes(t, client); !slices.Equal(got, kept) {
		t.Fatalf("Jobs %v, want the kept ones %v", got, kept)
	}
}

// Between a delete and the informer showing it, reconciles see the Job still: it must
// not count among the kept ones, or it would push a kept Job out.
func TestJobsOnTheirWayOutKeepNoPlace(t *testing.T) {
	spec := mustSpec(t, "images: [nginx:1.27]\nrollout: {keepFailedJobs: 1h}\n")
	c := New(fake.NewClientset(), Options{Namespace: ns, NoopImage: "noop:1"})
	rs := &runState{runID: "r1", spec: spec, status: &status.Status{Results: map[string]status.Result{}}, unlanded: map[string]unlanded{}}
	ref := jobs.RunRef{Namespace: ns, Spec: "ml", RunID: "r1"}
	start := time.Now().Add(-time.Minute)
	n := config.FailedJobsKeptPerRun + 2
	for i := range n {
		node := fmt.Sprintf("n%02d", i)
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: jobs.JobName("r1", node), Namespace: ns, UID: types.UID("u" + node),
			Labels: jobs.Labels(ref), Annotations: map[string]string{jobs.AnnotationNode: node}},
			// Every Job started together, n00 failed first: the start is earlier than any record.
			Status: batchv1.JobStatus{StartTime: &metav1.Time{Time: start}}}
		if err := c.jobInformer.GetStore().Add(job); err != nil {
			t.Fatal(err)
		}
		rs.status.Results[node] = status.Result{Phase: "Failed"}
		rs.unlanded[node] = unlanded{at: time.Now().Add(time.Duration(i) * time.Millisecond), seq: 1}
	}
	c.statuses.stored["ml"] = 1
	cm := specConfigMap("ml", "")
	c.collectJobs(t.Context(), cm, rs)
	c.collectJobs(t.Context(), cm, rs) // the deleted Jobs are still in the informer
	var deleted []string
	for c.deletions.Len() > 0 {
		d, _ := c.deletions.Get()
		deleted = append(deleted, d.job.name)
		c.deletions.Done(d)
	}
	slices.Sort(deleted)
	if want := []string{jobs.JobName("r1", "n10"), jobs.JobName("r1", "n11")}; !slices.Equal(deleted, want) {
		t.Fatalf("deleted %v, want the two latest failures %v", deleted, want)
	}
}
