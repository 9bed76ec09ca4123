package controller

import (
	"testing"
	"time"
)

func TestParsePulled(t *testing.T) {
	tests := map[string]struct {
		msg  string
		want pulledEvent
		ok   bool
	}{
		"real node": {msg: `Successfully pulled image "127.0.0.1:34027/art/form0:v1" in 69ms (132ms including waiting). Image size: 5250621 bytes.`,
			want: pulledEvent{Image: "127.0.0.1:34027/art/form0:v1", Duration: 69 * time.Millisecond, Bytes: 5250621}, ok: true},
		"seconds": {msg: `Successfully pulled image "nginx:1.27" in 8.515s (8.515s including waiting). Image size: 209715200 bytes.`,
			want: pulledEvent{Image: "nginx:1.27", Duration: 8515 * time.Millisecond, Bytes: 209715200}, ok: true},
		"minutes":         {msg: `Successfully pulled image "a/b@sha256:00" in 1m2.5s (1m3s including waiting). Image size: 1 bytes.`, want: pulledEvent{Image: "a/b@sha256:00", Duration: 62500 * time.Millisecond, Bytes: 1}, ok: true},
		"already present": {msg: `Container image "a/b:1" already present on machine and can be accessed by the pod`},
		"truncated":       {msg: `Successfully pulled image "a/b:1" in 1s`},
		"bad duration":    {msg: `Successfully pulled image "a/b:1" in 1q (1s including waiting). Image size: 1 bytes.`},
	}
	for name, tc := range tests {
		got, ok := parsePulled(tc.msg)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: parsePulled = %+v, %v; want %+v, %v", name, got, ok, tc.want, tc.ok)
		}
	}
}
