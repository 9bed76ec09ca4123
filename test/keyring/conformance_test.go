package keyring

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/tasks"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// spelling is a registry server or an image as a user may write it, with the registry
// it means, named by hand (not by our code), so the test knows whose credentials an
// image must get.
type spelling struct {
	text, registry string
}

var servers = []spelling{
	{"harbor.example.com", "harbor"},
	{"Harbor.Example.com", "harbor"},
	{"HARBOR.EXAMPLE.COM", "harbor"},
	{"registry.local:5000", "local:5000"},
	{"Registry.Local:5000", "local:5000"},
	{"10.0.0.7:5000", "10.0.0.7:5000"},
	{"localhost", "localhost"},
	{"localhost:5000", "localhost:5000"},
	{"LOCALHOST:5000", "localhost:5000"},
	{"[::1]:5000", "[::1]:5000"},
	{"[::1]", "[::1]"},
	{"[fe80::A]:443", "[fe80::a]:443"},
	{"docker.io", "hub"},
	{"index.docker.io", "hub"},
	{"registry-1.docker.io", "hub"},
	{"Docker.io", "hub"},
	// Docker Hub's old API name: our config does not take it for Docker Hub, so it
	// is a registry of its own, and its images must name it.
	{"registry.hub.docker.com", "registry.hub.docker.com"},
}

var images = []spelling{
	{"harbor.example.com/team/app:1.0", "harbor"},
	{"harbor.example.com/team/app", "harbor"},
	{"harbor.example.com/team/app@" + digest, "harbor"},
	{"Harbor.Example.com/team/app:1.0", "harbor"},
	{"HARBOR.EXAMPLE.COM/team/app", "harbor"},
	{"harbor.example.com:443/team/app:1", "harbor:443"},
	{"registry.local:5000/app:1", "local:5000"},
	{"Registry.Local:5000/app@" + digest, "local:5000"},
	{"registry.local/app:1", "local"},
	{"10.0.0.7:5000/app", "10.0.0.7:5000"},
	{"localhost/app:1", "localhost"},
	{"localhost:5000/app", "localhost:5000"},
	{"LOCALHOST:5000/app:1", "localhost:5000"},
	{"localhost:5001/app", "localhost:5001"},
	{"[::1]:5000/app:1", "[::1]:5000"},
	{"[::1]/app:1", "[::1]"},
	{"[fe80::A]:443/app", "[fe80::a]:443"},
	{"[fe80::a]:443/app", "[fe80::a]:443"},
	{"nginx", "hub"},
	{"nginx:1.27", "hub"},
	{"library/nginx@" + digest, "hub"},
	{"myorg/app:1", "hub"},
	{"docker.io/library/nginx", "hub"},
	{"docker.io/nginx:1.27", "hub"},
	{"index.docker.io/library/nginx:1", "hub"},
	{"index.docker.io/myorg/app", "hub"},
	{"registry-1.docker.io/library/nginx", "hub"},
	{"registry-1.docker.io/myorg/app:1", "hub"},
	{"Docker.io/nginx", "hub"},
	{"INDEX.DOCKER.IO/library/nginx", "hub"},
	{"registry.hub.docker.com/library/nginx", "registry.hub.docker.com"},
	{"ghcr.io/org/app:1", "ghcr"},
}

// fields are the fields a refusal names: in the spec and in the task request.
type fields struct{ spec, task string }

var (
	imageField  = fields{"images[0]", "images[0]"}
	serverField = fields{"registries[0].server", "registry"}
)

