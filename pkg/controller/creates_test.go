package controller

import (
	"errors"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

// A create the API server refuses is handed back to the next reconcile: the node is
// started again, the reconcile reports the error, and while the create is out the node
// holds its window slot, so the window never overfills.
func TestFailedCreateStartsTheNodeAgain(t *testing.T) {
	client := fake.NewClientset()
	var mu sync.Mutex
	refused := 0
	client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		job := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		mu.Lock()
		defer mu.Unlock()
		if jobs.NodeOf(job) == "n2" && refused < 2 {
			refused++
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, job.Name, errQuota)
		}
		return false, nil, nil
	})
	errorsBefore := testutil.ToFloat64(metrics.Reconciles.WithLabelValues("error"))
	startFakeWith(t, client, node("n1", ready), node("n2", ready), node("n3", ready),
		specConfigMap("ml", "images: [nginx:1.27]\nrollout: {maxConcurrentNodes: 2}\n"))
	eventually(t, "n2's Job after two refused creates", func() bool {
		for _, j := range listJobs(t, client) {
			if jobs.NodeOf(&j) == "n2" {
				return true
			}
		}
		return false
	})
	if got := testutil.ToFloat64(metrics.Reconciles.WithLabelValues("error")) - errorsBefore; got < 1 {
		t.Errorf("reconcile errors: %v, want the refused creates reported", got)
	}
	if n := len(listJobs(t, client)); n > 2 {
		t.Errorf("%d Jobs with a window of 2", n)
	}
	eventually(t, "every node's Job done and collected", func() bool {
		completeAll(t, client) // n1 and n2, then n3 in the freed slot
		return createdJobs(client) == 3+2 && len(listJobs(t, client)) == 0
	})
}

var errQuota = errors.New("exceeded quota: jobs")
