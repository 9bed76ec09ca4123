package tasks

import (
	"crypto/rand"
	"strings"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// Labels of the task API's objects.
const (
	// LabelTask is "true" on a task's spec ConfigMap and "tombstone" on the record a
	// deleted task leaves behind.
	LabelTask = "image-prewarm.io/task"
	// LabelTaskID holds the task ID on the spec ConfigMap, its Secret and its tombstone.
	LabelTaskID = "image-prewarm.io/task-id"
	// AnnotationCreatedBy records the Kubernetes user who created the task (never a
	// registry credential).
	AnnotationCreatedBy = "image-prewarm.io/created-by"

	taskLive      = "true"
	taskTombstone = "tombstone"
	idLength      = 10
	// idAlphabet is base32's, lower-cased: every ID is a valid DNS label and label value.
	idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"
)

// newID draws a task ID: 10 base32 characters (50 random bits) from crypto/rand.
func newID() string {
	return strings.ToLower(rand.Text()[:idLength])
}

// validID reports whether id could have been drawn by newID.
func validID(id string) bool {
	if len(id) != idLength {
		return false
	}
	for _, c := range id {
		if !strings.ContainsRune(idAlphabet, c) {
			return false
		}
	}
	return true
}

// specName is the task's prewarm ConfigMap.
func specName(id string) string { return "task-" + id }

// statusName is the controller's status ConfigMap of the task.
func statusName(id string) string { return status.Name(specName(id)) }

// tombstoneName is the record a deleted task leaves until retention removes it. It
// cannot be the status ConfigMap: the controller and the garbage collector delete
// that one with the task.
func tombstoneName(id string) string { return specName(id) + "-tombstone" }

// secretName is the task's pull Secret.
func secretName(id string) string { return jobs.SecretName(id) }

func taskLabels(id, kind string) map[string]string {
	return map[string]string{jobs.LabelApp: jobs.AppName, LabelTask: kind, LabelTaskID: id}
}
