package observability

import (
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Chart files this package checks, relative to the chart directory.
const (
	DashboardFile = "dashboards/image-prewarm.json"
	RulesFile     = "alerts/image-prewarm.rules.yaml"
	// RuleTestsFile is the promtool rule test file, in this package's directory.
	RuleTestsFile = "rules_test.yaml"
)

// ChartPath is the path of a file of charts/image-prewarm.
func ChartPath(rel string) string {
	return filepath.Join(Dir(), "..", "..", "charts", "image-prewarm", rel)
}

// MetricsDoc is the package comment of pkg/metrics/metrics.go, whose series list
// metrics.DocumentedSeries reads.
func MetricsDoc() (string, error) {
	path := filepath.Join(Dir(), "..", "..", "pkg", "metrics", "metrics.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		return "", err
	}
	if f.Doc == nil {
		return "", fmt.Errorf("%s has no package comment", path)
	}
	return f.Doc.Text(), nil
}

// Dashboard is the part of a Grafana dashboard these checks read.
type Dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *Datasource     `json:"datasource"`
}

// Datasource refers to a data source by type and uid (here the ${datasource} variable).
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is one dashboard panel; rows may nest panels.
type Panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *Datasource `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *Datasource `json:"datasource"`
	} `json:"targets"`
	Panels []Panel `json:"panels"`
}

// LoadDashboard reads and decodes a dashboard JSON file, rejecting unknown syntax.
func LoadDashboard(path string) (*Dashboard, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("%s is not valid JSON", path)
	}
	d := &Dashboard{}
	if err := json.Unmarshal(raw, d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// AllPanels lists the panels, those nested in rows included.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Query is one PromQL expression and where it comes from.
type Query struct {
	Source string // "panel <title> <refId>" or "alert <name>"
	Expr   string
}

// Queries lists every panel target's expression.
func (d *Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			out = append(out, Query{Source: fmt.Sprintf("panel %q %s", p.Title, t.RefID), Expr: t.Expr})
		}
	}
	return out
}

// Rules is a Prometheus rule file.
type Rules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []Rule `json:"rules"`
	} `json:"groups"`
}

// Rule is one alerting or recording rule.
type Rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// LoadRules reads a rule file, rejecting unknown fields.
func LoadRules(path string) (*Rules, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &Rules{}
	if err := yaml.UnmarshalStrict(raw, r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// AllRules lists the rules of every group.
func (r *Rules) AllRules() []Rule {
	var out []Rule
	for _, g := range r.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// Queries lists every rule's expression.
func (r *Rules) Queries() []Query {
	var out []Query
	for _, rule := range r.AllRules() {
		out = append(out, Query{Source: "alert " + rule.Alert + rule.Record, Expr: rule.Expr})
	}
	return out
}

// QueryVars are the values the checks give the dashboard's variables: spec is a regular
// expression of spec names (Grafana's "All" is ".*"), $__rate_interval is 1m.
func QueryVars(spec string) map[string]string {
	return map[string]string{"spec": spec, "__rate_interval": "1m", "datasource": "prometheus"}
}

var variable = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// Expand replaces dashboard variables ($name and ${name}) found in vars; others stay.
func Expand(expr string, vars map[string]string) string {
	return variable.ReplaceAllStringFunc(expr, func(v string) string {
		name := strings.Trim(v, "${}")
		if value, ok := vars[name]; ok {
			return value
		}
		return v
	})
}

var (
	stringLiteral = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'` + "|`[^`]*`")
	labelMatchers = regexp.MustCompile(`\{[^}]*\}`)
	rangesOffsets = regexp.MustCompile(`\[[^\]]*\]|\boffset\s+-?\w+`)
	labelLists    = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identifier    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords      = []string{"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "atan2", "inf", "nan", "Inf", "NaN"}
)

// MetricNames lists, sorted and once each, the metric names an expression selects:
// identifiers that are not functions, aggregations, keywords, label names or numbers.
func MetricNames(expr string) []string {
	s := stringLiteral.ReplaceAllString(expr, `""`)
	s = labelMatchers.ReplaceAllString(s, " ")
	s = rangesOffsets.ReplaceAllString(s, " ")
	s = labelLists.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range identifier.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.") {
			continue // a number's exponent or unit: 1e3, 5m
		}
		if next := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(next, "(") {
			continue // a function or an aggregation
		}
		if slices.Contains(keywords, name) || slices.Contains(names, name) {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Family maps a sample name to its metric family: histogram series _bucket, _sum and
// _count belong to the histogram named without the suffix, when families has it.
func Family(name string, families map[string]bool) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
			return base
		}
	}
	return name
}
