package metrics

import (
	"go/parser"
	"go/token"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// documentedSeries parses the series list of the package doc comment in metrics.go.
func documentedSeries(t *testing.T) map[string]Documented {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "metrics.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil || f.Doc == nil {
		t.Fatalf("read the package doc comment of metrics.go: %v", err)
	}
	list, err := DocumentedSeries(f.Doc.Text())
	if err != nil {
		t.Fatalf("doc comment: %v", err)
	}
	out := map[string]Documented{}
	for _, d := range list {
		out[d.Name] = d
	}
	return out
}

func registeredSeries(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, s := range Registered() {
		if _, dup := out[s.Name]; dup {
			t.Errorf("%s is registered twice", s.Name)
		}
		out[s.Name] = s.Labels
	}
	return out
}

func TestDocCommentListsEveryRegisteredSeries(t *testing.T) {
	doc := documentedSeries(t)
	reg := registeredSeries(t)
	for name, d := range doc {
		labels, ok := reg[name]
		if !ok {
			t.Errorf("%s is in the doc comment but not registered in Registry", name)
			continue
		}
		if !slices.Equal(sorted(labels), sorted(d.Labels)) {
			t.Errorf("%s has labels %v, the doc comment says %v", name, labels, d.Labels)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(reg)) {
		switch {
		case strings.HasPrefix(name, namespace+"_"):
			if _, ok := doc[name]; !ok {
				t.Errorf("%s is registered but missing from the doc comment", name)
			}
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
		default:
			t.Errorf("%s lacks the %s_ prefix", name, namespace)
		}
	}
}

// boundedLabels are the only label names a series may have: each has a small, fixed
// or operator-controlled set of values.
var boundedLabels = map[string]bool{
	"spec": true, "registry": true, "state": true, "phase": true, "result": true, "reason": true,
	"operation": true, "name": true, "webhook": true, "code": true, "version": true, "go_version": true,
}

func TestLabelsAreBounded(t *testing.T) {
	for name, labels := range registeredSeries(t) {
		if !strings.HasPrefix(name, namespace+"_") {
			continue
		}
		for _, l := range labels {
			if !boundedLabels[l] {
				t.Errorf("%s has label %q, not one of the bounded labels", name, l)
			}
		}
	}
}

// TestLintRegistry lints what Registry exposes, after giving every series of this file
// and workqueue.go a sample.
func TestLintRegistry(t *testing.T) {
	touchEverySeries()
	problems, err := testutil.CollectAndLint(Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	assertDocumentedTypes(t)
}

// TestLintEveryDocumentedSeries lints a sample of every documented series built from
// its registered name and labels and its documented type, so series of other files
// (webhook, tasks) that have no sample yet are checked too.
func TestLintEveryDocumentedSeries(t *testing.T) {
	reg := registeredSeries(t)
	var families []*dto.MetricFamily
	for name, d := range documentedSeries(t) {
		if _, ok := reg[name]; ok {
			families = append(families, sampleFamily(name, d))
		}
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func sampleFamily(name string, d Documented) *dto.MetricFamily {
	m := &dto.Metric{}
	for _, l := range d.Labels {
		m.Label = append(m.Label, &dto.LabelPair{Name: ptr.To(l), Value: ptr.To("x")})
	}
	mf := &dto.MetricFamily{Name: ptr.To(name), Help: ptr.To("documented series"), Metric: []*dto.Metric{m}}
	switch d.Type {
	case "counter":
		mf.Type, m.Counter = dto.MetricType_COUNTER.Enum(), &dto.Counter{Value: ptr.To(1.0)}
	case "gauge":
		mf.Type, m.Gauge = dto.MetricType_GAUGE.Enum(), &dto.Gauge{Value: ptr.To(1.0)}
	case "histogram":
		mf.Type = dto.MetricType_HISTOGRAM.Enum()
		m.Histogram = &dto.Histogram{SampleCount: ptr.To[uint64](1), SampleSum: ptr.To(1.0),
			Bucket: []*dto.Bucket{{UpperBound: ptr.To(1.0), CumulativeCount: ptr.To[uint64](1)}}}
	}
	return mf
}

// assertDocumentedTypes compares the type of every gathered image_prewarm_ family with
// the doc comment.
func assertDocumentedTypes(t *testing.T) {
	t.Helper()
	doc := documentedSeries(t)
	families, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		d, ok := doc[mf.GetName()]
		if !ok {
			continue
		}
		if got := strings.ToLower(mf.GetType().String()); got != d.Type {
			t.Errorf("%s is a %s, the doc comment says %s", mf.GetName(), got, d.Type)
		}
	}
}

func touchEverySeries() {
	Nodes.WithLabelValues("lint", "Running").Set(1)
	Progress.WithLabelValues("lint").Set(0.5)
	Duration.WithLabelValues("lint").Set(3)
	RunPhase.WithLabelValues("lint", "Running").Set(1)
	JobsCreated.WithLabelValues("lint").Inc()
	JobsFinished.WithLabelValues("lint", "succeeded").Inc()
	NodeFailures.WithLabelValues("lint", ReasonUnauthorized).Inc()
	PullDuration.WithLabelValues("harbor.example.com").Observe(3)
	ConfigValid.WithLabelValues("lint").Set(1)
	ConfigRejections.WithLabelValues("lint").Inc()
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "lint"})
	defer q.ShutDown()
	q.Add("a")
	q.AddRateLimited("b")
	k, _ := q.Get()
	q.Done(k)
	ForgetSpec("lint")
	Nodes.WithLabelValues("lint", "Running").Set(1) // ForgetSpec removed it; lint needs one
}

func TestWorkqueueProviderMeasuresNamedQueues(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "provider-test"})
	defer q.ShutDown()
	q.Add("a")
	q.Add("b")
	if got := testutil.ToFloat64(QueueDepth.WithLabelValues("provider-test")); got != 2 {
		t.Errorf("depth = %v, want 2", got)
	}
	k, _ := q.Get()
	q.Done(k)
	q.AddRateLimited("c")
	if got := testutil.ToFloat64(QueueAdds.WithLabelValues("provider-test")); got != 2 {
		t.Errorf("adds = %v, want 2", got)
	}
	if got := testutil.ToFloat64(QueueRetries.WithLabelValues("provider-test")); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(QueueWork, "image_prewarm_workqueue_work_duration_seconds"); got < 1 {
		t.Errorf("work duration has %d series, want one for the named queue", got)
	}
}

