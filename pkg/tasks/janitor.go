package tasks

import (
	"context"
	"errors"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// Janitor removes tasks retention has expired: the spec ConfigMap, its status, its
// Secret (normally reaped when the run finished) and its tombstone. Every replica may
// run one; deletes of what is already gone count as done.
type Janitor struct {
	objects
	retention time.Duration
	// interval between sweeps; now is the clock. Tests replace both.
	interval time.Duration
	now      func() time.Time
	log      logr.Logger
}

// NewJanitor returns a janitor sweeping every retention/10, between 10s and 5m.
func NewJanitor(client kubernetes.Interface, namespace string, retention time.Duration, logger logr.Logger) *Janitor {
	return &Janitor{
		objects:   objects{client: client, ns: namespace},
		retention: retention,
		interval:  min(max(retention/10, 10*time.Second), 5*time.Minute),
		now:       time.Now,
		log:       logger,
	}
}

// Run sweeps until ctx ends.
func (j *Janitor) Run(ctx context.Context) {
	t := time.NewTicker(j.interval)
	defer t.Stop()
	for {
		if _, err := j.Sweep(ctx); err != nil && ctx.Err() == nil {
			j.log.Error(err, "task retention sweep failed; retrying at the next sweep")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep removes every expired task once and returns their IDs.
func (j *Janitor) Sweep(ctx context.Context) ([]string, error) {
	cms := j.client.CoreV1().ConfigMaps(j.ns)
	tasks, err := cms.List(ctx, metav1.ListOptions{LabelSelector: LabelTask})
	if err != nil {
		return nil, err
	}
	statuses, err := cms.List(ctx, metav1.ListOptions{LabelSelector: status.LabelStatusOf})
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*corev1.ConfigMap, len(statuses.Items))
	for i := range statuses.Items {
		byName[statuses.Items[i].Name] = &statuses.Items[i]
	}
	var removed []string
	var errs []error
	for i := range tasks.Items {
		cm := &tasks.Items[i]
		id := cm.Labels[LabelTaskID]
		end, ok := endOf(id, cm, byName[statusName(id)])
		if !validID(id) || !ok || j.now().Sub(end) < j.retention {
			continue
		}
		err := errors.Join(j.deleteTask(ctx, id, nil), j.deleteObject(ctx, "ConfigMap", tombstoneName(id), cms.Delete))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, id)
		j.log.Info("task removed after its retention period", logging.KeyTask, id, "ended", end.UTC().Format(time.RFC3339))
	}
	return removed, errors.Join(errs...)
}

// endOf is when retention starts for a task: when its run finished (a tombstone
// records that), or, for a run that cannot proceed (Failed, Invalid) and would never
// finish, when it was created. ok is false while the task is still under way.
func endOf(id string, cm, statusCM *corev1.ConfigMap) (time.Time, bool) {
	if cm.Labels[LabelTask] == taskTombstone {
		statusCM = cm
	}
	if statusCM == nil {
		return time.Time{}, false
	}
	st, err := status.FromConfigMap(specName(id), statusCM)
	switch {
	case err != nil:
		return time.Time{}, false
	case st.Done() && !st.Finished.IsZero():
		return st.Finished, true
	case st.Done() || st.Phase == status.PhaseFailed || st.Phase == status.PhaseInvalid:
		return cm.CreationTimestamp.Time, true
	}
	return time.Time{}, false
}
