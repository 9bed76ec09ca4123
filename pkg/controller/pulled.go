package controller

import (
	"regexp"
	"strconv"
	"time"
)

// pulledEvent is what kubelet's Pulled Event says about one finished pull.
type pulledEvent struct {
	Image string
	// Duration is the pull alone, without the time spent waiting for other pulls of
	// the node (kubelet serializes them).
	Duration time.Duration
	Bytes    int64
}

// pulledMessage is kubelet's text (pkg/kubelet/images/image_manager.go), e.g.
// `Successfully pulled image "r/app:v1" in 1.2s (1.5s including waiting). Image size: 804930 bytes.`
var pulledMessage = regexp.MustCompile(`^Successfully pulled image "([^"]+)" in ([0-9.a-zµ]+) \([^)]*\)\. Image size: ([0-9]+) bytes\.`)

// parsePulled reads a Pulled Event's message; false for any other text, such as
// `Container image "…" already present on machine`, which was no pull.
func parsePulled(message string) (pulledEvent, bool) {
	m := pulledMessage.FindStringSubmatch(message)
	if m == nil {
		return pulledEvent{}, false
	}
	d, err := time.ParseDuration(m[2])
	if err != nil {
		return pulledEvent{}, false
	}
	size, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil {
		return pulledEvent{}, false
	}
	return pulledEvent{Image: m[1], Duration: d, Bytes: size}, true
}
