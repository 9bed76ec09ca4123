package tasks

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

// BasePath is the collection's path; one task is BasePath + "/" + id.
const BasePath = "/api/v1/tasks"

// apiTimeout bounds the Kubernetes calls of one request. They run detached from the
// client's connection: a client hanging up halfway must not leave a half-made task.
const apiTimeout = 30 * time.Second

// Options configure a Server.
type Options struct {
	// Client writes tasks (ConfigMaps, Secrets) and deletes their Jobs in Namespace.
	Client    kubernetes.Interface
	Namespace string
	Guard     Guard
	Logger    logr.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server serves the task API. It keeps no state: every replica can answer every request.
type Server struct {
	objects
	guard Guard
	log   logr.Logger
	now   func() time.Time
	// newID is replaceable so tests can force ID collisions.
	newID func() string
}

// New returns a Server.
func New(opts Options) *Server {
	s := &Server{objects: objects{client: opts.Client, ns: opts.Namespace}, guard: opts.Guard, log: opts.Logger, now: opts.Now, newID: newID}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// objects reads and deletes a namespace's task objects; the server and the janitor
// share it.
type objects struct {
	client kubernetes.Interface
	ns     string
}

// endpoint is one method on one path: the RBAC verb it needs and its handler.
type endpoint struct {
	verb   string
	handle func(w http.ResponseWriter, r *http.Request, u *User, id string) (int, any, error)
}

// Handler is the API with its middleware: request ID, logging, metrics, panic recovery.
func (s *Server) Handler() http.Handler {
	collection := map[string]endpoint{http.MethodGet: {VerbList, s.list}, http.MethodPost: {VerbCreate, s.create}}
	item := map[string]endpoint{http.MethodGet: {VerbGet, s.get}, http.MethodDelete: {VerbDelete, s.cancel}}
	return s.instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch path := r.URL.Path; {
		case path == BasePath:
			s.dispatch(w, r, collection, "GET, POST", "", false)
		case strings.HasPrefix(path, BasePath+"/"):
			s.dispatch(w, r, item, "GET, DELETE", strings.TrimPrefix(path, BasePath+"/"), true)
		default:
			s.writeError(w, r, fail(http.StatusNotFound, "path", "no endpoint at %s; the task API serves %s and %s/{id}", quote(path), BasePath, BasePath))
		}
	}))
}

// dispatch checks, in order: method, token (401), task ID (400), right (403); then
// runs the endpoint. Nothing is read from the body or the cluster before the caller
// is known and allowed.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, eps map[string]endpoint, allow, id string, isItem bool) {
	ep, ok := eps[r.Method]
	if !ok {
		w.Header().Set("Allow", allow)
		s.writeError(w, r, fail(http.StatusMethodNotAllowed, "method", "%s is not allowed here; use %s", quote(r.Method), allow))
		return
	}
	user, err := s.authenticate(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	noteRequest(r.Context(), user.Name, "")
	if isItem && !validID(id) {
		s.writeError(w, r, badRequest("id", "%s is not a task ID: %d characters from a-z and 2-7", quote(id), idLength))
		return
	}
	noteRequest(r.Context(), "", id)
	allowed, reason, err := s.guard.Authorize(r.Context(), user, ep.verb, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !allowed {
		msg := fmt.Sprintf("user %s may not %s %s.%s in namespace %s", quote(user.Name), ep.verb, Resource, Group, quote(s.ns))
		if reason != "" {
			msg += ": " + reason
		}
		s.writeError(w, r, &Error{Status: http.StatusForbidden, Message: msg})
		return
	}
	if r.Body == nil { // only a request built in code, never one from the server
		r.Body = http.NoBody
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	status, body, err := ep.handle(w, r, user, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, body)
}

// authenticate reads "Authorization: Bearer <token>" and asks the guard who it is.
func (s *Server) authenticate(r *http.Request) (*User, error) {
	unauthorized := func(msg string) error {
		return &Error{Status: http.StatusUnauthorized, Field: "Authorization", Message: msg}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, unauthorized("Authorization: a bearer token is required (Authorization: Bearer <token>)")
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return nil, unauthorized("Authorization: must be \"Bearer <token>\" with a Kubernetes token")
	}
	user, err := s.guard.Authenticate(r.Context(), token)
	if errors.Is(err, ErrUnauthenticated) {
		return nil, unauthorized("Authorization: the bearer token is not valid (unknown, expired or revoked)")
	}
	return user, err
}

// checkContentType accepts application/json, with or without parameters.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return fail(http.StatusUnsupportedMediaType, "Content-Type", "must be application/json, got %s", quote(ct))
	}
	return nil
}

// writeError answers err: an *Error as is, anything else as a generic 5xx whose detail
// goes to the log only (it may name internals, never credentials).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		if apiErr.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="image-prewarm"`)
		}
		writeJSON(w, apiErr.Status, apiErr)
		return
	}
	code := http.StatusInternalServerError
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	logging.FromContext(r.Context()).Error(err, "task API request failed")
	writeJSON(w, code, internalError(w))
}

func internalError(w http.ResponseWriter) *Error {
	return &Error{Message: "internal error: the request could not be completed; the task API log has the details under request ID " + w.Header().Get(headerRequestID)}
}

const headerRequestID = "X-Request-Id"

// requestNote collects what the access log line reports about a request.
type requestNote struct{ user, task string }

type noteKey struct{}

func noteRequest(ctx context.Context, user, task string) {
	if n, ok := ctx.Value(noteKey{}).(*requestNote); ok {
		if user != "" {
			n.user = user
		}
		if task != "" {
			n.task = task
		}
	}
}

// statusRecorder remembers the response code for the log and the metric.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// instrument gives each request an ID and a logger, recovers panics as a generic 500,
// counts the response code and logs one line per request (never a body or a header).
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		reqID := strings.ToLower(rand.Text()[:12])
		w.Header().Set(headerRequestID, reqID)
		logger := s.log.WithValues("requestID", reqID)
		note := &requestNote{}
		ctx := context.WithValue(logging.IntoContext(r.Context(), logger), noteKey{}, note)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared, as net/http does
					panic(v)
				}
				logger.Error(fmt.Errorf("panic: %v", v), "task API handler panicked", "stack", string(debug.Stack()))
				if rec.code == 0 {
					writeJSON(rec, http.StatusInternalServerError, internalError(rec))
				}
			}
			if rec.code == 0 {
				rec.code = http.StatusOK
			}
			metrics.TaskRequests.WithLabelValues(strconv.Itoa(rec.code)).Inc()
			logger.Info("task API request", "method", r.Method, "path", truncate(r.URL.Path, 200), "code", rec.code,
				"user", note.user, logging.KeyTask, note.task, "duration", s.now().Sub(start).String())
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
