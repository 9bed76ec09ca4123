// Package pullsecret builds the .dockerconfigjson of a run's ephemeral pull
// Secret and reads registry credentials from the Secrets a spec references.
//
// Credentials must never reach a log line, an Event, a status or an error:
// Credential redacts itself when formatted, and no error here includes a
// secret value or a decoder message that could quote one.
package pullsecret

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
)

// DockerHubKey is the auths key kubelet matches Docker Hub images against;
// credentials stored under "docker.io" would silently not be used.
const DockerHubKey = "https://index.docker.io/v1/"

// Credential is a username and password for one registry server.
type Credential struct {
	Server, Username, Password string
}

// String redacts the password, so an accidental %v or %+v never leaks it.
func (c Credential) String() string {
	return fmt.Sprintf("server=%s user=%s password=<redacted>", c.Server, c.Username)
}

// GoString redacts the password for %#v too.
func (c Credential) GoString() string {
	return "pullsecret.Credential{" + c.String() + "}"
}

// MarshalJSON redacts the password: DockerConfigJSON is the only encoding
// meant to carry it.
func (c Credential) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"server": c.Server, "username": c.Username, "password": "<redacted>"})
}

// authEntry is one entry of .dockerconfigjson's "auths".
type authEntry struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

type dockerConfig struct {
	Auths map[string]authEntry `json:"auths"`
}

// DockerConfigJSON renders creds as the data of a
// kubernetes.io/dockerconfigjson Secret. The output is deterministic (map
// keys are sorted), so an unchanged Secret compares equal.
func DockerConfigJSON(creds []Credential) ([]byte, error) {
	auths := make(map[string]authEntry, len(creds))
	for i, c := range creds {
		switch {
		case c.Server == "":
			return nil, fmt.Errorf("credential %d: server is empty", i)
		case c.Username == "":
			return nil, fmt.Errorf("credential for %q: username is empty", c.Server)
		case strings.Contains(c.Username, ":"):
			// kubelet splits auth at the first colon: the user would be cut.
			return nil, fmt.Errorf("credential for %q: username must not contain ':'", c.Server)
		}
		key := authKey(c.Server)
		if _, dup := auths[key]; dup {
			return nil, fmt.Errorf("credential for %q: another credential for the same registry (%s)", c.Server, key)
		}
		auths[key] = authEntry{
			Username: c.Username,
			Password: c.Password,
			Auth:     base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password)),
		}
	}
	return json.Marshal(dockerConfig{Auths: auths})
}

func authKey(server string) string {
	if config.IsDockerHub(server) {
		return DockerHubKey
	}
	return server
}

// FromSecret reads the credential for server from a kubernetes.io/basic-auth
// or kubernetes.io/dockerconfigjson Secret. Errors name the Secret and the
// field, never a value.
func FromSecret(server string, s *corev1.Secret) (Credential, error) {
	if s == nil {
		return Credential{}, errors.New("no Secret")
	}
	name := s.Name
	if s.Namespace != "" {
		name = s.Namespace + "/" + s.Name
	}
	if server == "" {
		return Credential{}, fmt.Errorf("secret %q: no registry server to read credentials for", name)
	}
	var c Credential
	var err error
	switch s.Type {
	case corev1.SecretTypeBasicAuth:
		c, err = fromBasicAuth(s.Data)
	case corev1.SecretTypeDockerConfigJson:
		c, err = fromDockerConfigJSON(server, s.Data)
	default:
		return Credential{}, fmt.Errorf("secret %q has type %q, want %s or %s", name, s.Type, corev1.SecretTypeBasicAuth, corev1.SecretTypeDockerConfigJson)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("secret %q: %w", name, err)
	}
	c.Server = server
	return c, nil
}

func fromBasicAuth(data map[string][]byte) (Credential, error) {
	for _, key := range []string{corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey} {
		if len(data[key]) == 0 {
			return Credential{}, fmt.Errorf("data[%q] is missing or empty", key)
		}
	}
	return Credential{
		Username: string(data[corev1.BasicAuthUsernameKey]),
		Password: string(data[corev1.BasicAuthPasswordKey]),
	}, nil
}

func fromDockerConfigJSON(server string, data map[string][]byte) (Credential, error) {
	field := fmt.Sprintf("data[%q]", corev1.DockerConfigJsonKey)
	raw, ok := data[corev1.DockerConfigJsonKey]
	if !ok {
		return Credential{}, fmt.Errorf("%s is missing", field)
	}
	var cfg dockerConfig
	// The decoder's error is dropped on purpose: a syntax error quotes the
	// offending input, which may be part of a password.
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return Credential{}, fmt.Errorf("%s is not valid docker config JSON", field)
	}
	key, ok := matchKey(server, cfg.Auths)
	if !ok {
		return Credential{}, fmt.Errorf("%s has no auths entry for registry %q", field, server)
	}
	field = fmt.Sprintf("%s.auths[%q]", field, key)
	return entryCredential(field, cfg.Auths[key])
}

// entryCredential prefers the explicit username and password, falling back
// to "auth" (base64 of "username:password") when either is absent.
func entryCredential(field string, e authEntry) (Credential, error) {
	c := Credential{Username: e.Username, Password: e.Password}
	if (c.Username == "" || c.Password == "") && e.Auth != "" {
		// Decoder errors are dropped: they may locate bytes of the secret.
		decoded, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return Credential{}, fmt.Errorf("%s.auth is not valid base64", field)
		}
		user, pass, ok := strings.Cut(string(decoded), ":")
		if !ok {
			return Credential{}, fmt.Errorf("%s.auth is not base64 of \"username:password\"", field)
		}
		c = Credential{Username: user, Password: pass}
	}
	switch {
	case c.Username == "":
		return Credential{}, fmt.Errorf("%s has no username (neither username nor auth)", field)
	case c.Password == "":
		return Credential{}, fmt.Errorf("%s has no password (neither password nor auth)", field)
	}
	return c, nil
}

// matchKey finds the auths key for server: the exact key first, then a key
// whose host (without scheme and path, like "https://harbor.x/v2/") is the
// same registry. Keys are tried in sorted order, so the choice is stable.
func matchKey(server string, auths map[string]authEntry) (string, bool) {
	if _, ok := auths[server]; ok {
		return server, true
	}
	want := config.CanonicalHost(keyHost(server))
	var found string
	matched := false
	for key := range auths {
		if config.CanonicalHost(keyHost(key)) == want && (!matched || key < found) {
			found, matched = key, true
		}
	}
	return found, matched
}

// keyHost strips an optional scheme and any path from an auths key or a
// server given as a URL.
func keyHost(key string) string {
	for _, scheme := range []string{"https://", "http://"} {
		key = strings.TrimPrefix(key, scheme)
	}
	host, _, _ := strings.Cut(key, "/")
	return host
}
