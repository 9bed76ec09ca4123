package metrics

import dto "github.com/prometheus/client_model/go"

// Quantile estimates quantile q (0–1) of a gathered histogram as PromQL's
// histogram_quantile does: linearly within the bucket that holds it, from 0 in the
// first. Past the last finite bound it answers that bound; with no sample, 0. The
// benchmarks read the refill latency this way, as a dashboard would.
func Quantile(q float64, h *dto.Histogram) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, count := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if count >= rank {
			return lower + (upper-lower)*(rank-below)/max(count-below, 1)
		}
		lower, below = upper, count
	}
	return lower
}
