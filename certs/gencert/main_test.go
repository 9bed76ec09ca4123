package main

import (
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-prewarm/image-prewarm/certs"
)

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	var out strings.Builder
	if err := run([]string{"-days=30", "image-prewarm-webhook", "ops", dir}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	wantCmd := "kubectl create secret tls image-prewarm-webhook-tls -n ops --cert=" + filepath.Join(dir, "tls.crt") + " --key=" + filepath.Join(dir, "tls.key")
	if !strings.Contains(out.String(), wantCmd) {
		t.Errorf("output lacks %q:\n%s", wantCmd, out.String())
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), base64.StdEncoding.EncodeToString(caPEM)) {
		t.Errorf("output lacks the base64 CA bundle of ca.crt:\n%s", out.String())
	}
}

func TestRunRejects(t *testing.T) {
	tests := map[string]struct {
		args    []string
		wantErr string
	}{
		"too few arguments": {args: []string{"svc", "ns"}, wantErr: "want 3 arguments"},
		"bad service":       {args: []string{"Bad_Svc", "ns", "out"}, wantErr: "SERVICE"},
		"bad namespace":     {args: []string{"svc", "NS.x", "out"}, wantErr: "NAMESPACE"},
		"bad secret":        {args: []string{"-secret=A B", "svc", "ns", "out"}, wantErr: "-secret"},
		"zero days":         {args: []string{"-days=0", "svc", "ns", "out"}, wantErr: "-days"},
		"unknown flag":      {args: []string{"-x", "svc", "ns", "out"}, wantErr: "-x"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			args := tc.args
			// Keep any output directory inside the test's own temporary directory.
			if n := len(args); n > 0 && args[n-1] == "out" {
				args = append(append([]string{}, args[:n-1]...), filepath.Join(dir, "out"))
			}
			err := run(args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
			if _, statErr := os.Stat(filepath.Join(dir, "out")); statErr == nil {
				t.Error("rejected arguments still wrote files")
			}
		})
	}
}
