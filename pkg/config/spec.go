// Package config defines the prewarm spec: the YAML a user puts under
// prewarm.yaml in a ConfigMap labeled image-prewarm.io/config=true, how it is
// decoded, defaulted and validated, and the derived values (run ID, window
// size, pull policy, registry of an image) every other part relies on.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	// ConfigLabel marks a ConfigMap as a prewarm spec (value "true").
	ConfigLabel = "image-prewarm.io/config"
	// AnnotationResume on a spec ConfigMap: setting it to a new value resumes pulls
	// the run holds back (rejected credentials, an image not found).
	AnnotationResume = "image-prewarm.io/resume"
	// SpecKey is the ConfigMap data key holding the spec.
	SpecKey = "prewarm.yaml"

	// MaxSpecBytes bounds the input before decoding, so a huge ConfigMap
	// cannot make the webhook or the controller spend unbounded memory.
	MaxSpecBytes = 256 << 10
	// MaxImages keeps one node Job (one init container or volume per image or
	// artifact) reasonable; it bounds images and artifacts together.
	MaxImages = 200
	// MaxRegistries bounds the per-run pull Secret.
	MaxRegistries = 50

	// DefaultMaxConcurrentNodes is the rolling window when none is given.
	DefaultMaxConcurrentNodes = 10
	// DefaultPullTimeout is the per-node Job deadline when none is given.
	DefaultPullTimeout = 15 * time.Minute
	// DefaultRetries is the Job backoffLimit when none is given.
	DefaultRetries int32 = 1

	// Bounds of rollout.pullTimeout and rollout.retries: a pull shorter than a
	// minute fails on any real image, and a Job should not outlive a day.
	MinPullTimeout       = time.Minute
	MaxPullTimeout       = 24 * time.Hour
	MaxRetries     int32 = 10

	// DefaultKeepFailedJobs is how long a failed node's Job stays when none is given;
	// MaxKeepFailedJobs bounds rollout.keepFailedJobs (0 is allowed: delete at once).
	DefaultKeepFailedJobs = time.Hour
	MaxKeepFailedJobs     = 24 * time.Hour
	// FailedJobsKeptPerRun bounds the failed Jobs a run keeps at a time, whatever
	// keepFailedJobs says: a run failing on 1000 nodes keeps its first 10 failures for
	// debugging, and the other Jobs go as soon as their failures are recorded.
	FailedJobsKeptPerRun = 10
)

// knownPublicRegistries may be used without being listed in registries:
// they serve public images anonymously.
var knownPublicRegistries = []string{
	"docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "gcr.io",
	"mcr.microsoft.com", "public.ecr.aws", "nvcr.io",
}

// IsKnownPublicRegistry reports whether images from host may be prewarmed
// without listing the registry.
func IsKnownPublicRegistry(host string) bool {
	return slices.Contains(knownPublicRegistries, CanonicalHost(host))
}

