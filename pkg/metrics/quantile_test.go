package metrics

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestQuantile(t *testing.T) {
	tests := map[string]struct {
		observe []float64
		q, want float64
	}{
		"no sample":                  {q: 0.99, want: 0},
		"within the first bucket":    {observe: []float64{0.5, 0.5}, q: 0.5, want: 0.5},
		"linear within a bucket":     {observe: []float64{1.5, 1.5, 1.5, 1.5}, q: 0.25, want: 1.25},
		"the bucket of the quantile": {observe: []float64{0.5, 0.5, 0.5, 3}, q: 0.99, want: 2 + 2*0.96},
		"past the last bound":        {observe: []float64{100}, q: 0.5, want: 4},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Buckets: []float64{1, 2, 4}})
			for _, v := range tc.observe {
				h.Observe(v)
			}
			var m dto.Metric
			if err := h.Write(&m); err != nil {
				t.Fatal(err)
			}
			if got := Quantile(tc.q, m.GetHistogram()); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}
