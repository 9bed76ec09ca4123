package app

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// reviews is a fake API server's TokenReview and SubjectAccessReview: tokens maps a
// token to its user, allowed lists who may get /metrics; it counts the reviews.
type reviews struct {
	tokens          map[string]string
	allowed         map[string]bool
	fail            bool
	tokenN, accessN int
	lastAttrs       *authzv1.NonResourceAttributes
}

func (rv *reviews) client() *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rv.tokenN++
		if rv.fail {
			return true, nil, errors.New("api server away")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		if user, ok := rv.tokens[tr.Spec.Token]; ok {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: user, Groups: []string{"system:authenticated"}}}
		}
		return true, tr, nil
	})
	c.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rv.accessN++
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview)
		rv.lastAttrs = sar.Spec.NonResourceAttributes
		sar.Status.Allowed = rv.allowed[sar.Spec.User]
		return true, sar, nil
	})
	return c
}

func TestMetricsAuth(t *testing.T) {
	tests := map[string]struct {
		header string
		fail   bool
		want   int
	}{
		"no token":           {"", false, http.StatusUnauthorized},
		"not a bearer":       {"Basic cm9ib3Q6cGFzcw==", false, http.StatusUnauthorized},
		"unknown token":      {"Bearer nope", false, http.StatusUnauthorized},
		"not allowed":        {"Bearer viewer-token", false, http.StatusForbidden},
		"allowed":            {"Bearer prometheus-token", false, http.StatusOK},
		"review fails":       {"Bearer prometheus-token", true, http.StatusInternalServerError},
		"scheme any case":    {"bearer prometheus-token", false, http.StatusOK},
		"spaces are trimmed": {"Bearer   prometheus-token ", false, http.StatusOK},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rv := &reviews{tokens: map[string]string{"prometheus-token": "prometheus", "viewer-token": "viewer"}, allowed: map[string]bool{"prometheus": true}, fail: tc.fail}
			h := MetricsAuth(rv.client(), logr.Discard())(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }))
			if got := scrape(h, tc.header); got != tc.want {
				t.Fatalf("HTTP %d, want %d", got, tc.want)
			}
			if tc.want == http.StatusOK && (rv.lastAttrs == nil || rv.lastAttrs.Path != "/metrics" || rv.lastAttrs.Verb != "get") {
				t.Errorf("SubjectAccessReview asked %+v, want get /metrics", rv.lastAttrs)
			}
		})
	}
}

// TestMetricsAuthCaches: a scraper costs one review of each kind per TTL, whatever its
// interval; a denial is asked again sooner than an allowance; a new token is reviewed.
func TestMetricsAuthCaches(t *testing.T) {
	rv := &reviews{tokens: map[string]string{"p": "prometheus", "v": "viewer"}, allowed: map[string]bool{"prometheus": true}}
	a := newMetricsAuth(rv.client(), logr.Discard())
	clock := time.Now()
	a.now = func() time.Time { return clock }
	h := a.wrap(http.NotFoundHandler())
	steps := []struct {
		name                   string
		advance                time.Duration
		token                  string
		wantTokenN, wantAccess int
	}{
		{"first scrape", 0, "p", 1, 1},
		{"scrapes within a minute", 50 * time.Second, "p", 1, 1},
		{"token re-reviewed after a minute", 20 * time.Second, "p", 2, 1},
		{"allowance re-asked after 5 minutes", 4 * time.Minute, "p", 3, 2},
		{"another token", 0, "v", 4, 3},
		{"denial kept 30 s", 20 * time.Second, "v", 4, 3},
		{"denial re-asked after 30 s", 20 * time.Second, "v", 4, 4},
	}
	for _, s := range steps {
		clock = clock.Add(s.advance)
		scrape(h, "Bearer "+s.token)
		if rv.tokenN != s.wantTokenN || rv.accessN != s.wantAccess {
			t.Fatalf("%s: %d token and %d access reviews, want %d and %d", s.name, rv.tokenN, rv.accessN, s.wantTokenN, s.wantAccess)
		}
	}
}

func scrape(h http.Handler, authorization string) int {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}
