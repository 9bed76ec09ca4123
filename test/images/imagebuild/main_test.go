package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func TestParse(t *testing.T) {
	cases := map[string]struct {
		args    []string
		want    options
		wantErr string
	}{
		"defaults": {want: options{out: "bin/image", version: "dev", platforms: "linux/amd64,linux/arm64"}},
		"push only": {
			args: []string{"-o", "", "-push", "127.0.0.1:5000/image-prewarm:v1", "-ca", "ca.crt", "-username", "u", "-password-file", "pw"},
			want: options{version: "dev", platforms: "linux/amd64,linux/arm64", push: "127.0.0.1:5000/image-prewarm:v1", ca: "ca.crt", user: "u", pwFile: "pw"},
		},
		"nothing to do":       {args: []string{"-o", ""}, wantErr: "nothing to do"},
		"push without CA":     {args: []string{"-push", "127.0.0.1:5000/a:v1"}, wantErr: "-ca"},
		"user, no password":   {args: []string{"-push", "127.0.0.1:5000/a:v1", "-ca", "c", "-username", "u"}, wantErr: "go together"},
		"stray argument":      {args: []string{"extra"}, wantErr: "unexpected"},
		"no password on argv": {args: []string{"-password", "x"}, wantErr: "not defined"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parse(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("parse = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParsePlatforms(t *testing.T) {
	cases := map[string]struct {
		list    string
		want    []string
		wantErr bool
	}{
		"two":        {list: "linux/amd64, linux/arm64", want: []string{"linux/amd64", "linux/arm64"}},
		"no arch":    {list: "linux", wantErr: true},
		"empty item": {list: "linux/amd64,", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parsePlatforms(tc.list)
			if tc.wantErr != (err != nil) {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			for i, p := range got {
				if p.String() != tc.want[i] {
					t.Errorf("platform %d = %s, want %s", i, p, tc.want[i])
				}
			}
		})
	}
}

func TestClearLayout(t *testing.T) {
	cases := map[string]struct {
		setup   func(t *testing.T, dir string)
		wantErr bool
	}{
		"missing": {setup: func(t *testing.T, dir string) {}},
		"empty":   {setup: func(t *testing.T, dir string) { mkdir(t, dir) }},
		"a previous layout": {setup: func(t *testing.T, dir string) {
			if _, err := layout.Write(dir, empty.Index); err != nil {
				t.Fatal(err)
			}
		}},
		"something else": {setup: func(t *testing.T, dir string) {
			mkdir(t, dir)
			if err := os.WriteFile(filepath.Join(dir, "keep"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "image")
			tc.setup(t, dir)
			if err := clearLayout(dir); tc.wantErr != (err != nil) {
				t.Fatalf("clearLayout: %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
