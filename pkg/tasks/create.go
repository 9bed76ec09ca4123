package tasks

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/pullsecret"
)

// idAttempts bounds retries on an ID collision (50 random bits: practically never).
const idAttempts = 3

// errIDTaken means an object of the drawn ID exists already; another ID is drawn.
var errIDTaken = errors.New("task ID taken")

// Created is the answer to a successful POST.
type Created struct {
	TaskID string `json:"taskId"`
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, u *User, _ string) (int, any, error) {
	if err := checkContentType(r); err != nil {
		return 0, nil, err
	}
	req, err := DecodeRequest(r.Body)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), apiTimeout)
	defer cancel()
	for range idAttempts {
		id := s.newID()
		err := s.store(ctx, req, id, u)
		if errors.Is(err, errIDTaken) {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		noteRequest(r.Context(), "", id)
		logging.FromContext(ctx).Info("task created", logging.KeyTask, id, "user", u.Name,
			"images", len(req.Images), "registry", req.Credential.Server, "batchSize", req.BatchSize)
		w.Header().Set("Location", BasePath+"/"+id)
		return http.StatusCreated, Created{TaskID: id}, nil
	}
	return 0, nil, fmt.Errorf("no free task ID after %d attempts", idAttempts)
}

// store writes the task: its spec ConfigMap first, then the Secret, created already
// owned by that ConfigMap so the garbage collector removes it with the task even when no
// controller runs. (Created owned rather than patched afterwards: the least-privilege
// Role grants secrets get/create/delete only.) The controller never starts a Job without
// the Secret; it waits briefly for a task's Secret to appear. A failure undoes what was
// written.
func (s *Server) store(ctx context.Context, req *Request, id string, u *User) error {
	cm, err := s.createSpec(ctx, req, id, u)
	if err != nil || !req.HasCredentials() {
		return err
	}
	if err := s.createSecret(ctx, req.Credential, id, cm); err != nil {
		return errors.Join(err, s.deleteObject(ctx, "ConfigMap", specName(id), s.client.CoreV1().ConfigMaps(s.ns).Delete))
	}
	return nil
}

func (s *Server) createSecret(ctx context.Context, c pullsecret.Credential, id string, owner *corev1.ConfigMap) error {
	data, err := pullsecret.DockerConfigJSON([]pullsecret.Credential{c})
	if err != nil {
		// Validation rules out every error DockerConfigJSON has; its messages name
		// fields, never values.
		return fmt.Errorf("build the pull Secret: %w", err)
	}
	secret := jobs.BuildSecret(jobs.RunRef{Namespace: s.ns, Spec: specName(id), RunID: id}, data)
	clear(data)
	// No LabelTask: the Secret is not a task, only its ConfigMap is. No run label: the
	// run ID is the controller's to derive.
	secret.Labels = map[string]string{jobs.LabelApp: jobs.AppName, LabelTaskID: id, jobs.LabelSpec: jobs.SpecLabelValue(specName(id))}
	secret.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}}
	_, err = s.client.CoreV1().Secrets(s.ns).Create(ctx, secret, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return errIDTaken // not ours: never touched
	}
	if err != nil {
		return fmt.Errorf("create Secret %s: %w", secret.Name, err)
	}
	return nil
}

func (s *Server) createSpec(ctx context.Context, req *Request, id string, u *User) (*corev1.ConfigMap, error) {
	data, err := yaml.Marshal(req.Spec(id))
	if err != nil {
		return nil, fmt.Errorf("encode the spec: %w", err)
	}
	labels := taskLabels(id, taskLive)
	labels[config.ConfigLabel] = "true"
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: specName(id), Namespace: s.ns, Labels: labels,
			Annotations: map[string]string{AnnotationCreatedBy: u.Name},
		},
		Data: map[string]string{config.SpecKey: string(data)},
	}
	created, err := s.client.CoreV1().ConfigMaps(s.ns).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil, errIDTaken
	}
	if err != nil {
		return nil, fmt.Errorf("create ConfigMap %s: %w", cm.Name, err)
	}
	return created, nil
}

// deleteObject deletes one object, treating "already gone" as done.
func (s *objects) deleteObject(ctx context.Context, kind, name string, del func(context.Context, string, metav1.DeleteOptions) error) error {
	err := del(ctx, name, metav1.DeleteOptions{PropagationPolicy: new(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s: %w", kind, name, err)
	}
	return nil
}
