package tasks

import (
	"context"
	"errors"
	"fmt"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The RBAC resource a caller needs rights on: tasks.image-prewarm.io in the release
// namespace, with the verbs create, get, list and delete.
const (
	Group    = "image-prewarm.io"
	Resource = "tasks"
)

// Verbs checked per endpoint.
const (
	VerbCreate = "create"
	VerbGet    = "get"
	VerbList   = "list"
	VerbDelete = "delete"
)

// ErrUnauthenticated means the bearer token is not valid: unknown, expired or revoked.
var ErrUnauthenticated = errors.New("the bearer token is not valid")

// User is who a token belongs to.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// Guard authenticates bearer tokens and authorizes users. The handler depends on this
// interface only, so unit tests use a fake and production the Kubernetes API.
type Guard interface {
	// Authenticate returns the token's user, ErrUnauthenticated for a bad token, or
	// another error when it cannot tell.
	Authenticate(ctx context.Context, token string) (*User, error)
	// Authorize reports whether user may do verb on tasks (name: one task's ID, empty
	// for create and list), with the authorizer's reason when it says no.
	Authorize(ctx context.Context, user *User, verb, name string) (allowed bool, reason string, err error)
}

// KubeGuard asks the API server: TokenReview for the token, SubjectAccessReview for
// the verb on tasks.image-prewarm.io in Namespace. Its client needs create on both.
type KubeGuard struct {
	Client    kubernetes.Interface
	Namespace string
}

// Authenticate sends the token to a TokenReview. Errors never contain the token.
func (g *KubeGuard) Authenticate(ctx context.Context, token string) (*User, error) {
	review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}
	res, err := g.Client.AuthenticationV1().TokenReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token review: %w", err)
	}
	if !res.Status.Authenticated {
		return nil, ErrUnauthenticated
	}
	u := res.Status.User
	extra := make(map[string][]string, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = v
	}
	return &User{Name: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra}, nil
}

// Authorize sends a SubjectAccessReview for the user's verb on tasks.
func (g *KubeGuard) Authorize(ctx context.Context, user *User, verb, name string) (bool, string, error) {
	extra := make(map[string]authzv1.ExtraValue, len(user.Extra))
	for k, v := range user.Extra {
		extra[k] = v
	}
	review := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: user.Name, UID: user.UID, Groups: user.Groups, Extra: extra,
		ResourceAttributes: &authzv1.ResourceAttributes{
			Namespace: g.Namespace, Verb: verb, Group: Group, Resource: Resource, Name: name,
		},
	}}
	res, err := g.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("subject access review: %w", err)
	}
	return res.Status.Allowed && !res.Status.Denied, res.Status.Reason, nil
}
