package cluster

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"
)

//go:embed stages/nodes.yaml
var nodeStages string

//go:embed stages/pods.yaml
var podStagesTemplate string

// neverMatches is a pattern no image reference can match (references are never empty).
const neverMatches = "^$"

// PullBehaviour configures how kwok plays the kubelet for pods on fake nodes.
type PullBehaviour struct {
	// Delay is how long the init containers ("pulls") of a pod take at least.
	Delay time.Duration
	// Jitter adds a uniformly random extra delay in [0, Jitter].
	Jitter time.Duration
	// FailImagePattern is a regular expression: pods with an init container whose image
	// matches it report ErrImagePull (401 Unauthorized) instead of completing.
	FailImagePattern string
	// FailNodePattern restricts those failures to nodes whose name matches; empty = all.
	FailNodePattern string
}

func (p PullBehaviour) validate() error {
	for name, pattern := range map[string]string{"FailImagePattern": p.FailImagePattern, "FailNodePattern": p.FailNodePattern} {
		if _, err := regexp.Compile(pattern); err != nil {
			return fmt.Errorf("pull behaviour %s: %w", name, err)
		}
	}
	if p.Delay < 0 || p.Jitter < 0 {
		return fmt.Errorf("pull behaviour: negative delay or jitter")
	}
	return nil
}

// renderStages returns kwok's configuration: node stages plus pod stages with the delays
// and failure patterns filled in.
func renderStages(p PullBehaviour) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	imagePattern, nodePattern := p.FailImagePattern, p.FailNodePattern
	if imagePattern == "" {
		imagePattern = neverMatches
	}
	if nodePattern == "" {
		nodePattern = ".*"
	}
	tmpl, err := template.New("pods").Delims("[[", "]]").Parse(podStagesTemplate)
	if err != nil {
		return "", fmt.Errorf("parse pod stages: %w", err)
	}
	var out bytes.Buffer
	err = tmpl.Execute(&out, map[string]any{
		"DelayMillis":      p.Delay.Milliseconds(),
		"JitterMillis":     (p.Delay + p.Jitter).Milliseconds(),
		"FailImagePattern": imagePattern,
		"FailSelector":     failSelector(imagePattern, nodePattern),
	})
	if err != nil {
		return "", fmt.Errorf("render pod stages: %w", err)
	}
	return nodeStages + "\n---\n" + out.String(), nil
}

// failSelector is a jq expression that yields a value only for pods that must fail:
// on a matching node, with an init container image matching the pattern. It is placed in
// a single-quoted YAML string, hence the doubled single quotes.
func failSelector(imagePattern, nodePattern string) string {
	img, _ := json.Marshal(imagePattern)
	node, _ := json.Marshal(nodePattern)
	expr := fmt.Sprintf(`select(.spec.nodeName | test(%s)) | .spec.initContainers.[].image | select(test(%s))`, node, img)
	return strings.ReplaceAll(expr, "'", "''")
}
