package tasks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/image-prewarm/image-prewarm/pkg/config"
)

// placeholderID stands in for the task ID while validating: the pull Secret's name
// must be valid whatever ID is drawn later, and every ID has this length and alphabet.
const placeholderID = "aaaaaaaaaa"

// validate checks the credential rules, then the spec the request becomes, and
// reports every problem, each under the request field a caller knows.
func (r *Request) validate() error {
	var ps []Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	r.validateCredential(add)
	if r.BatchSize < 1 || r.BatchSize > MaxBatchSize {
		add("batchSize", "must be from 1 to %d, got %d", MaxBatchSize, r.BatchSize)
	}
	own := map[string]bool{}
	r.checkImageRegistries(func(field, msg string) { add(field, "%s", msg) }, func(field string) { own[field] = true })
	for _, p := range ps {
		own[p.Field] = true
	}
	for _, p := range r.specProblems() {
		// The request's own checks say it better, in the caller's terms.
		if field := requestField(p.Path); !own[field] {
			add(field, "%s", p.Message)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return problemsError(ps)
}

// validateCredential: registry needs username and password; username or password need
// registry. An empty string counts as not given.
func (r *Request) validateCredential(add func(field, format string, args ...any)) {
	c := r.Credential
	switch {
	case c.Server == "" && (c.Username != "" || c.Password != ""):
		add("registry", "is required when username or password is given: the registry host the credentials are for, e.g. \"harbor.example.com\"")
		return
	case c.Server == "":
		return
	}
	if !validServer(c.Server) {
		add("registry", "%s is not a registry host[:port] (no scheme, no path), e.g. \"harbor.example.com\" or \"registry.local:5000\"", quote(c.Server))
	}
	if c.Username == "" {
		add("username", "is required when registry is given")
	}
	if c.Password == "" {
		add("password", "is required when registry is given")
	}
	if strings.Contains(c.Username, ":") {
		add("username", "must not contain ':' (the registry login splits user and password at the first ':')")
	}
	if len(c.Username) > maxUsernameBytes {
		add("username", "is longer than %d bytes", maxUsernameBytes)
	}
	if len(c.Password) > maxPasswordBytes {
		add("password", "is longer than %d bytes", maxPasswordBytes)
	}
}

// checkImageRegistries reports images whose registry the task cannot pull from, in
// the API's terms (the spec's message speaks of a registries list the caller never
// sees), and a registry that serves none of the images: its credentials would go
// unused, which is almost always a typo such as a port too many. Images of an invalid
// registry are covered by the registry's own problem, not repeated.
func (r *Request) checkImageRegistries(report func(field, msg string), cover func(field string)) {
	given := r.HasCredentials()
	valid := given && validServer(r.Credential.Server)
	want := config.CanonicalHost(looseHost(r.Credential.Server))
	used := false
	var unlisted []Problem
	refs, fields := r.references()
	for i, image := range refs {
		host, err := config.RegistryHost(image)
		if err != nil {
			continue // the spec reports the invalid reference
		}
		field := fields[i]
		switch {
		case given && config.CanonicalHost(host) == want:
			used = true
			if !valid {
				cover(field)
			}
		case !config.IsKnownPublicRegistry(host):
			unlisted = append(unlisted, Problem{Field: field,
				Message: fmt.Sprintf("%s is from registry %s, which is not a known public registry: give registry, username and password for it", quote(image), quote(host))})
		}
	}
	// The registry first: when it is mistyped, the images' problems follow from it.
	if valid && !used && len(refs) > 0 {
		report("registry", fmt.Sprintf("%s serves none of the images; it must be the registry host the images name, e.g. \"harbor.example.com\" for harbor.example.com/team/app:1", quote(r.Credential.Server)))
	}
	for _, p := range unlisted {
		report(p.Field, p.Message)
	}
}

// looseHost is the host a mistyped registry most likely means: without a scheme and a
// path ("https://harbor.example.com/v2/" → "harbor.example.com").
func looseHost(server string) string {
	for _, scheme := range []string{"https://", "http://"} {
		server = strings.TrimPrefix(server, scheme)
	}
	host, _, _ := strings.Cut(server, "/")
	return host
}

// validServer accepts what an image reference can carry as its registry, as the spec
// does, so a valid registry can always match the images.
func validServer(server string) bool {
	host, err := config.RegistryHost(server + "/x")
	return err == nil && config.CanonicalHost(host) == config.CanonicalHost(server)
}

// specProblems validates the spec the request becomes, defaulted as the controller
// will see it.
func (r *Request) specProblems() []config.Problem {
	s := r.Spec(placeholderID)
	s.Default()
	var verr *config.ValidationError
	if err := s.Validate(); errors.As(err, &verr) {
		return verr.Problems
	} else if err != nil {
		return []config.Problem{{Message: err.Error()}}
	}
	return nil
}

// requestField maps a spec path to the request field it came from.
func requestField(path string) string {
	switch {
	case strings.HasPrefix(path, "registries"):
		return "registry"
	case path == "rollout.maxConcurrentNodes":
		return "batchSize"
	case strings.HasPrefix(path, "images"), strings.HasPrefix(path, "nodeSelector"):
		return path
	}
	// Every other spec field is set by the API, not the caller: a problem there is
	// this package's bug, reported against the body rather than hidden.
	return "body"
}

// references are the images and then the artifacts, with the field naming each.
func (r *Request) references() (refs, fields []string) {
	for i, img := range r.Images {
		refs, fields = append(refs, img), append(fields, fmt.Sprintf("images[%d]", i))
	}
	for i, a := range r.Artifacts {
		refs, fields = append(refs, a), append(fields, fmt.Sprintf("artifacts[%d]", i))
	}
	return refs, fields
}
