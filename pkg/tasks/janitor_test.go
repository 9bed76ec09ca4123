package tasks

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/status"
)

func TestJanitorSweep(t *testing.T) {
	const retention = time.Hour
	tests := map[string]struct {
		status   *status.Status // nil: the controller has not reported
		cancel   bool           // DELETE the task first (tombstone)
		age      time.Duration  // how long before the sweep the task ended
		wantGone bool
	}{
		"succeeded long ago":      {status: &status.Status{Phase: status.PhaseSucceeded}, age: 2 * retention, wantGone: true},
		"succeeded recently":      {status: &status.Status{Phase: status.PhaseSucceeded}, age: retention / 2},
		"completed with failures": {status: &status.Status{Phase: status.PhaseCompletedFailed}, age: 2 * retention, wantGone: true},
		"still running":           {status: &status.Status{Phase: status.PhaseRunning}, age: 2 * retention},
		"not reported yet":        {age: 2 * retention},
		"cancelled long ago":      {cancel: true, age: 2 * retention, wantGone: true},
		"cancelled recently":      {cancel: true, age: retention / 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := newTestAPI(t)
			ended := fixedNow.Add(-tc.age)
			a.srv.now = func() time.Time { return ended }
			id := a.create(harborRequest(sentinel))
			other := a.create(`{"images":["nginx:1.27"]}`) // running: always kept
			a.writeStatus(other, &status.Status{Phase: status.PhaseRunning})
			if tc.status != nil {
				tc.status.Finished = ended
				a.writeStatus(id, tc.status)
			}
			if tc.cancel {
				a.do(http.MethodDelete, BasePath+"/"+id, adminToken, "")
			}
			j := NewJanitor(a.client, testNS, retention, logr.Discard())
			j.now = func() time.Time { return fixedNow }
			removed, err := j.Sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if gone := slices.Equal(removed, []string{id}); gone != tc.wantGone {
				t.Fatalf("removed %v, want gone=%v for %s", removed, tc.wantGone, id)
			}
			left := a.configMap(specName(id)) != nil || a.configMap(statusName(id)) != nil || a.configMap(tombstoneName(id)) != nil
			if _, err := a.client.CoreV1().Secrets(testNS).Get(context.Background(), secretName(id), metav1.GetOptions{}); err == nil {
				left = true
			}
			if left == tc.wantGone {
				t.Errorf("objects left: %v, want gone=%v", left, tc.wantGone)
			}
			if a.configMap(specName(other)) == nil {
				t.Errorf("a running task was removed")
			}
		})
	}
}

func TestJanitorRemovesStuckRunsByAge(t *testing.T) {
	a := newTestAPI(t)
	id := a.create(`{"images":["nginx:1.27"]}`)
	a.writeStatus(id, &status.Status{Phase: status.PhaseFailed, Message: "pull Secret: missing"})
	j := NewJanitor(a.client, testNS, time.Hour, logr.Discard())
	// The fake API server leaves creationTimestamp zero: the task is "very old".
	j.now = func() time.Time { return fixedNow }
	removed, err := j.Sweep(context.Background())
	if err != nil || !slices.Equal(removed, []string{id}) {
		t.Fatalf("removed %v, %v; want the Failed task", removed, err)
	}
}

func TestJanitorRunStopsWithContext(t *testing.T) {
	a := newTestAPI(t)
	j := NewJanitor(a.client, testNS, time.Minute, logr.Discard())
	j.interval = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the context ended")
	}
	lists := 0
	for _, act := range a.client.Actions() {
		if act.GetVerb() == "list" {
			lists++
		}
	}
	if lists < 4 {
		t.Errorf("%d lists: the janitor did not sweep repeatedly", lists)
	}
}
