package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Problem is one thing wrong with a spec, at a path such as "images[3]" or
// "rollout.pullTimeout".
type Problem struct {
	Path    string
	Message string
}

// ValidationError lists every problem of a spec, so a user fixes them all in
// one round trip (the validating webhook returns its message verbatim).
type ValidationError struct {
	Problems []Problem
}

// maxRenderedProblems bounds Error(): a pathological spec can have
// thousands of problems, and the message travels in an admission response
// and an Event. Problems still holds all of them.
const maxRenderedProblems = 100

// Error renders every problem on one line: "invalid prewarm spec: images[3]:
// ...; rollout.pullTimeout: ...".
func (e *ValidationError) Error() string {
	parts := make([]string, 0, min(len(e.Problems), maxRenderedProblems)+1)
	for _, p := range e.Problems[:min(len(e.Problems), maxRenderedProblems)] {
		msg := p.Message
		if p.Path != "" {
			msg = p.Path + ": " + msg
		}
		// One line, whatever a library message contains.
		parts = append(parts, strings.ReplaceAll(msg, "\n", " "))
	}
	if more := len(e.Problems) - maxRenderedProblems; more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more problems", more))
	}
	return "invalid prewarm spec: " + strings.Join(parts, "; ")
}

func newValidationError(path, message string) *ValidationError {
	return &ValidationError{Problems: []Problem{{Path: path, Message: message}}}
}

// problems collects Problems; Validate reports all of them, never only the first.
type problems []Problem

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) addAll(path, prefix string, msgs []string) {
	for _, m := range msgs {
		p.add(path, "%s%s", prefix, m)
	}
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Problems: p}
}

// Validate checks a defaulted spec and returns a *ValidationError listing
// every problem, or nil.
func (s *Spec) Validate() error {
	var p problems
	listed := validateRegistries(s.Registries, s.PullSecret != "", &p)
	validateImages(s.Images, s.Artifacts, listed, &p)
	validateNodeSelector(s.NodeSelector, &p)
	validateTolerations(s.Tolerations, &p)
	validateRollout(s.Rollout, &p)
	validateMethod(s, &p)
	validatePullSecret(s, &p)
	return p.err()
}

// validatePullSecret: a task's pre-made Secret and credentialsSecrets would be two
// sources of credentials for one run; only one is allowed.
func validatePullSecret(s *Spec, p *problems) {
	if s.PullSecret == "" {
		return
	}
	p.addAll("pullSecret", "not a valid Secret name: ", content.IsDNS1123Subdomain(s.PullSecret))
	for i, r := range s.Registries {
		if r.CredentialsSecret != "" {
			p.add(fmt.Sprintf("registries[%d].credentialsSecret", i), "must be empty when pullSecret is set")
		}
	}
}

// listedRegistry is a valid registries entry, by canonical host, for the images check.
type listedRegistry struct {
	index  int
	server string
	// credentials: the run's pull Secret holds credentials for it (its own
	// credentialsSecret, or a task's pullSecret).
	credentials bool
}

// validateRegistries returns the valid servers by canonical host, for the
// images check. taskSecret: the spec's pullSecret holds credentials for every
// listed registry.
func validateRegistries(regs []Registry, taskSecret bool, p *problems) map[string]listedRegistry {
	if len(regs) > MaxRegistries {
		p.add("registries", "at most %d registries are allowed, got %d", MaxRegistries, len(regs))
	}
	listed := make(map[string]listedRegistry, len(regs))
	for i, r := range regs {
		path := fmt.Sprintf("registries[%d]", i)
		host := CanonicalHost(r.Server)
		prev, dup := listed[host]
		credentials := taskSecret || r.CredentialsSecret != ""
		switch {
		case r.Server == "":
			p.add(path+".server", "is required")
		case !validServer(r.Server):
			p.add(path+".server", "%s is not a valid registry host[:port] (no scheme, no path), e.g. \"harbor.example.com\" or \"registry.local:5000\"", quote(r.Server))
		case dup:
			p.add(path+".server", "%s is a duplicate of registries[%d]", quote(r.Server), prev.index)
		default:
			listed[host] = listedRegistry{index: i, server: r.Server, credentials: credentials}
			if credentials && isBracketedIPv6(r.Server) {
				// kubelet matches credentials with filepath.Match on the host, where
				// "[::1]" is a character class; with a port it compares "::1".
				p.add(path+".server", "%s is an IPv6 address without a port: kubelet cannot match pull credentials to it; spell it with its port, here and in the images, e.g. %s", quote(r.Server), quote(r.Server+":443"))
			}
		}
		if r.CredentialsSecret != "" {
			p.addAll(path+".credentialsSecret", "not a valid Secret name: ", content.IsDNS1123Subdomain(r.CredentialsSecret))
		}
		if r.MaxConcurrentPulls < 0 {
			p.add(path+".maxConcurrentPulls", "must be 0 (no cap) or more, got %d", r.MaxConcurrentPulls)
		}
	}
	return listed
}

