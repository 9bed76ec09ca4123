package app

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := map[string]struct {
		args    []string
		want    func(*Config) bool
		wantErr []string
	}{
		"defaults": {
			args: nil,
			want: func(c *Config) bool {
				return c.Controller && c.Workers == 4 && c.LeaseDuration == 15*time.Second && c.MetricsSecure
			},
		},
		"custom": {
			args: []string{"--namespace=ops", "--workers=8", "--leader-elect=false", "--metrics-addr=127.0.0.1:0", "--metrics-secure=false", "--log-format=console"},
			want: func(c *Config) bool {
				return c.Namespace == "ops" && c.Workers == 8 && !c.LeaderElection && !c.MetricsSecure
			},
		},
		"every problem at once": {
			args:    []string{"--namespace=Bad_NS", "--workers=0", "--log-format=xml", "--metrics-addr=nope"},
			wantErr: []string{"--namespace", "--workers", "--log-format", "--metrics-addr"},
		},
		"short lease":     {args: []string{"--lease-duration=1s"}, wantErr: []string{"--lease-duration"}},
		"stray argument":  {args: []string{"extra"}, wantErr: []string{"unexpected arguments"}},
		"unknown flag":    {args: []string{"--nope"}, wantErr: []string{"nope"}},
		"no noop image":   {args: []string{"--noop-image="}, wantErr: []string{"--noop-image"}},
		"verbosity range": {args: []string{"-v=20"}, wantErr: []string{"-v 20"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Parse(tc.args, io.Discard)
			if len(tc.wantErr) == 0 {
				if err != nil || !tc.want(c) {
					t.Fatalf("Parse(%q) = %+v, %v", tc.args, c, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%q): no error", tc.args)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	var out strings.Builder
	_, err := Parse([]string{"--help"}, &out)
	if !errors.Is(err, ErrHelp) || !strings.Contains(out.String(), "-noop-image") {
		t.Fatalf("err %v, usage %q", err, out.String())
	}
}
