package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := map[string]struct {
		args       []string
		wantCode   int
		wantStderr string
	}{
		"no args is the noop":         {args: nil, wantCode: 0},
		"install without dir":         {args: []string{"install"}, wantCode: 1, wantStderr: "usage"},
		"unknown command":             {args: []string{"frobnicate"}, wantCode: 1, wantStderr: "usage"},
		"install into missing dir":    {args: []string{"install", filepath.Join(t.TempDir(), "missing")}, wantCode: 1, wantStderr: "create file"},
		"install with extra argument": {args: []string{"install", t.TempDir(), "x"}, wantCode: 1, wantStderr: "usage"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tc.args, &stderr); got != tc.wantCode {
				t.Errorf("run(%q) = %d, want %d (stderr %q)", tc.args, got, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

func TestInstall(t *testing.T) {
	tests := map[string]struct {
		preexisting bool // a previous install left a file behind
	}{
		"empty dir":                 {},
		"overwrites previous files": {preexisting: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, binaryName)
			if tc.preexisting {
				if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var stderr bytes.Buffer
			if code := run([]string{"install", dir}, &stderr); code != 0 {
				t.Fatalf("install exited %d: %s", code, stderr.String())
			}

			info, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Mode().Perm(); got != 0o755 {
				t.Errorf("mode = %v, want 0755", got)
			}
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(self)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("installed %d bytes differ from own executable (%d bytes)", len(got), len(want))
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("dir holds %d entries, want only %s (no temporary file left)", len(entries), binaryName)
			}
		})
	}
}
