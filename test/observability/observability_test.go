package observability

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

var installed = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return Install(ctx)
})

func binDir(t *testing.T) string {
	t.Helper()
	bin, err := installed()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// families are the names of every family registered in metrics.Registry.
func families() map[string]bool {
	out := map[string]bool{}
	for _, s := range metrics.Registered() {
		out[s.Name] = true
	}
	return out
}

// alerts are the alerts the chart must ship, with their severity.
var alerts = map[string]string{
	"ImagePrewarmRolloutStuck":            "warning",
	"ImagePrewarmFailureRatioHigh":        "warning",
	"ImagePrewarmConfigInvalid":           "warning",
	"ImagePrewarmWebhookErrors":           "warning",
	"ImagePrewarmNoLeader":                "critical",
	"ImagePrewarmNodesUngatedUnprewarmed": "warning",
	"ImagePrewarmPullsPaused":             "warning",
}

func TestInstallSecondRunIsInstant(t *testing.T) {
	first := binDir(t)
	start := time.Now()
	second, err := Install(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Errorf("second run printed %s, first %s", second, first)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("second run took %s; the cached install should be reused at once", took)
	}
	out, err := Promtool(t.Context(), first, Dir(), nil, "--version")
	if err != nil {
		t.Fatal(err, out)
	}
	t.Logf("second install run: %s; %s", time.Since(start).Round(time.Millisecond), strings.SplitN(out, "\n", 2)[0])
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := Promtool(t.Context(), binDir(t), Dir(), nil, "check", "rules", ChartPath(RulesFile))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out, err := Promtool(t.Context(), binDir(t), Dir(), nil, "test", "rules", RuleTestsFile)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestAlertRules(t *testing.T) {
	rules, err := LoadRules(ChartPath(RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	fams := families()
	seen := map[string]bool{}
	for _, r := range rules.AllRules() {
		seen[r.Alert] = true
		want, ok := alerts[r.Alert]
		if !ok {
			t.Errorf("unexpected rule %q%s", r.Alert, r.Record)
			continue
		}
		if r.Labels["severity"] != want {
			t.Errorf("%s: severity %q, want %q", r.Alert, r.Labels["severity"], want)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s has no %s annotation", r.Alert, a)
			}
		}
		assertKnownMetrics(t, "alert "+r.Alert, r.Expr, fams)
	}
	for name := range alerts {
		if !seen[name] {
			t.Errorf("alert %s is missing", name)
		}
	}
}

func TestDashboard(t *testing.T) {
	d, err := LoadDashboard(ChartPath(DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want ≥ 39", d.SchemaVersion)
	}
	assertVariables(t, d)
	ids := map[int]bool{}
	for _, p := range d.AllPanels() {
		if p.Type == "row" {
			continue
		}
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		assertPanel(t, p)
	}
	fams := families()
	used := map[string]bool{}
	for _, q := range d.Queries() {
		for _, n := range assertKnownMetrics(t, q.Source, q.Expr, fams) {
			used[Family(n, fams)] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fams)) {
		if strings.HasPrefix(name, "image_prewarm_") && !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

func assertVariables(t *testing.T, d *Dashboard) {
	t.Helper()
	vars := map[string]Variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	ds := vars["datasource"]
	var query string
	_ = json.Unmarshal(ds.Query, &query)
	if ds.Type != "datasource" || query != "prometheus" {
		t.Errorf("want a template variable datasource of type datasource (prometheus), got %+v", ds)
	}
	spec := vars["spec"]
	if spec.Type != "query" || spec.Datasource == nil || spec.Datasource.UID != "${datasource}" {
		t.Errorf("want a template variable spec, a query on ${datasource}, got %+v", spec)
	}
}

func assertPanel(t *testing.T, p Panel) {
	t.Helper()
	if strings.TrimSpace(p.Title) == "" {
		t.Errorf("panel %d has no title", p.ID)
	}
	if strings.TrimSpace(p.Description) == "" {
		t.Errorf("panel %q has no description", p.Title)
	}
	if p.FieldConfig.Defaults.Unit == "" {
		t.Errorf("panel %q has no unit (fieldConfig.defaults.unit)", p.Title)
	}
	if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
		t.Errorf("panel %q datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
	}
	if len(p.Targets) == 0 {
		t.Errorf("panel %q has no query", p.Title)
	}
	for _, q := range p.Targets {
		if strings.TrimSpace(q.Expr) == "" {
			t.Errorf("panel %q target %s has no expr", p.Title, q.RefID)
		}
		if q.Datasource != nil && q.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q target %s uses data source %+v", p.Title, q.RefID, q.Datasource)
		}
	}
}

// assertKnownMetrics fails for a metric name that is no family of metrics.Registry and
// returns the names the expression reads.
func assertKnownMetrics(t *testing.T, source, expr string, fams map[string]bool) []string {
	t.Helper()
	names := MetricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s reads no metric: %s", source, expr)
	}
	for _, n := range names {
		if !fams[Family(n, fams)] {
			t.Errorf("%s reads %s, which pkg/metrics does not register", source, n)
		}
	}
	return names
}

// TestQueriesRunInPrometheus runs every dashboard and alert expression against a real
// Prometheus with no data: each must parse and evaluate; the alert rules, loaded from
// the chart's file, must evaluate without error.
func TestQueriesRunInPrometheus(t *testing.T) {
	p, err := Start(t.Context(), Options{BinDir: binDir(t), Dir: t.TempDir(), RuleFiles: []string{ChartPath(RulesFile)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	d, err := LoadDashboard(ChartPath(DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := LoadRules(ChartPath(RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(d.Queries(), rules.Queries()...) {
		expr := Expand(q.Expr, QueryVars(".*"))
		if strings.Contains(expr, "$") {
			t.Errorf("%s: unknown variable left in %s", q.Source, expr)
			continue
		}
		if _, err := p.Query(t.Context(), expr); err != nil {
			t.Errorf("%s: %v", q.Source, err)
		}
	}
	assertRulesHealthy(t, p, len(rules.AllRules()))
}

func assertRulesHealthy(t *testing.T, p *Prometheus, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		health, err := p.Rules(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ok := 0
		for _, h := range health {
			if h.Health == "err" {
				t.Fatalf("rule %s: %s", h.Name, h.LastError)
			}
			if h.Health == "ok" {
				ok++
			}
		}
		if len(health) == want && ok == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rules loaded, %d evaluated ok: %+v", len(health), want, ok, health)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestMetricNames(t *testing.T) {
	tests := map[string]struct {
		expr string
		want []string
	}{
		"selector":              {`image_prewarm_nodes{spec=~"a|b", state="Failed"}`, []string{"image_prewarm_nodes"}},
		"aggregation and range": {`sum by (spec, le) (rate(x_bucket{a="sum(y)"}[5m] offset 1h))`, []string{"x_bucket"}},
		"binary with matching":  {`a / on (spec) group_left (phase) b > bool 0.2 and absent(c)`, []string{"a", "b", "c"}},
		"quantile and numbers":  {`histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval]))) > 1e3`, []string{"h_bucket"}},
		"aggregation after":     {`max(m) by (spec) == 0 or vector(1)`, []string{"m"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := MetricNames(tc.expr); !slices.Equal(got, tc.want) {
				t.Errorf("MetricNames(%q) = %v, want %v", tc.expr, got, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	got := Expand(`rate(m{spec=~"$spec"}[$__rate_interval]) + n{x="${spec}"} + $other`, QueryVars("a|b"))
	want := `rate(m{spec=~"a|b"}[1m]) + n{x="a|b"} + $other`
	if got != want {
		t.Errorf("Expand = %s, want %s", got, want)
	}
}