// refused lists every (server, image) pair of the same registry that validation
// refuses, because kubelet would pull the image without the credentials; every
// other pair of one registry must be accepted. Pairs of different registries are
// refused or not as validation sees fit (an image of an unlisted private registry),
// but when accepted the image must get no credentials.
var refused = map[[2]string]fields{
	{"harbor.example.com", "Harbor.Example.com/team/app:1.0"}:    imageField,
	{"harbor.example.com", "HARBOR.EXAMPLE.COM/team/app"}:        imageField,
	{"Harbor.Example.com", "HARBOR.EXAMPLE.COM/team/app"}:        imageField,
	{"HARBOR.EXAMPLE.COM", "Harbor.Example.com/team/app:1.0"}:    imageField,
	{"registry.local:5000", "Registry.Local:5000/app@" + digest}: imageField,
	{"localhost:5000", "LOCALHOST:5000/app:1"}:                   imageField,
	{"[::1]", "[::1]/app:1"}:                                     serverField,
	{"docker.io", "Docker.io/nginx"}:                             imageField,
	{"index.docker.io", "Docker.io/nginx"}:                       imageField,
	{"registry-1.docker.io", "Docker.io/nginx"}:                  imageField,
	{"docker.io", "INDEX.DOCKER.IO/library/nginx"}:               imageField,
	{"index.docker.io", "INDEX.DOCKER.IO/library/nginx"}:         imageField,
	{"registry-1.docker.io", "INDEX.DOCKER.IO/library/nginx"}:    imageField,
	{"Docker.io", "INDEX.DOCKER.IO/library/nginx"}:               imageField,
}

// pairCase is one server × image pair through one path: its pull Secret, or what the
// refusal named.
type pairCase struct {
	path           string // "spec/basic-auth", "spec/dockerconfigjson", "task"
	server, image  spelling
	login          login // what the user gave
	wantEmail      string
	secret         *corev1.Secret
	refusedFields  []string // the fields the refusal names; nil when accepted
	refusalMessage string
}

func (c *pairCase) String() string {
	return fmt.Sprintf("%s server %q image %q", c.path, c.server.text, c.image.text)
}

// TestKeyringConformance: for every server × image spelling, through the controller
// (basic-auth and dockerconfigjson credentials Secrets) and the task API, either
// validation refuses it naming a field, or kubelet's keyring gives the image exactly
// the user's credentials (none for an image of another registry).
func TestKeyringConformance(t *testing.T) {
	cases := runPairs(t)
	accepted, withCredentials := 0, 0
	for _, c := range cases {
		if c.refusedFields != nil {
			checkRefusal(t, c)
			continue
		}
		accepted++
		if c.server.registry == c.image.registry {
			withCredentials++
		}
		if want, mustRefuse := refused[[2]string{c.server.text, c.image.text}]; mustRefuse {
			t.Errorf("%s: accepted, but must be refused naming %+v", c, want)
			continue
		}
		checkKubelet(t, c, c.server.registry == c.image.registry)
	}
	t.Logf("%d cases (%d servers × %d images × 3 paths): %d accepted, %d of them with credentials; %d refused",
		len(cases), len(servers), len(images), accepted, withCredentials, len(cases)-accepted)
	if withCredentials < len(cases)/10 {
		t.Errorf("only %d cases pull with credentials: the table has lost its point", withCredentials)
	}
}

// runPairs sends every pair through the three paths: a spec with a basic-auth and one
// with a dockerconfigjson credentials Secret (validated as the controller and the
// webhook do; the valid ones run by the controller), and a task request.
func runPairs(t *testing.T) []*pairCase {
	var cases []*pairCase
	var specCases []specCase
	bySpec := map[string]*pairCase{}
	api := newTaskAPI()
	for i, server := range servers {
		for j, image := range images {
			l := logins[(i*len(images)+j)%len(logins)]
			for _, kind := range []string{"basic-auth", "dockerconfigjson"} {
				c := &pairCase{path: "spec/" + kind, server: server, image: image, login: l}
				name := fmt.Sprintf("%s-%d-%d", kind, i, j)
				source := basicAuthSource(name+"-creds", l)
				if kind == "dockerconfigjson" {
					source = dockerConfigSource(name+"-creds", i+j, []string{server.text}, l)
					c.wantEmail = l.email
				}
				sc := specCase{name: name, sources: []*corev1.Secret{source},
					spec: specYAML([]config.Registry{{Server: server.text, CredentialsSecret: source.Name}}, image.text)}
				if _, err := config.FromConfigMap(sc.configMap()); err != nil {
					c.refusedFields, c.refusalMessage = specRefusal(t, err)
				} else {
					specCases = append(specCases, sc)
					bySpec[name] = c
				}
				cases = append(cases, c)
			}
			c := &pairCase{path: "task", server: server, image: image, login: l}
			secret, refusal := api.create(t, taskRequest{Images: []string{image.text}, Registry: server.text, Username: l.user, Password: l.pass})
			c.secret = secret
			if refusal != nil {
				c.refusedFields, c.refusalMessage = taskRefusal(t, refusal)
			}
			cases = append(cases, c)
		}
	}
	for name, s := range controllerSecrets(t, specCases) {
		bySpec[name].secret = s
	}
	return cases
}

