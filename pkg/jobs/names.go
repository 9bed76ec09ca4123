package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Labels and annotations set on the objects of a run.
const (
	// LabelApp and AppName mark every object image-prewarm creates.
	LabelApp = "app"
	AppName  = "image-prewarm"
	// LabelRun holds the run ID on the Secret, the Job and the pod template.
	LabelRun = "image-prewarm.io/run"
	// LabelSpec holds the spec ConfigMap name as returned by SpecLabelValue.
	LabelSpec = "image-prewarm.io/spec"
	// AnnotationNode holds the full node name: node names may be 253 characters,
	// too long for a label value.
	AnnotationNode = "image-prewarm.io/node"
	// AnnotationHeld marks a Job created while some of the run's pulls were held
	// back: its success leaves the node waiting for them.
	AnnotationHeld = "image-prewarm.io/held"
	// LabelPullSecret is set on the pod template only when the run has
	// credentials; its value is the Secret name the mutating webhook injects.
	LabelPullSecret = "image-prewarm.io/pull-secret"
)

const (
	secretPrefix = "image-pull-secret-"
	jobPrefix    = "prewarm-"
	// maxLabel is the limit of a DNS-1123 label and of a label value.
	maxLabel = 63
	// hashLen is the number of hex characters of sha256 appended to a name that
	// had to be shortened or altered, so two different inputs stay distinct.
	hashLen = 8
)

// RunRef identifies one run: a revision of one spec ConfigMap in a namespace.
type RunRef struct {
	Namespace string
	Spec      string // name of the spec ConfigMap
	RunID     string // 10 hex characters
}

// SecretName is the name of the run's ephemeral pull Secret.
func SecretName(runID string) string {
	return secretPrefix + runID
}

// JobName is the name of the run's Job for node: "prewarm-<run>-<node>".
// It is a valid DNS-1123 label for any node name. A node name that is too long
// or not a label as is (dots, other characters) is lower-cased, has invalid
// characters replaced by '-', is truncated, and gets '-' plus 8 hex characters
// of sha256(node), so that nodes sharing a long prefix or differing only in
// replaced characters get different Jobs.
func JobName(runID, node string) string {
	prefix := jobPrefix + runID + "-"
	clean := sanitizeLabel(node)
	if clean == node && clean != "" && len(prefix)+len(clean) <= maxLabel && !strings.HasSuffix(clean, "-") {
		return prefix + clean
	}
	return hashedName(prefix, clean, node)
}

// SpecLabelValue is the value of LabelSpec for a spec ConfigMap name: the name
// itself when it fits a label value, else a truncation with a hash suffix.
// ConfigMap names use only [a-z0-9.-], all valid in a label value.
func SpecLabelValue(spec string) string {
	if len(spec) <= maxLabel {
		return spec
	}
	return hashedName("", spec, spec)
}

// hashedName returns prefix + body truncated + "-" + 8 hex of sha256(key),
// at most 63 characters. Trailing '-' and '.' of the truncated body are
// trimmed so that the result never has a doubled separator before the hash.
func hashedName(prefix, body, key string) string {
	sum := sha256.Sum256([]byte(key))
	suffix := hex.EncodeToString(sum[:])[:hashLen]
	room := maxLabel - len(prefix) - len("-") - hashLen
	if len(body) > room {
		body = body[:room]
	}
	body = strings.TrimRight(body, "-.")
	if body == "" {
		return prefix + suffix
	}
	return prefix + body + "-" + suffix
}

// sanitizeLabel lower-cases s and replaces every character that is not
// [a-z0-9-] with '-'. Leading '-' are dropped because the result follows a
// '-' separator.
func sanitizeLabel(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	return strings.TrimLeft(string(b), "-")
}

// Labels are the labels of every object of the run; the controller lists and
// cleans up by them.
func Labels(ref RunRef) map[string]string {
	return map[string]string{
		LabelApp:  AppName,
		LabelRun:  ref.RunID,
		LabelSpec: SpecLabelValue(ref.Spec),
	}
}

// NodeLabelKey is the label that marks a node holding a spec's images: a stable, valid
// key for any spec name (a long name is cut and given a hash suffix).
func NodeLabelKey(spec string) string { return NodeLabelPrefix + SpecLabelValue(spec) }

// NodeLabelPrefix starts every per-spec node label key; NodeLabelReady is its value.
const (
	NodeLabelPrefix = "prewarm.image-prewarm.io/"
	NodeLabelReady  = "ready"
)
