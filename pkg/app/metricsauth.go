package app

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/tasks"
)

// Filter wraps a handler with access control.
type Filter func(http.Handler) http.Handler

// How long the API server's answers are kept, as controller-runtime's metrics filter
// and kube-rbac-proxy keep them: a scrape every 30 s costs one review per minute or
// less, and a revoked right stops working within 5 minutes.
const (
	tokenTTL = time.Minute
	allowTTL = 5 * time.Minute
	denyTTL  = 30 * time.Second
	// reviewTimeout bounds one review; a scrape times out at 10 s by default.
	reviewTimeout = 5 * time.Second
	// maxCached bounds each cache: scrapers are few, so more means a flood of bad tokens.
	maxCached = 1024
)

// MetricsAuth guards /metrics the way Kubernetes components do: the bearer token is
// checked with a TokenReview (401 when absent or unknown) and its user's right to get
// the non-resource URL /metrics with a SubjectAccessReview (403 without it; the chart's
// <fullname>-metrics-reader ClusterRole grants it). The client needs create on both
// reviews (the chart's ClusterRole has it).
//
// This is the protocol of controller-runtime's filters.WithAuthenticationAndAuthorization,
// written against client-go: that filter pulls in k8s.io/apiserver (CEL, gRPC,
// OpenTelemetry) and doubles the binary, which every prewarm Job pulls onto its node.
// The TokenReview is the task API's (tasks.KubeGuard).
func MetricsAuth(client kubernetes.Interface, logger logr.Logger) Filter {
	return newMetricsAuth(client, logger).wrap
}

func newMetricsAuth(client kubernetes.Interface, logger logr.Logger) *metricsAuth {
	return &metricsAuth{guard: &tasks.KubeGuard{Client: client}, client: client, log: logger, now: time.Now,
		users: map[[32]byte]cached[*tasks.User]{}, rights: map[string]cached[bool]{}}
}

type metricsAuth struct {
	guard  *tasks.KubeGuard
	client kubernetes.Interface
	log    logr.Logger
	now    func() time.Time

	mu     sync.Mutex
	users  map[[32]byte]cached[*tasks.User] // by the token's hash; nil user: not authenticated
	rights map[string]cached[bool]          // by user name
}

type cached[T any] struct {
	value   T
	expires time.Time
}

func (a *metricsAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), reviewTimeout)
		defer cancel()
		user, err := a.authenticate(ctx, bearer(r))
		if err != nil {
			a.log.Error(err, "metrics authentication failed")
			http.Error(w, "authentication failed", http.StatusInternalServerError)
			return
		}
		if user == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="image-prewarm"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		allowed, err := a.authorize(ctx, user, r)
		if err != nil {
			a.log.Error(err, "metrics authorization failed", "user", user.Name)
			http.Error(w, "authorization failed", http.StatusInternalServerError)
			return
		}
		if !allowed {
			http.Error(w, "user "+user.Name+" may not get "+r.URL.Path, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer is the token of "Authorization: Bearer <token>", empty when there is none.
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// authenticate returns the token's user, nil when the token is absent or not valid.
func (a *metricsAuth) authenticate(ctx context.Context, token string) (*tasks.User, error) {
	if token == "" {
		return nil, nil
	}
	key := sha256.Sum256([]byte(token)) // the cache never holds a token
	if u, ok := lookup(a, a.users, key); ok {
		return u, nil
	}
	u, err := a.guard.Authenticate(ctx, token)
	if errors.Is(err, tasks.ErrUnauthenticated) {
		u, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	store(a, a.users, key, u, tokenTTL)
	return u, nil
}

// authorize asks whether user may do the request's verb on its path.
func (a *metricsAuth) authorize(ctx context.Context, u *tasks.User, r *http.Request) (bool, error) {
	verb, path := strings.ToLower(r.Method), r.URL.Path
	key := u.Name + "\x00" + strings.Join(u.Groups, ",") + "\x00" + verb + " " + path
	if allowed, ok := lookup(a, a.rights, key); ok {
		return allowed, nil
	}
	extra := make(map[string]authzv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = v
	}
	review := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Name, UID: u.UID, Groups: u.Groups, Extra: extra,
		NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: verb},
	}}
	res, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	allowed := res.Status.Allowed && !res.Status.Denied
	ttl := denyTTL
	if allowed {
		ttl = allowTTL
	}
	store(a, a.rights, key, allowed, ttl)
	return allowed, nil
}

func lookup[K comparable, V any](a *metricsAuth, m map[K]cached[V], key K) (V, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := m[key]
	if !ok || !a.now().Before(c.expires) {
		var zero V
		return zero, false
	}
	return c.value, true
}

func store[K comparable, V any](a *metricsAuth, m map[K]cached[V], key K, v V, ttl time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if len(m) >= maxCached {
		for k, c := range m {
			if !now.Before(c.expires) {
				delete(m, k)
			}
		}
	}
	if len(m) >= maxCached {
		clear(m) // a flood of distinct tokens: start over rather than grow
	}
	m[key] = cached[V]{value: v, expires: now.Add(ttl)}
}
