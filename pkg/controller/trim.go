package controller

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

// trimOwned is the transform of the Job and pod informers: like trimNode for nodes, it
// keeps only what the controller decides on, so the caches hold a few hundred bytes per
// object instead of the Job's pod template with one init container per image, the
// managed fields and every status field. What a Job keeps: name, UID, labels (indexes,
// spec and run), the node and held annotations, deletion and start times, and its Complete/Failed
// condition. What a pod keeps: name, labels (the Job index) and its init containers'
// names with their waiting reason and message or their termination times.
//
// Both are plain copies of fields: trimming a trimmed object yields an equal one, so it
// does not matter that client-go may pass an object through the transform twice.
func trimOwned(obj any) (any, error) {
	switch o := obj.(type) {
	case *batchv1.Job:
		return trimJob(o), nil
	case *corev1.Pod:
		return trimPod(o), nil
	}
	return obj, nil
}

func trimJob(j *batchv1.Job) *batchv1.Job {
	out := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: j.Name, Namespace: j.Namespace, UID: j.UID, ResourceVersion: j.ResourceVersion,
			Labels: j.Labels, CreationTimestamp: j.CreationTimestamp, DeletionTimestamp: j.DeletionTimestamp,
		},
		Status: batchv1.JobStatus{StartTime: j.Status.StartTime},
	}
	if node, ok := j.Annotations[jobs.AnnotationNode]; ok {
		out.Annotations = map[string]string{jobs.AnnotationNode: node}
		if held, ok := j.Annotations[jobs.AnnotationHeld]; ok {
			out.Annotations[jobs.AnnotationHeld] = held
		}
	}
	for _, c := range j.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			out.Status.Conditions = append(out.Status.Conditions, batchv1.JobCondition{
				Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message, LastTransitionTime: c.LastTransitionTime,
			})
		}
	}
	return out
}

func trimPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion, Labels: p.Labels,
	}}
	// Init containers show each image's pull (init-container method); the main
	// container waits on its image volumes' pulls (image-volume method).
	out.Status.InitContainerStatuses = trimStatuses(p.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = trimStatuses(p.Status.ContainerStatuses)
	return out
}

// trimStatuses keeps a container's waiting reason and message and its run times.
func trimStatuses(statuses []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(statuses) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(statuses))
	for i, st := range statuses {
		trimmed := corev1.ContainerStatus{Name: st.Name}
		if w := st.State.Waiting; w != nil {
			trimmed.State.Waiting = &corev1.ContainerStateWaiting{Reason: w.Reason, Message: w.Message}
		}
		if t := st.State.Terminated; t != nil {
			trimmed.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, Reason: t.Reason, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt}
		}
		out[i] = trimmed
	}
	return out
}