// Spec is one prewarm set. After Parse (or Default) every field holds its
// effective value.
type Spec struct {
	Registries []Registry `json:"registries,omitempty"`
	Images     []string   `json:"images"`
	// Artifacts are OCI artifacts (model weights, datasets) to prewarm: references like
	// images, but nothing in them can run, so only image volumes can pull them.
	Artifacts    []string          `json:"artifacts,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations: nil means "absent" and defaults to tolerating every taint;
	// a non-nil empty slice means "tolerate nothing". omitzero (not
	// omitempty) keeps that difference through a marshal/parse round trip.
	Tolerations []corev1.Toleration `json:"tolerations,omitzero"`
	Rollout     Rollout             `json:"rollout,omitzero"`
	// Once marks a one-shot task (set by the task API).
	Once bool `json:"once,omitempty"`
	// PullSecret names an existing kubernetes.io/dockerconfigjson Secret that already
	// holds this run's credentials (the task API writes a task's credentials straight
	// into it). The controller uses it for the Jobs, never re-creates it, and deletes it
	// when every node has reported. Mutually exclusive with credentialsSecret.
	PullSecret string `json:"pullSecret,omitempty"`
}

// Registry is a registry the spec knows about, optionally with credentials.
type Registry struct {
	Server string `json:"server"`
	// CredentialsSecret names a kubernetes.io/basic-auth or
	// kubernetes.io/dockerconfigjson Secret in the spec's namespace; empty
	// means anonymous pulls.
	CredentialsSecret string `json:"credentialsSecret,omitempty"`
	// MaxConcurrentPulls caps concurrently running node Jobs pulling from this
	// registry, across all specs; 0 means no cap.
	MaxConcurrentPulls int `json:"maxConcurrentPulls,omitempty"`
}

// Rollout controls the rolling window of node Jobs. Zero values are "unset"
// for Default; omitzero keeps a code-built, undefaulted spec re-parseable.
type Rollout struct {
	MaxConcurrentNodes intstr.IntOrString `json:"maxConcurrentNodes,omitzero"`
	PullTimeout        metav1.Duration    `json:"pullTimeout,omitzero"`
	Retries            *int32             `json:"retries,omitempty"`
	// KeepFailedJobs is how long a failed node's Job and its pods stay after the
	// failure is recorded in the status, for kubectl describe and logs; at most
	// FailedJobsKeptPerRun of a run at a time. 0 deletes them as soon as the failure is
	// recorded, as successful Jobs always are. A pointer: an explicit 0 differs from
	// absent. Cleanup policy, not content: it is not part of the run ID.
	KeepFailedJobs *metav1.Duration `json:"keepFailedJobs,omitempty"`
	// Method is how a node's pull pod pulls: MethodAuto (default), MethodImageVolume or
	// MethodInitContainers.
	Method string `json:"method,omitempty"`
	// StartupTaint is the key of a taint that a node pool puts on new nodes (Karpenter
	// startupTaints, cluster-autoscaler's startup-taint prefix): the pull Jobs tolerate
	// it, and the controller removes it from a node once the node holds the images of
	// every spec that names it and selects the node, on a failure (unless
	// KeepTaintOnFailure), or StartupTaintTimeout after the node was created.
	StartupTaint string `json:"startupTaint,omitempty"`
	// StartupTaintTimeout: DefaultStartupTaintTimeout when unset.
	StartupTaintTimeout *metav1.Duration `json:"startupTaintTimeout,omitempty"`
	// KeepTaintOnFailure keeps a failed node tainted until the timeout instead of
	// letting workloads onto it without the images.
	KeepTaintOnFailure bool `json:"keepTaintOnFailure,omitempty"`
	// NodeLabel labels each node that holds the spec's images (jobs.NodeLabelKey).
	NodeLabel bool `json:"nodeLabel,omitempty"`
}

// The node gate's settings. None is part of the run ID: they say what happens around
// the pulls, not what is pulled.
const (
	DefaultStartupTaintTimeout = 30 * time.Minute
	MinStartupTaintTimeout     = time.Minute
	MaxStartupTaintTimeout     = 24 * time.Hour
)

// TaintTimeout is rollout.startupTaintTimeout with its default.
func (r Rollout) TaintTimeout() time.Duration {
	if r.StartupTaintTimeout == nil {
		return DefaultStartupTaintTimeout
	}
	return r.StartupTaintTimeout.Duration
}

// Pull methods (rollout.method).
const (
	// MethodAuto uses image volumes on nodes that can mount them and init containers
	// on the others.
	MethodAuto = "auto"
	// MethodImageVolume mounts every reference as an image volume (KEP-4639).
	MethodImageVolume = "imageVolume"
	// MethodInitContainers runs the noop binary inside every image.
	MethodInitContainers = "initContainers"
)

// References are the images and then the artifacts: everything a node pulls.
func (s *Spec) References() []string {
	return append(append(make([]string, 0, len(s.Images)+len(s.Artifacts)), s.Images...), s.Artifacts...)
}

// Parse decodes data (YAML or JSON) strictly, applies defaults and validates.
// Every error it returns is a *ValidationError.
func Parse(data []byte) (*Spec, error) {
	if len(data) > MaxSpecBytes {
		return nil, newValidationError("", fmt.Sprintf("spec is %d bytes, more than the %d byte limit", len(data), MaxSpecBytes))
	}
	var s Spec
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, decodeError(err, data)
	}
	// An explicit 0 or "0s" must be reported, not silently replaced by the
	// default, so find out which rollout fields the input actually set.
	var given struct {
		Rollout struct {
			MaxConcurrentNodes *intstr.IntOrString `json:"maxConcurrentNodes"`
			PullTimeout        *metav1.Duration    `json:"pullTimeout"`
		} `json:"rollout"`
	}
	if err := yaml.Unmarshal(data, &given); err != nil {
		return nil, decodeError(err, data)
	}
	s.applyDefaults(given.Rollout.MaxConcurrentNodes == nil, given.Rollout.PullTimeout == nil)
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// FromConfigMap parses the spec stored under SpecKey.
func FromConfigMap(cm *corev1.ConfigMap) (*Spec, error) {
	if cm == nil {
		return nil, newValidationError("", "no ConfigMap")
	}
	data, ok := cm.Data[SpecKey]
	if !ok {
		return nil, newValidationError("data."+SpecKey, "is missing; put the prewarm spec under this key")
	}
	return Parse([]byte(data))
}

// Default fills every unset field with its default. Zero values count as
// unset, which is what a spec built in code (e.g. by the task API) means.
func (s *Spec) Default() {
	s.applyDefaults(s.Rollout.MaxConcurrentNodes == intstr.IntOrString{}, s.Rollout.PullTimeout.Duration == 0)
}

func (s *Spec) applyDefaults(nodesUnset, timeoutUnset bool) {
	if s.Tolerations == nil {
		s.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	}
	if nodesUnset {
		s.Rollout.MaxConcurrentNodes = intstr.FromInt32(DefaultMaxConcurrentNodes)
	}
	if timeoutUnset {
		s.Rollout.PullTimeout = metav1.Duration{Duration: DefaultPullTimeout}
	}
	if s.Rollout.Retries == nil {
		retries := DefaultRetries
		s.Rollout.Retries = &retries
	}
	if s.Rollout.KeepFailedJobs == nil {
		s.Rollout.KeepFailedJobs = &metav1.Duration{Duration: DefaultKeepFailedJobs}
	}
}

// KeepFailedJobs is rollout.keepFailedJobs, DefaultKeepFailedJobs when unset.
func (s *Spec) KeepFailedJobs() time.Duration {
	if s.Rollout.KeepFailedJobs == nil {
		return DefaultKeepFailedJobs
	}
	return s.Rollout.KeepFailedJobs.Duration
}

// PullMethod is rollout.method with its default: empty means MethodAuto. The default
// is not written into the spec, so a spec without the field keeps its run ID.
func (r Rollout) PullMethod() string {
	if r.Method == "" {
		return MethodAuto
	}
	return r.Method
}

// RunID is a short stable hash of the defaulted spec content: a restarted
// controller derives the same object names for the same content. It is 10
// lowercase hex characters, safe inside object names and label values.
// rollout.keepFailedJobs is left out: how long failures are kept for debugging
// changes no pull, so editing it starts no new run (and run IDs stay what they were
// before the field existed).
func (s *Spec) RunID() string {
	c := *s
	c.Default() // defaults replace only nil/zero fields, never shared memory
	c.Rollout.KeepFailedJobs = nil
	c.Rollout.StartupTaint, c.Rollout.StartupTaintTimeout, c.Rollout.KeepTaintOnFailure, c.Rollout.NodeLabel = "", nil, false, false
	// Marshal cannot fail: every field is a plain value or a type whose
	// MarshalJSON never errors. Maps are marshaled with sorted keys, which
	// makes the encoding canonical.
	b, _ := json.Marshal(&c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// WindowSize resolves maxConcurrentNodes against the eligible node count.
// Percentages round up so a small percentage of a small cluster still makes
// progress; the result is always at least 1.
func (s *Spec) WindowSize(eligibleNodes int) int {
	n := 1
	mcn := s.Rollout.MaxConcurrentNodes
	switch mcn.Type {
	case intstr.Int:
		n = int(mcn.IntVal)
	case intstr.String:
		if pct, ok := parsePercent(mcn.StrVal); ok && eligibleNodes > 0 {
			n = (eligibleNodes*pct + 99) / 100
		}
	}
	return max(n, 1)
}

// RegistryFor returns the listed registry serving image, nil when the image's
// host is not listed (or the image is not a valid reference).
func (s *Spec) RegistryFor(image string) *Registry {
	host, err := RegistryHost(image)
	if err != nil {
		return nil
	}
	host = CanonicalHost(host)
	for i := range s.Registries {
		if CanonicalHost(s.Registries[i].Server) == host {
			return &s.Registries[i]
		}
	}
	return nil
}

// PullPolicyFor mirrors Kubernetes' defaulting: a moving tag (":latest" or no
// tag at all) must be re-pulled to be fresh, a pinned one need not be.
func (s *Spec) PullPolicyFor(image string) corev1.PullPolicy {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		// Cannot prove the image is pinned.
		return corev1.PullAlways
	}
	if _, digested := named.(reference.Digested); digested {
		return corev1.PullIfNotPresent
	}
	if tagged, ok := named.(reference.Tagged); ok && tagged.Tag() != "latest" {
		return corev1.PullIfNotPresent
	}
	return corev1.PullAlways
}

// RegistryHost returns the registry host of image, "docker.io" for short
// names such as "nginx".
func RegistryHost(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", fmt.Errorf("parse image reference %q: %w", image, err)
	}
	return reference.Domain(named), nil
}

// IsDockerHub reports whether host is one of Docker Hub's names. They all
// denote the same registry, so callers must treat them as one; kubelet does
// not (see CredentialHosts).
func IsDockerHub(host string) bool {
	switch strings.ToLower(host) {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return true
	}
	return false
}

// CanonicalHost makes registry hosts comparable: DNS names are
// case-insensitive and Docker Hub has several names.
func CanonicalHost(host string) string {
	if IsDockerHub(host) {
		return "docker.io"
	}
	return strings.ToLower(host)
}

// CredentialHosts returns the registry names whose images get the credentials
// of a listed server, spelled as an image reference has them once parsed
// (reference.Domain). kubelet looks credentials up by that name exactly, case
// included, and knows no Docker Hub alias but "docker.io" (short names and
// "index.docker.io/..." parse to it), so the pull Secret holds an entry for each
// of these names and validation accepts no other spelling for the images of a
// registry with credentials:
//
//   - the lowercase name, which is what almost every image spells;
//   - the server as written, when it has upper case letters;
//   - for Docker Hub, "docker.io" and "registry-1.docker.io" instead of the
//     lowercase name.
func CredentialHosts(server string) []string {
	hosts := []string{strings.ToLower(server)}
	if IsDockerHub(server) {
		hosts = []string{"docker.io", "registry-1.docker.io"}
	}
	if server != strings.ToLower(server) {
		hosts = append(hosts, server)
	}
	return hosts
}

// JobTolerations are the spec's tolerations plus one for its startup taint, which
// the pull Jobs must tolerate on the very nodes they prewarm.
func (s *Spec) JobTolerations() []corev1.Toleration {
	tols := s.Tolerations
	if s.Rollout.StartupTaint != "" {
		tols = append(slices.Clip(tols), corev1.Toleration{Key: s.Rollout.StartupTaint, Operator: corev1.TolerationOpExists})
	}
	return tols
}
