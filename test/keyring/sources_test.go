package keyring

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// login is what a user gives: kubelet must hand exactly this to the runtime.
type login struct {
	user, pass, email string
}

// logins are rotated over the table: colons, quotes, backslashes, unicode, spaces and
// "=" in passwords; robot-account user names (Harbor's robot$project+name).
var logins = []login{
	{user: "robot$ci", pass: "pa:ss:word"},
	{user: "robot$proj+ci", pass: `q"uo'te\back\\slash`, email: "ci@example.com"},
	{user: "üser-日本", pass: "pässwörd-🔑"},
	{user: "u", pass: "=trailing==", email: "ops+pull@example.org"},
	{user: "a.b@c", pass: " spaced pass "},
	{user: "robot$proj+ci", pass: `{"json":"in a password"}`, email: "ü@example.com"},
}

func basicAuthSource(name string, l login) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name)},
		Type:       corev1.SecretTypeBasicAuth,
		Data:       map[string][]byte{corev1.BasicAuthUsernameKey: []byte(l.user), corev1.BasicAuthPasswordKey: []byte(l.pass)},
	}
}

// entryStyles are the shapes of a user's own dockerconfigjson entry for a server:
// kubectl create secret docker-registry's, docker login's (auth only, URL key),
// hand-written ones (unpadded auth, a key in other letter case).
var entryStyles = []func(server string, l login) (key string, entry map[string]string){
	func(server string, l login) (string, map[string]string) { // kubectl create secret docker-registry
		return server, map[string]string{"username": l.user, "password": l.pass, "email": l.email, "auth": basicAuth(l)}
	},
	func(server string, l login) (string, map[string]string) { // docker login
		key := "https://" + server + "/v2/"
		if isHub(server) {
			key = "https://index.docker.io/v1/"
		}
		return key, map[string]string{"auth": basicAuth(l), "email": l.email}
	},
	func(server string, l login) (string, map[string]string) {
		return strings.ToUpper(server), map[string]string{"username": l.user, "password": l.pass, "email": l.email}
	},
	func(server string, l login) (string, map[string]string) {
		return server, map[string]string{"auth": strings.TrimRight(basicAuth(l), "="), "email": l.email}
	},
}

func basicAuth(l login) string {
	return base64.StdEncoding.EncodeToString([]byte(l.user + ":" + l.pass))
}

func isHub(server string) bool {
	switch strings.ToLower(server) {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return true
	}
	return false
}

// dockerConfigSource is a kubernetes.io/dockerconfigjson Secret with one entry per
// server, in the given style, plus an entry for a registry nobody asked about.
func dockerConfigSource(name string, style int, servers []string, l login) *corev1.Secret {
	auths := map[string]map[string]string{"unrelated.example.net": {"username": "x", "password": "y"}}
	for _, server := range servers {
		key, entry := entryStyles[style%len(entryStyles)](server, l)
		for k, v := range entry {
			if v == "" {
				delete(entry, k)
			}
		}
		auths[key] = entry
	}
	return dockerConfigSecret(name, auths)
}

func dockerConfigSecret(name string, auths map[string]map[string]string) *corev1.Secret {
	data, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		panic(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name)},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
}
