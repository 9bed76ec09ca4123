package app

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"

	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// Names of the /readyz checks (each also served at /readyz/<name> with its reason).
const (
	CheckCertificate = "certificate"
	CheckWebhook     = "webhook"
	CheckTaskAPI     = "task-api"
	CheckController  = "controller"
)

// readiness is what /readyz asks: can this replica serve what the Service sends it? The
// webhook and the task API must be serving with a loaded certificate, and a leader's
// controller must have synced its caches. A standby waiting for the Lease is ready (it
// serves the webhook and the task API), and nothing here is a liveness check: /healthz
// restarts no replica for waiting on a certificate or a Lease.
func readiness(cfg *Config, cert *servingCert, webhookStarted healthz.Checker, api *serving, ctrl *leaderState) map[string]healthz.Checker {
	checks := map[string]healthz.Checker{}
	if cert != nil {
		checks[CheckCertificate] = cert.check
	}
	if cfg.Webhook {
		checks[CheckWebhook] = webhookStarted
	}
	if cfg.TaskAPI {
		checks[CheckTaskAPI] = api.check
	}
	if cfg.Controller {
		checks[CheckController] = ctrl.check
	}
	return checks
}

// serving is a listener's readiness: set while its server accepts connections.
type serving struct{ on atomic.Bool }

var errNotServing = errors.New("not serving yet")

func (s *serving) check(*http.Request) error {
	if s.on.Load() {
		return nil
	}
	return errNotServing
}

// syncReporter is a controller that tells whether its informers have synced.
type syncReporter interface{ HasSynced() bool }

// leaderState is the controller's readiness: a standby is ready; a leader is ready once
// its controller's caches have synced. Until then the leader does no work, and a sync
// that never ends (RBAC, an overloaded API server) shows as an unready pod instead of
// a quiet one.
type leaderState struct {
	mu      sync.Mutex
	leading bool
	synced  func() bool // nil: the controller does not report it
}

var errNotSynced = errors.New("leading, but the controller's caches have not synced yet")

func (s *leaderState) lead(c any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leading, s.synced = true, nil
	if r, ok := c.(syncReporter); ok {
		s.synced = r.HasSynced
	}
}

func (s *leaderState) standby() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leading, s.synced = false, nil
}

func (s *leaderState) check(*http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leading && s.synced != nil && !s.synced() {
		return errNotSynced
	}
	return nil
}