// checkRefusal: a refused pair of one registry is in refused, with the field it must
// name; a refused pair of two registries may be refused for any reason. No refusal
// shows the password.
func checkRefusal(t *testing.T, c *pairCase) {
	t.Helper()
	if strings.Contains(c.refusalMessage, c.login.pass) {
		t.Errorf("%s: the refusal shows the password", c)
	}
	want, mustRefuse := refused[[2]string{c.server.text, c.image.text}]
	switch {
	case !mustRefuse && c.server.registry == c.image.registry:
		t.Errorf("%s: refused, but kubelet can serve it: %s", c, c.refusalMessage)
	case !mustRefuse:
		// An image of another registry, refused: fine.
	case c.path == "task" && !slices.Contains(c.refusedFields, want.task),
		c.path != "task" && !slices.Contains(c.refusedFields, want.spec):
		t.Errorf("%s: refused naming %q, want %+v: %s", c, c.refusedFields, want, c.refusalMessage)
	}
}

// checkKubelet: kubelet's keyring gives the image exactly the user's credentials, once,
// or none when the image is of another registry.
func checkKubelet(t *testing.T, c *pairCase, wantCredentials bool) {
	t.Helper()
	if c.secret == nil {
		t.Errorf("%s: accepted without a pull Secret", c)
		return
	}
	got := kubeletLookup(t, []corev1.Secret{*c.secret}, c.image.text)
	switch {
	case !wantCredentials && len(got) == 0:
	case !wantCredentials:
		t.Errorf("%s: kubelet would send this image credentials meant for another registry (%d)", c, len(got))
	case len(got) != 1:
		t.Errorf("%s: kubelet found %d credentials, want exactly 1 (0 means an anonymous pull); Secret keys %s", c, len(got), authsKeys(c.secret))
	case got[0].Username != c.login.user || got[0].Password != c.login.pass || got[0].Email != c.wantEmail:
		t.Errorf("%s: kubelet got user %q (email %q) and a password that is right: %v; want user %q (email %q)",
			c, got[0].Username, got[0].Email, got[0].Password == c.login.pass, c.login.user, c.wantEmail)
	}
}

func specRefusal(t *testing.T, err error) ([]string, string) {
	t.Helper()
	var verr *config.ValidationError
	if !errors.As(err, &verr) || len(verr.Problems) == 0 {
		t.Fatalf("refusal %v is not a *config.ValidationError with problems", err)
	}
	var paths []string
	for _, p := range verr.Problems {
		if p.Path == "" || !strings.Contains(err.Error(), p.Path+": ") {
			t.Errorf("problem %+v names no field", p)
		}
		paths = append(paths, p.Path)
	}
	return paths, err.Error()
}

func taskRefusal(t *testing.T, e *tasks.Error) ([]string, string) {
	t.Helper()
	if e.Field == "" || !strings.Contains(e.Message, e.Field+": ") {
		t.Errorf("task refusal %+v names no field", e)
	}
	paths := []string{e.Field}
	for _, p := range e.Problems {
		paths = append(paths, p.Field)
	}
	return paths, e.Message
}
