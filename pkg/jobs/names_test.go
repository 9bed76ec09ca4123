package jobs

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

const testRun = "0123456789"

func TestJobName(t *testing.T) {
	// The prefix "prewarm-0123456789-" is 19 characters: 44 are left for the node.
	long := strings.Repeat("ip-10-0-0-1.eu-west-1.compute.internal.", 7)[:253]
	tests := map[string]struct {
		node       string
		want       string // exact name; empty: only the properties below
		wantPrefix string
		wantHashed bool
	}{
		"short":               {node: "node-1", want: "prewarm-0123456789-node-1"},
		"exactly 63":          {node: strings.Repeat("a", 44), want: "prewarm-0123456789-" + strings.Repeat("a", 44)},
		"64 is hashed":        {node: strings.Repeat("a", 45), wantPrefix: "prewarm-0123456789-aaaa", wantHashed: true},
		"dots are replaced":   {node: "node.example.com", wantPrefix: "prewarm-0123456789-node-example-com-", wantHashed: true},
		"253 chars with dots": {node: long, wantPrefix: "prewarm-0123456789-ip-10-0-0-1-eu-west-1", wantHashed: true},
		"upper case":          {node: "Node-A", wantPrefix: "prewarm-0123456789-node-a-", wantHashed: true},
		"trailing dash":       {node: "node-", wantPrefix: "prewarm-0123456789-node-", wantHashed: true},
		"only invalid chars":  {node: "...", wantPrefix: "prewarm-0123456789-", wantHashed: true},
		"empty":               {node: "", wantPrefix: "prewarm-0123456789-", wantHashed: true},
		"non-ascii":           {node: "nöde", wantPrefix: "prewarm-0123456789-n--de-", wantHashed: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := JobName(testRun, tc.node)
			if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
				t.Fatalf("JobName(%q) = %q, not a DNS-1123 label: %v", tc.node, got, errs)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("JobName(%q) = %q, want %q", tc.node, got, tc.want)
			}
			if !strings.HasPrefix(got, tc.wantPrefix) {
				t.Errorf("JobName(%q) = %q, want prefix %q", tc.node, got, tc.wantPrefix)
			}
			if hashed := got != "prewarm-"+testRun+"-"+tc.node; hashed != tc.wantHashed {
				t.Errorf("JobName(%q) = %q, hashed = %v, want %v", tc.node, got, hashed, tc.wantHashed)
			}
		})
	}
}

func TestJobNameDistinct(t *testing.T) {
	prefix := strings.Repeat("gpu-node.", 25)
	tests := map[string]struct {
		a, b string
	}{
		"long names with the same prefix": {a: prefix + "a", b: prefix + "b"},
		"dot versus dash":                 {a: "node.a", b: "node-a"},
		"dot versus dash, both altered":   {a: "node.a", b: "node_a"},
		"same long prefix, 253 chars":     {a: (prefix + strings.Repeat("x", 253))[:253], b: (prefix + strings.Repeat("y", 253))[:253]},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if a, b := JobName(testRun, tc.a), JobName(testRun, tc.b); a == b {
				t.Errorf("JobName(%q) = JobName(%q) = %q", tc.a, tc.b, a)
			}
		})
	}
}

func FuzzJobName(f *testing.F) {
	for _, seed := range []string{"", "node-1", "a.b.c", strings.Repeat("x.", 126) + "y", "-", "ÄÖÜ", "node-"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, node string) {
		got := JobName(testRun, node)
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Fatalf("JobName(%q) = %q: %v", node, got, errs)
		}
		if again := JobName(testRun, node); again != got {
			t.Fatalf("JobName(%q) not deterministic: %q then %q", node, got, again)
		}
	})
}

func TestSpecLabelValue(t *testing.T) {
	tests := map[string]struct {
		spec       string
		want       string
		wantHashed bool
	}{
		"short":           {spec: "gpu-images", want: "gpu-images"},
		"exactly 63":      {spec: strings.Repeat("s", 63), want: strings.Repeat("s", 63)},
		"64 is hashed":    {spec: strings.Repeat("s", 64), wantHashed: true},
		"253 with dots":   {spec: strings.Repeat("prewarm.", 31) + "abcde", wantHashed: true},
		"dot at the cut":  {spec: strings.Repeat("a", 53) + "." + strings.Repeat("b", 20), wantHashed: true},
		"dash at the cut": {spec: strings.Repeat("a", 53) + "-" + strings.Repeat("b", 20), wantHashed: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := SpecLabelValue(tc.spec)
			if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
				t.Fatalf("SpecLabelValue(%q) = %q, not a label value: %v", tc.spec, got, errs)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("SpecLabelValue(%q) = %q, want %q", tc.spec, got, tc.want)
			}
			if hashed := got != tc.spec; hashed != tc.wantHashed {
				t.Errorf("SpecLabelValue(%q) = %q, hashed = %v, want %v", tc.spec, got, hashed, tc.wantHashed)
			}
			if other := SpecLabelValue(tc.spec + "x"); tc.wantHashed && other == got {
				t.Errorf("SpecLabelValue collides for %q and its extension", tc.spec)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	got := Labels(RunRef{Namespace: "ns", Spec: "gpu-images", RunID: testRun})
	want := map[string]string{LabelApp: AppName, LabelRun: testRun, LabelSpec: "gpu-images"}
	if len(got) != len(want) {
		t.Fatalf("Labels = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Labels[%q] = %q, want %q", k, got[k], v)
		}
	}
}