// validServer accepts exactly what an image reference can carry as its
// domain, so a listed server can always match some image.
func validServer(server string) bool {
	named, err := reference.ParseNormalizedNamed(server + "/x")
	return err == nil && CanonicalHost(reference.Domain(named)) == CanonicalHost(server)
}

func isBracketedIPv6(host string) bool {
	return strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
}

func validateImages(images, artifacts []string, listed map[string]listedRegistry, p *problems) {
	if len(images)+len(artifacts) == 0 {
		p.add("images", "at least one image is required (or an artifact in artifacts)")
		return
	}
	if n := len(images) + len(artifacts); n > MaxImages {
		p.add("images", "at most %d images and artifacts together are allowed, got %d", MaxImages, n)
	}
	seen := make(map[string]string, len(images)+len(artifacts))
	validateReferences("images", images, listed, seen, p)
	validateReferences("artifacts", artifacts, listed, seen, p)
}

// validateReferences checks one list of references (images or artifacts); seen holds
// every reference checked so far by normalized name, with its path.
func validateReferences(field string, refs []string, listed map[string]listedRegistry, seen map[string]string, p *problems) {
	hub, hubCredentials := listed[CanonicalHost("docker.io")]
	hubCredentials = hubCredentials && hub.credentials
	for i, image := range refs {
		path := fmt.Sprintf("%s[%d]", field, i)
		named, err := reference.ParseNormalizedNamed(image)
		if err != nil {
			p.add(path, "%s is not a valid image reference: %v", quote(image), err)
			continue
		}
		// "nginx" and "docker.io/library/nginx:latest" pull the same thing.
		key := reference.TagNameOnly(named).String()
		if other, dup := seen[key]; dup {
			p.add(path, "%s is a duplicate of %s", quote(image), other)
			continue
		}
		seen[key] = path
		host := reference.Domain(named)
		reg, ok := listed[CanonicalHost(host)]
		switch {
		case !ok && !IsKnownPublicRegistry(host):
			p.add(path, "registry %s is not listed in registries and is not a known public registry", quote(host))
		case ok && reg.credentials:
			if hosts := CredentialHosts(reg.server); !slices.Contains(hosts, host) {
				p.add(path, "registry %s would get no credentials: kubelet looks them up by the registry name exactly as the image spells it, case included; spell it %s", quote(host), quoteAll(hosts))
			}
		case hubCredentials && !strings.ContainsAny(host, ".:"):
			// credentialprovider.isDefaultRegistryMatch: a name without "." or ":"
			// that no auths entry matches gets Docker Hub's credentials.
			p.add(path, "registry %s has no credentials, and kubelet would send it the Docker Hub credentials of registries[%d] (it takes a registry name without \".\" or \":\" for Docker Hub); give it a credentialsSecret or prewarm it in a spec without Docker Hub credentials", quote(host), hub.index)
		}
	}
}

func validateNodeSelector(sel map[string]string, p *problems) {
	// Sorted, so the message is the same on every call.
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		path := fmt.Sprintf("nodeSelector[%s]", quote(k))
		p.addAll(path, "invalid label key: ", content.IsLabelKey(k))
		p.addAll(path, fmt.Sprintf("invalid label value %s: ", quote(sel[k])), content.IsLabelValue(sel[k]))
	}
}

func validateTolerations(tols []corev1.Toleration, p *problems) {
	for i, t := range tols {
		path := fmt.Sprintf("tolerations[%d]", i)
		if t.Key != "" {
			p.addAll(path+".key", "invalid taint key: ", content.IsLabelKey(t.Key))
		}
		switch t.Operator {
		case corev1.TolerationOpExists:
			if t.Value != "" {
				p.add(path+".value", "must be empty when operator is Exists")
			}
		case corev1.TolerationOpEqual, "": // Kubernetes defaults "" to Equal
			if t.Key == "" {
				p.add(path+".operator", "must be Exists when key is empty (an empty key with Exists tolerates every taint)")
			}
			p.addAll(path+".value", "invalid taint value: ", content.IsLabelValue(t.Value))
		default:
			p.add(path+".operator", "%s is not supported, must be Exists or Equal", quote(string(t.Operator)))
		}
		switch t.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			p.add(path+".effect", "%s is not a taint effect, must be NoSchedule, PreferNoSchedule, NoExecute or empty (every effect)", quote(string(t.Effect)))
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			p.add(path+".tolerationSeconds", "is only allowed with effect NoExecute")
		}
	}
}

