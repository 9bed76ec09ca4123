package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves Registry in the Prometheus exposition formats. Whoever mounts it decides
// who may read it (pkg/app puts it behind TokenReview + SubjectAccessReview).
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{})
}
