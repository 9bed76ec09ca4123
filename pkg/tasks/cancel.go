package tasks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// annotationCreatedAt carries a task's creation time onto its tombstone.
const annotationCreatedAt = "image-prewarm.io/created-at"

// Cancelled is the answer to a DELETE: the task's final state, Cancelled unless its
// run had already finished (then its result is kept).
type Cancelled struct {
	TaskID string `json:"taskId"`
	State  string `json:"state"`
}

// cancel ends a task. It first records a tombstone, so GET keeps answering (with
// Cancelled) after the task's objects are gone; then deletes the spec ConfigMap (the
// controller, seeing it gone, stops the run), and deletes the Secret, the Jobs and the
// status itself, so they are gone at once even while the controller lags or is down.
// Deleting a deleted task answers its tombstone again.
func (s *Server) cancel(_ http.ResponseWriter, r *http.Request, u *User, id string) (int, any, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), apiTimeout)
	defer cancel()
	cms := s.client.CoreV1().ConfigMaps(s.ns)
	cm, err := cms.Get(ctx, specName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && cm.Labels[LabelTask] != taskLive) {
		t, err := s.load(ctx, id)
		if errors.Is(err, errNoTask) {
			return 0, nil, notFound(id)
		}
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, Cancelled{TaskID: id, State: t.State}, nil
	}
	if err != nil {
		return 0, nil, err
	}
	tomb, err := s.writeTombstone(ctx, id, cm, u)
	if err != nil {
		return 0, nil, err
	}
	if err := s.deleteTask(ctx, id, &cm.UID); err != nil {
		return 0, nil, err
	}
	logging.FromContext(ctx).Info("task deleted", logging.KeyTask, id, "user", u.Name, "state", tomb.Phase)
	return http.StatusOK, Cancelled{TaskID: id, State: tomb.Phase}, nil
}

// writeTombstone records the task's last status as a ConfigMap that neither the
// controller nor the garbage collector touches.
func (s *Server) writeTombstone(ctx context.Context, id string, cm *corev1.ConfigMap, u *User) (*status.Status, error) {
	cms := s.client.CoreV1().ConfigMaps(s.ns)
	st := &status.Status{Spec: specName(id), Results: map[string]status.Result{}}
	// A tombstone is one ConfigMap: past a thousand nodes it keeps the failure groups
	// and the last nodes' results, not every node's.
	if cur, _, err := status.Read(ctx, s.client, s.ns, specName(id)); cur != nil {
		st = cur
	} else if err != nil {
		return nil, err
	}
	now := s.now()
	if !st.Done() {
		st.Phase, st.Message = status.PhaseCancelled, "cancelled by "+u.Name
		st.Finished = now
	}
	tomb, err := st.ConfigMap(s.ns, taskLabels(id, taskTombstone))
	if err != nil {
		return nil, err
	}
	tomb.Name = tombstoneName(id)
	// Not a status of a live spec: tools listing statuses (the status command) skip it.
	delete(tomb.Labels, status.LabelStatusOf)
	tomb.Annotations = map[string]string{
		AnnotationCreatedBy: cm.Annotations[AnnotationCreatedBy],
		annotationCreatedAt: cm.CreationTimestamp.UTC().Format(time.RFC3339),
	}
	tomb.Data[config.SpecKey] = cm.Data[config.SpecKey]
	if _, err := cms.Create(ctx, tomb, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = cms.Update(ctx, tomb, metav1.UpdateOptions{}) // a DELETE retried after a failure
		if err != nil {
			return nil, fmt.Errorf("update tombstone %s: %w", tomb.Name, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("create tombstone %s: %w", tomb.Name, err)
	}
	return st, nil
}

// deleteTask deletes every object of a task but its tombstone. uid, when set, guards
// the spec ConfigMap: only the instance that was read is deleted.
func (s *objects) deleteTask(ctx context.Context, id string, uid *types.UID) error {
	cms := s.client.CoreV1().ConfigMaps(s.ns)
	opts := metav1.DeleteOptions{PropagationPolicy: new(metav1.DeletePropagationBackground)}
	if uid != nil {
		opts.Preconditions = &metav1.Preconditions{UID: uid}
	}
	if err := cms.Delete(ctx, specName(id), opts); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete ConfigMap %s: %w", specName(id), err)
	}
	errs := []error{
		s.deleteObject(ctx, "Secret", secretName(id), s.client.CoreV1().Secrets(s.ns).Delete),
		s.deleteJobs(ctx, id),
		s.deleteObject(ctx, "ConfigMap", statusName(id), cms.Delete),
	}
	return errors.Join(errs...)
}

// deleteJobs deletes the task's Jobs (their pods follow through the garbage collector).
func (s *objects) deleteJobs(ctx context.Context, id string) error {
	selector := jobs.LabelSpec + "=" + jobs.SpecLabelValue(specName(id))
	list, err := s.client.BatchV1().Jobs(s.ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Errorf("list Jobs of task %s: %w", id, err)
	}
	var errs []error
	for _, job := range list.Items {
		errs = append(errs, s.deleteObject(ctx, "Job", job.Name, s.client.BatchV1().Jobs(s.ns).Delete))
	}
	return errors.Join(errs...)
}