func validateRollout(r Rollout, p *problems) {
	mcn := r.MaxConcurrentNodes
	switch {
	case mcn.Type == intstr.Int && mcn.IntVal < 1:
		p.add("rollout.maxConcurrentNodes", "must be at least 1, got %d", mcn.IntVal)
	case mcn.Type == intstr.String:
		if _, ok := parsePercent(mcn.StrVal); !ok {
			p.add("rollout.maxConcurrentNodes", "%s must be a positive integer or a percentage from 1%% to 100%%, e.g. 10 or \"10%%\"", quote(mcn.StrVal))
		}
	case mcn.Type != intstr.Int:
		p.add("rollout.maxConcurrentNodes", "must be a positive integer or a percentage")
	}
	if d := r.PullTimeout.Duration; d < MinPullTimeout || d > MaxPullTimeout {
		p.add("rollout.pullTimeout", "must be between %s and %s, got %s", MinPullTimeout, MaxPullTimeout, d)
	}
	switch {
	case r.Retries == nil:
		p.add("rollout.retries", "is not set (defaults were not applied)")
	case *r.Retries < 0 || *r.Retries > MaxRetries:
		p.add("rollout.retries", "must be between 0 and %d, got %d", MaxRetries, *r.Retries)
	}
	switch {
	case r.KeepFailedJobs == nil:
		p.add("rollout.keepFailedJobs", "is not set (defaults were not applied)")
	case r.KeepFailedJobs.Duration < 0 || r.KeepFailedJobs.Duration > MaxKeepFailedJobs:
		p.add("rollout.keepFailedJobs", "must be between 0s and %s, got %s", MaxKeepFailedJobs, r.KeepFailedJobs.Duration)
	}
	validateStartupTaint(r, p)
}

// validateStartupTaint: a taint key is a qualified name, like a label key.
func validateStartupTaint(r Rollout, p *problems) {
	if r.StartupTaint == "" {
		if r.StartupTaintTimeout != nil || r.KeepTaintOnFailure {
			p.add("rollout.startupTaint", "is empty, but rollout.startupTaintTimeout or rollout.keepTaintOnFailure is set: name the taint key they apply to")
		}
		return
	}
	p.addAll("rollout.startupTaint", quote(r.StartupTaint)+" is not a valid taint key: ", validation.IsQualifiedName(r.StartupTaint))
	if d := r.TaintTimeout(); d < MinStartupTaintTimeout || d > MaxStartupTaintTimeout {
		p.add("rollout.startupTaintTimeout", "must be between %s and %s, got %s", MinStartupTaintTimeout, MaxStartupTaintTimeout, d)
	}
}

// validateMethod: artifacts cannot run, so init containers cannot prewarm them.
func validateMethod(s *Spec, p *problems) {
	switch s.Rollout.PullMethod() {
	case MethodAuto, MethodImageVolume:
	case MethodInitContainers:
		if len(s.Artifacts) > 0 {
			p.add("artifacts", "rollout.method %s cannot prewarm artifacts: nothing in an artifact can run; use %s or %s", MethodInitContainers, MethodImageVolume, MethodAuto)
		}
	default:
		p.add("rollout.method", "%s is not a method: want %s, %s or %s", quote(s.Rollout.Method), MethodAuto, MethodImageVolume, MethodInitContainers)
	}
}

// parsePercent accepts "N%" with N in 1..100, digits only (no sign, no space).
func parsePercent(s string) (int, bool) {
	digits, ok := strings.CutSuffix(s, "%")
	if !ok || digits == "" || len(digits) > 3 || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || n > 100 {
		return 0, false
	}
	return n, true
}

// decodeError turns a decoding error of data into a ValidationError with a
// readable message: the field path when the decoder knows it, without the
// wrappers' prefixes.
func decodeError(err error, data []byte) *ValidationError {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Type != nil {
		msg := fmt.Sprintf("must be %s, got %s", typeName(typeErr.Type.String()), typeErr.Value)
		if typeErr.Field == "" {
			msg = "the spec " + msg
		}
		return newValidationError(typeErr.Field, msg)
	}
	msg := err.Error()
	for _, prefix := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	// YAML errors span lines; the message must be one line.
	msg = strings.Join(strings.Fields(msg), " ")
	if strings.HasPrefix(msg, "time: ") {
		// metav1.Duration reports no field: find the duration that does not parse.
		return newValidationError(badDurationPath(data), "must be a Go duration such as 15m or 1h30m: "+msg)
	}
	return newValidationError("", msg)
}

// badDurationPath names the rollout duration of data that time.ParseDuration
// refuses; the spec's durations all live under rollout.
func badDurationPath(data []byte) string {
	var raw struct {
		Rollout map[string]any `json:"rollout"`
	}
	_ = yaml.Unmarshal(data, &raw)
	for _, field := range []string{"keepFailedJobs", "startupTaintTimeout"} {
		if d, ok := raw.Rollout[field].(string); ok {
			if _, err := time.ParseDuration(d); err != nil {
				return "rollout." + field
			}
		}
	}
	return "rollout.pullTimeout"
}

// typeName names Go types the way a YAML author thinks of them.
func typeName(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config."), strings.HasPrefix(goType, "v1."):
		return "a mapping"
	}
	return "a " + goType
}

// quoteAll quotes values for a message: "a", "b" or "c".
func quoteAll(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = quote(v)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// quote quotes a user value for a message, cut short so one huge value
// cannot swamp the message.
func quote(s string) string {
	const maxLen = 100
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}
