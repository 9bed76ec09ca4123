package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

func TestNew(t *testing.T) {
	tests := map[string]struct {
		format    string
		verbosity int
		wantErr   string
	}{
		"json":            {format: FormatJSON},
		"console":         {format: FormatConsole, verbosity: 2},
		"unknown format":  {format: "xml", wantErr: "log format"},
		"verbosity range": {format: FormatJSON, verbosity: 11, wantErr: "verbosity"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.format, tc.verbosity, &bytes.Buffer{})
			if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestJSONLinesAndKlogShareTheSink(t *testing.T) {
	var buf bytes.Buffer
	logger, err := New(FormatJSON, 0, &buf)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hello", KeySpec, "ml")
	klog.InfoS("from klog", KeyNode, "n1")
	klog.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
	}
	if !strings.Contains(lines[1], `"node":"n1"`) {
		t.Fatalf("klog line lost its key: %s", lines[1])
	}
}