func TestRejectConfigCountsEachRevisionOnce(t *testing.T) {
	tests := map[string]struct {
		revisions []string
		want      float64
	}{
		"one revision reconciled three times": {revisions: []string{"7", "7", "7"}, want: 1},
		"two invalid edits":                   {revisions: []string{"7", "8", "8"}, want: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := "reject-" + strings.ReplaceAll(name, " ", "-")
			defer ForgetSpec(spec)
			for _, rv := range tc.revisions {
				RejectConfig(spec, rv)
			}
			if got := testutil.ToFloat64(ConfigRejections.WithLabelValues(spec)); got != tc.want {
				t.Errorf("rejections = %v, want %v", got, tc.want)
			}
			if got := testutil.ToFloat64(ConfigValid.WithLabelValues(spec)); got != 0 {
				t.Errorf("config_valid = %v, want 0", got)
			}
		})
	}
}

func TestForgetSpecRemovesEverySpecSeries(t *testing.T) {
	const spec = "forget-me"
	Nodes.WithLabelValues(spec, "Running").Set(1)
	JobsFinished.WithLabelValues(spec, "failed").Inc()
	RejectConfig(spec, "1")
	ForgetSpec(spec)
	families, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "spec" && l.GetValue() == spec {
					t.Errorf("%s still has a series for the deleted spec", mf.GetName())
				}
			}
		}
	}
	RejectConfig(spec, "1") // forgotten: the same revision of a re-created spec counts again
	if got := testutil.ToFloat64(ConfigRejections.WithLabelValues(spec)); got != 1 {
		t.Errorf("rejections after re-creation = %v, want 1", got)
	}
	ForgetSpec(spec)
}

func TestFixedLabelValuesExistAtZero(t *testing.T) {
	for _, op := range secretOperations {
		if got := testutil.ToFloat64(SecretFailures.WithLabelValues(op)); got != 0 {
			t.Errorf("secret failures{%s} = %v at start", op, got)
		}
	}
	want := len(reconcileResults)
	if got := testutil.CollectAndCount(Reconciles); got != want {
		t.Errorf("reconcile_total has %d series at start, want %d", got, want)
	}
	if got := testutil.CollectAndCount(IsLeader); got != 1 {
		t.Errorf("is_leader has %d series, want 1 (0 until elected)", got)
	}
}

func TestReasonClass(t *testing.T) {
	tests := map[string]struct {
		reason, message, want string
	}{
		"401":      {"Failed", "ErrImagePull: 401 Unauthorized", ReasonUnauthorized},
		"missing":  {"Failed", "ErrImagePull: manifest unknown", ReasonNotFound},
		"deadline": {"Failed", "DeadlineExceeded", ReasonTimeout},
		"gone":     {"Gone", "node deleted while its prewarm Job ran", ReasonNodeGone},
		"pull":     {"Failed", "ImagePullBackOff", ReasonPullError},
		"other":    {"Failed", "OOMKilled", ReasonOther},
		"403":      {"Failed", "ErrImagePull: unexpected status: 403", ReasonUnauthorized},
		// A port with 401 in it is no status code: an unreachable registry stays a pull error.
		"port": {"Failed", `ErrImagePull: Head "https://127.0.0.1:40177/v2/x/manifests/v1": dial tcp 127.0.0.1:40177: connect: connection refused`, ReasonPullError},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ReasonClass(tc.reason, tc.message); got != tc.want {
				t.Errorf("ReasonClass(%q, %q) = %q, want %q", tc.reason, tc.message, got, tc.want)
			}
		})
	}
}

func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}

func TestDocumentedSeriesParsing(t *testing.T) {
	tests := map[string]struct {
		doc     string
		want    []Documented
		wantErr string
	}{
		"labels and none": {
			doc:  "Series:\n\n\timage_prewarm_a{spec,state}   gauge, a\n\timage_prewarm_b_total   counter, b\n",
			want: []Documented{{Name: "image_prewarm_a", Labels: []string{"spec", "state"}, Type: "gauge"}, {Name: "image_prewarm_b_total", Type: "counter"}},
		},
		"no type":   {doc: "\timage_prewarm_a{spec}   the a\n", wantErr: "not in the form"},
		"twice":     {doc: "\timage_prewarm_a gauge, a\n\timage_prewarm_a gauge, a\n", wantErr: "listed twice"},
		"no series": {doc: "prose only\n", wantErr: "no series"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DocumentedSeries(tc.doc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].Name != tc.want[i].Name || got[i].Type != tc.want[i].Type || !slices.Equal(got[i].Labels, tc.want[i].Labels) {
					t.Errorf("series %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}
