package controller

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

func runJob(run, name, uid string) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid), Labels: map[string]string{jobs.LabelRun: run}}}
}

func TestFreedSlots(t *testing.T) {
	t0 := time.Now()
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) }
	tests := map[string]struct {
		steps       func(f *freedSlots)
		wantPending int
		wantFirst   time.Time // the first claim; zero: none
	}{
		"oldest claimed first": {
			steps: func(f *freedSlots) {
				f.stamp(runJob("r1", "b", "2"), at(2))
				f.stamp(runJob("r1", "a", "1"), at(1))
			},
			wantPending: 2, wantFirst: at(2),
		},
		"a Job frees its slot once": {
			steps: func(f *freedSlots) {
				f.stamp(runJob("r1", "a", "1"), at(1))
				f.stamp(runJob("r1", "a", "1"), at(2))
			},
			wantPending: 1, wantFirst: at(1),
		},
		"a later Job of the name is another Job": {
			steps: func(f *freedSlots) {
				f.stamp(runJob("r1", "a", "1"), at(1))
				f.jobGone(runJob("r1", "a", "1"))
				f.stamp(runJob("r1", "a", "2"), at(2))
			},
			wantPending: 2, wantFirst: at(1),
		},
		"a run not opened takes no stamps": {
			steps:       func(f *freedSlots) { f.stamp(runJob("old", "a", "1"), at(1)) },
			wantPending: 0,
		},
		"a replaced run forgets its stamps": {
			steps: func(f *freedSlots) {
				f.stamp(runJob("r1", "a", "1"), at(1))
				f.replaceRun(&runState{runID: "r1"}, &runState{runID: "r2"})
				f.replaceRun(&runState{runID: "r2"}, &runState{runID: "r1"})
			},
			wantPending: 0,
		},
		"the same run set again keeps them": {
			steps: func(f *freedSlots) {
				f.stamp(runJob("r1", "a", "1"), at(1))
				f.replaceRun(&runState{runID: "r1"}, &runState{runID: "r1"})
			},
			wantPending: 1, wantFirst: at(1),
		},
		"stamps from before a time dropped": {
			steps: func(f *freedSlots) {
				f.stamp(runJob("r1", "a", "1"), at(1))
				f.stamp(runJob("r1", "b", "2"), at(3))
				f.dropBefore("r1", at(2))
			},
			wantPending: 1, wantFirst: at(3),
		},
		"past the cap the oldest go": {
			steps: func(f *freedSlots) {
				for i := range maxStampsPerRun + 1 {
					f.stamp(runJob("r1", fmt.Sprint(i), fmt.Sprint(i)), at(i))
				}
			},
			wantPending: maxStampsPerRun, wantFirst: at(1),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFreedSlots()
			f.replaceRun(nil, &runState{runID: "r1"})
			tc.steps(f)
			if got := f.pending("r1"); got != tc.wantPending {
				t.Errorf("pending %d, want %d", got, tc.wantPending)
			}
			first, ok := f.claim("r1")
			if ok != !tc.wantFirst.IsZero() || !first.Equal(tc.wantFirst) {
				t.Errorf("first claim %v (%v), want %v", first.Sub(t0), ok, tc.wantFirst.Sub(t0))
			}
		})
	}
}

// withJobUIDs gives every created Job a UID, as an API server does and the fake does not.
func withJobUIDs(client *fake.Clientset) *fake.Clientset {
	var n atomic.Int64
	client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*batchv1.Job).UID = types.UID(fmt.Sprintf("job-uid-%d", n.Add(1)))
		return false, nil, nil
	})
	return client
}

// refillCount is the number of refills the histogram observed for spec.
func refillCount(t *testing.T, spec string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.RefillLatency.WithLabelValues(spec).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// pullFailedPod is the pod of job, stuck on a permanent pull error.
func pullFailedPod(job *batchv1.Job) *corev1.Pod {
	labels := map[string]string{podJobLabel: job.Name}
	for k, v := range job.Labels {
		labels[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-x", Namespace: ns, Labels: labels},
		Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{Name: "pull-0", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "unauthorized: authentication required"}}}}},
	}
}

func jobOf(t *testing.T, client *fake.Clientset, node string) *batchv1.Job {
	t.Helper()
	for _, j := range listJobs(t, client) {
		if jobs.NodeOf(&j) == node {
			return &j
		}
	}
	t.Fatalf("no Job for node %s", node)
	return nil
}

// One observation per freed slot that a Job takes: none for the first fill or a node
// that joins later, one for a pull failed fast (not again when its Job then fails), one
// per finish refilled.
func TestRefillLatencyOncePerFreedSlot(t *testing.T) {
	const specName, text = "refill", "images: [nginx:1.27]\nrollout: {maxConcurrentNodes: 1}\n"
	spec, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	runID := runIDFor(specName, spec)
	defer metrics.ForgetSpec(specName)
	client := withJobUIDs(fake.NewClientset())
	for _, o := range []*corev1.Node{node("n1", ready), node("n2", ready), node("n3", ready)} {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Create(t.Context(), specConfigMap(specName, text), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := New(client, Options{Namespace: ns, NoopImage: "noop:1", StatusInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, 2) }()
	defer func() { cancel(); <-done }()

	eventually(t, "the first Job", func() bool { return createdJobs(client) == 1 })
	if n := refillCount(t, specName); n != 0 {
		t.Fatalf("%d refills observed for the first fill", n)
	}
	pod := pullFailedPod(jobOf(t, client, "n1"))
	failed := pod.Status
	pod.Status = corev1.PodStatus{}
	if _, err := client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Status = failed
	if _, err := client.CoreV1().Pods(ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n2's Job after n1's pull failed", func() bool { return createdJobs(client) == 2 })
	finish(t, client, batchv1.JobFailed, func(j *batchv1.Job) bool { return jobs.NodeOf(j) == "n1" }) // its deadline, later
	time.Sleep(50 * time.Millisecond)
	if n, left := refillCount(t, specName), c.freedSlots.pending(runID); n != 1 || left != 0 {
		t.Fatalf("after a pull failed fast and its Job failed: %d refills observed, %d stamps left; want 1 and 0", n, left)
	}
	completeAll(t, client)
	eventually(t, "n3's Job stored", func() bool {
		return slices.ContainsFunc(listJobs(t, client), func(j batchv1.Job) bool { return jobs.NodeOf(&j) == "n3" })
	})
	completeAll(t, client)
	eventually(t, "n3's finish seen", func() bool {
		return testutil.ToFloat64(metrics.JobsFinished.WithLabelValues(specName, "succeeded")) == 2
	})
	time.Sleep(50 * time.Millisecond) // its handler, and the reconcile it queues
	if left := c.freedSlots.pending(runID); left != 0 {
		t.Fatalf("%d stamps left with no node waiting", left)
	}
	if _, err := client.CoreV1().Nodes().Create(t.Context(), node("n4", ready), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new node's Job", func() bool { return createdJobs(client) == 4 })
	if n := refillCount(t, specName); n != 2 {
		t.Fatalf("%d refills observed, want 2 (n2 and n3; n4 joined and took a slot freed long before)", n)
	}
}
