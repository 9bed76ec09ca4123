package tasks

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// Task is what GET answers: the task's request (without credentials) and its run's
// state. It is built from the spec ConfigMap and the status ConfigMap, neither of
// which ever holds a credential.
type Task struct {
	TaskID string `json:"taskId"`
	// State is the run's phase: Pending, Running, Succeeded, CompletedWithFailures,
	// Failed (the run cannot proceed, see message), Invalid, or Cancelled.
	State        string            `json:"state"`
	Message      string            `json:"message,omitempty"`
	Images       []string          `json:"images"`
	Artifacts    []string          `json:"artifacts,omitempty"`
	BatchSize    int               `json:"batchSize"`
	Registry     string            `json:"registry,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Total is the number of nodes the run covers.
	Total       int          `json:"total"`
	Progress    Progress     `json:"progress"`
	FailedNodes []FailedNode `json:"failedNodes"`
	CreatedBy   string       `json:"createdBy,omitempty"`
	CreatedAt   time.Time    `json:"createdAt,omitzero"`
	StartTime   time.Time    `json:"startTime,omitzero"`
	FinishTime  time.Time    `json:"finishTime,omitzero"`
}

// Progress counts the run's nodes by state; Reported is every node that is done.
type Progress struct {
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Gone      int `json:"gone"`
	Reported  int `json:"reported"`
}

// FailedNode is a node that failed (or left mid-pull) with kubelet's reason.
type FailedNode struct {
	Node   string `json:"node"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// List is what GET on the collection answers, oldest task first.
type List struct {
	Tasks []*Task `json:"tasks"`
}

var errNoTask = errors.New("no such task")

func notFound(id string) *Error {
	return fail(http.StatusNotFound, "id", "no task %s (it may have expired after the retention period)", quote(id))
}

func (s *Server) get(_ http.ResponseWriter, r *http.Request, _ *User, id string) (int, any, error) {
	t, err := s.load(r.Context(), id)
	if errors.Is(err, errNoTask) {
		return 0, nil, notFound(id)
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, t, nil
}

// load reads one task: live (spec + status) or, once deleted, its tombstone.
func (s *Server) load(ctx context.Context, id string) (*Task, error) {
	cms := s.client.CoreV1().ConfigMaps(s.ns)
	cm, err := cms.Get(ctx, specName(id), metav1.GetOptions{})
	switch {
	case err == nil && cm.Labels[LabelTask] == taskLive:
		st, _, err := status.Read(ctx, s.client, s.ns, specName(id))
		if st == nil && err != nil {
			return nil, err
		}
		return taskView(id, cm, st), nil // st is nil before the controller's first report
	case err != nil && !apierrors.IsNotFound(err):
		return nil, err
	}
	tomb, err := cms.Get(ctx, tombstoneName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && tomb.Labels[LabelTask] != taskTombstone) {
		return nil, errNoTask
	}
	if err != nil {
		return nil, err
	}
	return taskView(id, tomb, tombstoneStatus(id, tomb)), nil
}

// tombstoneStatus reads the status a tombstone carries; partly readable is enough.
func tombstoneStatus(id string, tomb *corev1.ConfigMap) *status.Status {
	st, _ := status.FromConfigMap(specName(id), tomb)
	return st
}

func (s *Server) list(_ http.ResponseWriter, r *http.Request, _ *User, _ string) (int, any, error) {
	cms := s.client.CoreV1().ConfigMaps(s.ns)
	tasks, err := cms.List(r.Context(), metav1.ListOptions{LabelSelector: LabelTask})
	if err != nil {
		return 0, nil, err
	}
	statuses, err := cms.List(r.Context(), metav1.ListOptions{LabelSelector: status.LabelStatusOf})
	if err != nil {
		return 0, nil, err
	}
	bySpec := status.FromList(statuses.Items)
	seen := map[string]*Task{}
	for i := range tasks.Items {
		cm := &tasks.Items[i]
		id := cm.Labels[LabelTaskID]
		switch kind := cm.Labels[LabelTask]; {
		case !validID(id):
		case kind == taskLive && cm.Name == specName(id):
			seen[id] = taskView(id, cm, bySpec[specName(id)]) // a live task wins over its tombstone
		case kind == taskTombstone && cm.Name == tombstoneName(id) && seen[id] == nil:
			seen[id] = taskView(id, cm, tombstoneStatus(id, cm))
		}
	}
	out := List{Tasks: make([]*Task, 0, len(seen))}
	for _, t := range seen {
		out.Tasks = append(out.Tasks, t)
	}
	sort.Slice(out.Tasks, func(i, j int) bool {
		a, b := out.Tasks[i], out.Tasks[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.Before(b.CreatedAt)
		}
		return a.TaskID < b.TaskID
	})
	return http.StatusOK, out, nil
}

// taskView builds the answer from the spec ConfigMap (or tombstone) and the status
// (nil before the controller's first report).
func taskView(id string, specCM *corev1.ConfigMap, st *status.Status) *Task {
	t := &Task{TaskID: id, State: status.PhasePending, Images: []string{}, FailedNodes: []FailedNode{},
		CreatedBy: specCM.Annotations[AnnotationCreatedBy], CreatedAt: createdAt(specCM)}
	if spec, err := config.FromConfigMap(specCM); err == nil {
		t.Images, t.Artifacts, t.NodeSelector = spec.Images, spec.Artifacts, spec.NodeSelector
		t.BatchSize = int(spec.Rollout.MaxConcurrentNodes.IntVal)
		if len(spec.Registries) > 0 {
			t.Registry = spec.Registries[0].Server
		}
	}
	if st == nil || st.Phase == "" {
		return t
	}
	t.State, t.Message, t.Total = st.Phase, st.Message, st.Total
	t.StartTime, t.FinishTime = st.Started, st.Finished
	c := st.Counts
	t.Progress = Progress{
		Pending: c[string(rollout.Pending)], Running: c[string(rollout.Running)], Succeeded: c[string(rollout.Succeeded)],
		Failed: c[string(rollout.Failed)], Skipped: c[string(rollout.Skipped)], Gone: c[string(rollout.Gone)],
	}
	t.Progress.Reported = t.Progress.Succeeded + t.Progress.Failed + t.Progress.Skipped + t.Progress.Gone
	for node, res := range st.Results {
		if res.Phase == string(rollout.Failed) || res.Phase == string(rollout.Gone) {
			t.FailedNodes = append(t.FailedNodes, FailedNode{Node: node, State: res.Phase, Reason: res.Reason})
		}
	}
	sort.Slice(t.FailedNodes, func(i, j int) bool { return t.FailedNodes[i].Node < t.FailedNodes[j].Node })
	return t
}

// createdAt is the task's creation: a tombstone carries it over from the spec
// ConfigMap it replaced.
func createdAt(cm *corev1.ConfigMap) time.Time {
	if v, ok := cm.Annotations[annotationCreatedAt]; ok {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t
		}
	}
	return cm.CreationTimestamp.UTC()
}
