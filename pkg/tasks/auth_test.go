package tasks

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// apiServerGuard is a KubeGuard whose API server is a fake answering reviews the way
// a real one does: one token, and RBAC allowing one user the verbs given.
func apiServerGuard(verbs ...string) (*KubeGuard, *[]authzv1.SubjectAccessReviewSpec) {
	client := fake.NewClientset()
	var seen []authzv1.SubjectAccessReviewSpec
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		review := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		switch review.Spec.Token {
		case "good":
			review.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{
				Username: "system:serviceaccount:ops:ci", UID: "u1", Groups: []string{"system:serviceaccounts"},
				Extra: map[string]authnv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"ci-0"}},
			}}
		case "broken":
			return true, nil, errAPIDown
		default:
			review.Status = authnv1.TokenReviewStatus{Authenticated: false, Error: "invalid bearer token"}
		}
		return true, review, nil
	})
	client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		review := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview)
		seen = append(seen, review.Spec)
		ra := review.Spec.ResourceAttributes
		review.Status.Allowed = review.Spec.User == "system:serviceaccount:ops:ci" && ra.Group == Group &&
			ra.Resource == Resource && ra.Namespace == "ops" && slices.Contains(verbs, ra.Verb)
		return true, review, nil
	})
	return &KubeGuard{Client: client, Namespace: "ops"}, &seen
}

func TestKubeGuardAuthenticate(t *testing.T) {
	tests := map[string]struct {
		token    string
		wantUser string
		wantErr  error
	}{
		"valid":         {token: "good", wantUser: "system:serviceaccount:ops:ci"},
		"invalid":       {token: "forged", wantErr: ErrUnauthenticated},
		"review failed": {token: "broken", wantErr: errAPIDown},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g, _ := apiServerGuard()
			u, err := g.Authenticate(context.Background(), tc.token)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && (u.Name != tc.wantUser || u.UID != "u1" || len(u.Extra) != 1) {
				t.Fatalf("user %+v", u)
			}
			if err != nil && strings.Contains(err.Error(), tc.token) {
				t.Fatalf("the error %q shows the token", err)
			}
		})
	}
}

func TestKubeGuardAuthorize(t *testing.T) {
	g, seen := apiServerGuard(VerbGet, VerbList)
	u, err := g.Authenticate(context.Background(), "good")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		verb, name string
		want       bool
	}{
		"get one":  {VerbGet, "abcdefghij", true},
		"list":     {VerbList, "", true},
		"create":   {VerbCreate, "", false},
		"delete":   {VerbDelete, "abcdefghij", false},
		"get none": {VerbGet, "", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ok, _, err := g.Authorize(context.Background(), u, tc.verb, tc.name)
			if err != nil || ok != tc.want {
				t.Fatalf("allowed %v, %v; want %v", ok, err, tc.want)
			}
			spec := (*seen)[len(*seen)-1]
			ra := spec.ResourceAttributes
			if ra.Name != tc.name || ra.Verb != tc.verb || spec.UID != "u1" || !slices.Equal(spec.Groups, u.Groups) ||
				len(spec.Extra["authentication.kubernetes.io/pod-name"]) != 1 {
				t.Fatalf("review spec %+v", spec)
			}
		})
	}
}
