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
	"slices"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
)

// DockerHubKey is the conventional auths key for Docker Hub (kubectl create
// secret docker-registry writes it). kubelet serves "docker.io/..." images and
// short names from it; "registry-1.docker.io/..." needs a key of its own.
const DockerHubKey = "https://index.docker.io/v1/"

// Credential is what kubelet takes from a pull Secret for one registry
// server: username, password and email. Since Kubernetes 1.35 kubelet lets a
// pod use an image another pod pulled only if its Secret's credential hashes
// the same, and the hash covers exactly these three (KEP-2535), so they are
// carried over as the source Secret has them.
type Credential struct {
	Server, Username, Password string
	// Email is the source dockerconfigjson entry's, empty for basic-auth.
	Email string
	// IdentityToken and RegistryToken are a source dockerconfigjson entry's,
	// carried over as they are. kubelet does not read them from a pull
	// Secret; they are kept so that the run's Secret says what the source says.
	IdentityToken, RegistryToken string
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
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	Email         string `json:"email,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

type dockerConfig struct {
	Auths map[string]authEntry `json:"auths"`
}

// DockerConfigJSON renders creds as the data of a
// kubernetes.io/dockerconfigjson Secret. Each credential gets one entry per
// auths key of authKeys, all alike. The output is deterministic (map keys are
// sorted), so an unchanged Secret compares equal.
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
		case !utf8.ValidString(c.Username) || !utf8.ValidString(c.Password) || !utf8.ValidString(c.Email):
			// JSON would replace the invalid bytes: the entry would disagree with itself.
			return nil, fmt.Errorf("credential for %q: username, password and email must be valid UTF-8", c.Server)
		}
		entry := authEntry{
			Username:      c.Username,
			Password:      c.Password,
			Auth:          base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password)),
			Email:         c.Email,
			IdentityToken: c.IdentityToken,
			RegistryToken: c.RegistryToken,
		}
		for _, key := range authKeys(c.Server) {
			if _, dup := auths[key]; dup {
				return nil, fmt.Errorf("credential for %q: another credential for the same registry (%s)", c.Server, key)
			}
			auths[key] = entry
		}
	}
	return json.Marshal(dockerConfig{Auths: auths})
}

// authKeys returns the auths keys a pull Secret needs so that kubelet finds
// the credentials of server for every image spelling validation accepts for
// it: one per config.CredentialHosts name, Docker Hub's "docker.io" under
// DockerHubKey.
func authKeys(server string) []string {
	hosts := config.CredentialHosts(server)
	for i, h := range hosts {
		if h == "docker.io" {
			hosts[i] = DockerHubKey
		}
	}
	return hosts
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
		field := fmt.Sprintf("data[%q]", key)
		switch {
		case len(data[key]) == 0:
			return Credential{}, fmt.Errorf("%s is missing or empty", field)
		case !utf8.Valid(data[key]):
			return Credential{}, fmt.Errorf("%s is not valid UTF-8", field)
		}
	}
	c := Credential{
		Username: string(data[corev1.BasicAuthUsernameKey]),
		Password: string(data[corev1.BasicAuthPasswordKey]),
	}
	if strings.Contains(c.Username, ":") {
		return Credential{}, fmt.Errorf("data[%q] contains ':', which a registry login cannot carry (it splits user and password at the first ':')", corev1.BasicAuthUsernameKey)
	}
	return c, nil
}

// fromDockerConfigJSON reads the entry for server. Several entries may name it
// (any scheme, path or letter case): kubelet would offer all of them in an
// unspecified order, so they must hold the same credential; otherwise the
// error names them and the user keeps one.
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
	keys := matchKeys(server, cfg.Auths)
	if len(keys) == 0 {
		return Credential{}, fmt.Errorf("%s has no auths entry for registry %q", field, server)
	}
	var c Credential
	for i, key := range keys {
		got, err := entryCredential(fmt.Sprintf("%s.auths[%q]", field, key), cfg.Auths[key])
		switch {
		case err != nil:
			return Credential{}, err
		case i > 0 && got != c:
			return Credential{}, fmt.Errorf("%s.auths[%q] and [%q] both name registry %q with different credentials; keep one", field, keys[0], key, server)
		}
		c = got
	}
	return c, nil
}

// entryCredential reads an auths entry as kubelet does
// (credentialprovider.DockerConfigEntry): a non-empty auth replaces username
// and password. When both are given and disagree, the entry is refused: kubelet
// would use auth, a person reading the Secret the other pair.
func entryCredential(field string, e authEntry) (Credential, error) {
	c := Credential{Username: e.Username, Password: e.Password, Email: e.Email, IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken}
	if e.Auth != "" {
		user, pass, err := decodeAuth(e.Auth)
		if err != nil {
			return Credential{}, fmt.Errorf("%s.auth %w", field, err)
		}
		if (e.Username != "" && e.Username != user) || (e.Password != "" && e.Password != pass) {
			return Credential{}, fmt.Errorf("%s: auth and username/password disagree (kubelet uses auth); make them agree or keep only one", field)
		}
		c.Username, c.Password = user, pass
	}
	tokens := ""
	if e.IdentityToken != "" || e.RegistryToken != "" {
		tokens = "; kubelet takes only username and password from a pull Secret, not identitytoken or registrytoken"
	}
	switch {
	case c.Username == "":
		return Credential{}, fmt.Errorf("%s has no username (neither username nor auth)%s", field, tokens)
	case c.Password == "":
		return Credential{}, fmt.Errorf("%s has no password (neither password nor auth)%s", field, tokens)
	case strings.Contains(c.Username, ":"):
		return Credential{}, fmt.Errorf("%s.username contains ':', which a registry login cannot carry (it splits user and password at the first ':')", field)
	case !utf8.ValidString(c.Username) || !utf8.ValidString(c.Password):
		return Credential{}, fmt.Errorf("%s.auth holds a username or password that is not valid UTF-8", field)
	}
	return c, nil
}

// decodeAuth decodes auth as kubelet does: base64 of "username:password",
// padded when it ends with "=", unpadded otherwise. Decoder errors are
// dropped: they may locate bytes of the secret.
func decodeAuth(auth string) (user, pass string, err error) {
	enc := base64.RawStdEncoding
	if strings.HasSuffix(strings.TrimSpace(auth), "=") {
		enc = base64.StdEncoding
	}
	decoded, err := enc.DecodeString(auth)
	if err != nil {
		return "", "", errors.New("is not valid base64")
	}
	user, pass, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", errors.New(`is not base64 of "username:password"`)
	}
	return user, pass, nil
}

// matchKeys returns the auths keys, sorted, whose host (without scheme and
// path, like "https://harbor.x/v2/") is the registry of server.
func matchKeys(server string, auths map[string]authEntry) []string {
	want := config.CanonicalHost(keyHost(server))
	var keys []string
	for key := range auths {
		if config.CanonicalHost(keyHost(key)) == want {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
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
