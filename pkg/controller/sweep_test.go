package controller

import (
	"fmt"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

func succeededJob(node string, rv int) *batchv1.Job {
	ref := jobs.RunRef{Namespace: ns, Spec: "ml", RunID: "r1"}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: jobs.JobName("r1", node), Namespace: ns, UID: types.UID("u-" + node),
			ResourceVersion: fmt.Sprint(rv), Labels: jobs.Labels(ref)},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}},
	}
}

// sweepClient answers the sweep's list with listed and records its DeleteCollections.
func sweepClient(listed ...*batchv1.Job) (*fake.Clientset, *[]k8stesting.DeleteCollectionAction) {
	client := fake.NewClientset()
	var sweeps []k8stesting.DeleteCollectionAction
	client.PrependReactor("list", "jobs", func(action k8stesting.Action) (bool, runtime.Object, error) {
		list := &batchv1.JobList{}
		for _, j := range listed {
			list.Items = append(list.Items, *j)
		}
		return true, list, nil
	})
	client.PrependReactor("delete-collection", "jobs", func(action k8stesting.Action) (bool, runtime.Object, error) {
		sweeps = append(sweeps, action.(k8stesting.DeleteCollectionAction))
		return true, nil, nil
	})
	return client, &sweeps
}

func TestSweepDeletesLandedSuccessesInOneRequest(t *testing.T) {
	a, b := succeededJob("a", 7), succeededJob("b", 9)
	client, sweeps := sweepClient(a, b)
	c := New(client, Options{Namespace: ns, NoopImage: "noop:1"})
	s := newSweep("r1")
	if !s.add(a) || !s.add(b) {
		t.Fatal("a succeeded Job of the run was refused")
	}
	if err := c.sweepSucceeded(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if len(*sweeps) != 1 || c.deletions.Len() != 0 {
		t.Fatalf("%d DeleteCollections and %d single deletes, want 1 and 0", len(*sweeps), c.deletions.Len())
	}
	got := (*sweeps)[0].GetListRestrictions()
	if got.Fields.String() != "status.successful=1" || !got.Labels.Matches(labels.Set(a.Labels)) {
		t.Fatalf("DeleteCollection selects %q / %q", got.Labels, got.Fields)
	}
}

// A list that returns a success the status does not hold yet must not be swept: each
// landed Job goes on its own.
func TestSweepFallsBackWhenTheListHoldsAnUnlandedJob(t *testing.T) {
	a, late := succeededJob("a", 7), succeededJob("late", 6)
	client, sweeps := sweepClient(a, late)
	c := New(client, Options{Namespace: ns, NoopImage: "noop:1"})
	s := newSweep("r1")
	s.add(a)
	if err := c.sweepSucceeded(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if len(*sweeps) != 0 || c.deletions.Len() != 1 {
		t.Fatalf("%d DeleteCollections and %d single deletes, want 0 and 1", len(*sweeps), c.deletions.Len())
	}
	if d, _ := c.deletions.Get(); d.job.name != a.Name {
		t.Fatalf("deleting %q, want %q", d.job.name, a.Name)
	}
}

func TestSweepRefusesWhatItCannotSelect(t *testing.T) {
	s := newSweep("r1")
	other := succeededJob("a", 7)
	other.Labels[jobs.LabelRun] = "r0"
	noRV := succeededJob("b", 0)
	noRV.ResourceVersion = ""
	running := succeededJob("c", 8)
	running.Status.Conditions = nil
	for name, j := range map[string]*batchv1.Job{"another run": other, "no resourceVersion": noRV, "not succeeded": running} {
		if s.add(j) {
			t.Errorf("%s: taken by the sweep", name)
		}
	}
}
