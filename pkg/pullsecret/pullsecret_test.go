package pullsecret

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
)

// sentinel is a password that must never show up in an error or a rendering.
const sentinel = "S3ntinel-Pa55w0rd"

func TestDockerConfigJSON(t *testing.T) {
	robot := Credential{Server: "harbor.x", Username: "robot$ci", Password: "p:w"}
	tests := map[string]struct {
		creds    []Credential
		wantKeys map[string]int // auths key -> index in creds
		wantErr  string
	}{
		"one registry":     {creds: []Credential{robot}, wantKeys: map[string]int{"harbor.x": 0}},
		"upper case":       {creds: []Credential{{Server: "Harbor.X:5000", Username: "u", Password: "p"}}, wantKeys: map[string]int{"harbor.x:5000": 0, "Harbor.X:5000": 0}},
		"docker.io":        {creds: []Credential{{Server: "docker.io", Username: "hub", Password: "p"}}, wantKeys: map[string]int{DockerHubKey: 0, "registry-1.docker.io": 0}},
		"registry-1":       {creds: []Credential{{Server: "registry-1.docker.io", Username: "hub", Password: "p"}}, wantKeys: map[string]int{DockerHubKey: 0, "registry-1.docker.io": 0}},
		"hub in caps":      {creds: []Credential{{Server: "Docker.io", Username: "hub", Password: "p"}}, wantKeys: map[string]int{DockerHubKey: 0, "registry-1.docker.io": 0, "Docker.io": 0}},
		"email and tokens": {creds: []Credential{{Server: "h.x", Username: "u", Password: "p", Email: "ci@example.com", IdentityToken: "it", RegistryToken: "rt"}}, wantKeys: map[string]int{"h.x": 0}},
		"two registries": {
			creds:    []Credential{{Server: "index.docker.io", Username: "hub", Password: "p"}, {Server: "[::1]:5000", Username: "u", Password: `q"\ü`}},
			wantKeys: map[string]int{DockerHubKey: 0, "registry-1.docker.io": 0, "[::1]:5000": 1},
		},
		"none":              {creds: nil, wantKeys: map[string]int{}},
		"empty server":      {creds: []Credential{{Username: "u", Password: "p"}}, wantErr: "server is empty"},
		"empty username":    {creds: []Credential{{Server: "h.x", Password: "p"}}, wantErr: "username is empty"},
		"colon in user":     {creds: []Credential{{Server: "h.x", Username: "a:b", Password: "p"}}, wantErr: "must not contain ':'"},
		"invalid UTF-8":     {creds: []Credential{{Server: "h.x", Username: "a", Password: "p\xff"}}, wantErr: "valid UTF-8"},
		"duplicate hub":     {creds: []Credential{{Server: "docker.io", Username: "a", Password: "p"}, {Server: "registry-1.docker.io", Username: "b", Password: "p"}}, wantErr: "same registry"},
		"duplicate in caps": {creds: []Credential{{Server: "h.x", Username: "a", Password: "p"}, {Server: "H.x", Username: "b", Password: "p"}}, wantErr: "same registry"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := DockerConfigJSON(tc.creds)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Auths map[string]map[string]string `json:"auths"`
			}
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatalf("output %s: %v", out, err)
			}
			if len(cfg.Auths) != len(tc.wantKeys) {
				t.Fatalf("auths %s, want keys %v", out, tc.wantKeys)
			}
			for key, i := range tc.wantKeys {
				c := tc.creds[i]
				want := map[string]string{"username": c.Username, "password": c.Password, "auth": auth(c.Username + ":" + c.Password)}
				for field, v := range map[string]string{"email": c.Email, "identitytoken": c.IdentityToken, "registrytoken": c.RegistryToken} {
					if v != "" {
						want[field] = v
					}
				}
				if !maps.Equal(cfg.Auths[key], want) {
					t.Errorf("auths[%q] = %v, want %v", key, cfg.Auths[key], want)
				}
			}
			again, _ := DockerConfigJSON(tc.creds)
			if string(again) != string(out) {
				t.Errorf("output not deterministic: %s vs %s", out, again)
			}
		})
	}
}

func TestAuthKeys(t *testing.T) {
	tests := map[string][]string{
		"harbor.x":             {"harbor.x"},
		"Harbor.X":             {"harbor.x", "Harbor.X"},
		"localhost:5000":       {"localhost:5000"},
		"[::1]:5000":           {"[::1]:5000"},
		"[::A]:5000":           {"[::a]:5000", "[::A]:5000"},
		"docker.io":            {DockerHubKey, "registry-1.docker.io"},
		"index.docker.io":      {DockerHubKey, "registry-1.docker.io"},
		"registry-1.docker.io": {DockerHubKey, "registry-1.docker.io"},
		"Index.Docker.io":      {DockerHubKey, "registry-1.docker.io", "Index.Docker.io"},
	}
	for server, want := range tests {
		if got := authKeys(server); !slices.Equal(got, want) {
			t.Errorf("authKeys(%q) = %q, want %q", server, got, want)
		}
	}
}

// TestDockerConfigJSONRoundTrip: the run's Secret reads back, under every
// server spelling, as the credential it was made from (email and tokens too).
func TestDockerConfigJSONRoundTrip(t *testing.T) {
	creds := []Credential{
		{Server: "Harbor.X", Username: "robot$proj+ci", Password: "p@ss:word \"q\" \\ ü", Email: "ci@example.com"},
		{Server: "docker.io", Username: "hub", Password: "h", IdentityToken: "it"},
	}
	out, err := DockerConfigJSON(creds)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range creds {
		for _, server := range append(config.CredentialHosts(want.Server), want.Server) {
			got, err := FromSecret(server, dockerSecret(string(out)))
			if err != nil {
				t.Fatalf("FromSecret(%s): %v", server, err)
			}
			want.Server = server
			if got != want {
				t.Errorf("round trip %#v, want %#v", got, want)
			}
		}
	}
}

func basicSecret(user, pass string) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"},
		Type:       corev1.SecretTypeBasicAuth,
		Data:       map[string][]byte{},
	}
	if user != "-" {
		s.Data[corev1.BasicAuthUsernameKey] = []byte(user)
	}
	if pass != "-" {
		s.Data[corev1.BasicAuthPasswordKey] = []byte(pass)
	}
	return s
}

func dockerSecret(config string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(config)},
	}
}

func auth(userPass string) string { return base64.StdEncoding.EncodeToString([]byte(userPass)) }

func cred(server, user, pass string) Credential {
	return Credential{Server: server, Username: user, Password: pass}
}

// fromSecretCases also seeds FuzzFromSecret (the dockerconfigjson ones).
var fromSecretCases = map[string]struct {
	server  string
	secret  *corev1.Secret
	want    Credential
	wantErr string
}{
	"basic auth":             {server: "h.x", secret: basicSecret("robot", sentinel), want: cred("h.x", "robot", sentinel)},
	"basic auth no username": {server: "h.x", secret: basicSecret("-", sentinel), wantErr: `data["username"] is missing`},
	"basic auth empty user":  {server: "h.x", secret: basicSecret("", sentinel), wantErr: `data["username"]`},
	"basic auth no password": {server: "h.x", secret: basicSecret("robot", "-"), wantErr: `data["password"] is missing`},
	"basic auth colon user":  {server: "h.x", secret: basicSecret("a:b", sentinel), wantErr: `data["username"] contains ':'`},
	"basic auth not UTF-8":   {server: "h.x", secret: basicSecret("robot", sentinel+"\xff"), wantErr: `data["password"] is not valid UTF-8`},
	"exact key":              {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"` + sentinel + `"}}}`), want: cred("h.x", "u", sentinel)},
	"https and path key":     {server: "h.x", secret: dockerSecret(`{"auths":{"https://h.x/v2/":{"username":"u","password":"` + sentinel + `"}}}`), want: cred("h.x", "u", sentinel)},
	"key in other case":      {server: "harbor.x", secret: dockerSecret(`{"auths":{"Harbor.X":{"username":"u","password":"` + sentinel + `"}}}`), want: cred("harbor.x", "u", sentinel)},
	"same credential twice":  {server: "h.x", secret: dockerSecret(`{"auths":{"https://h.x":{"auth":"` + auth("u:p") + `"},"h.x":{"username":"u","password":"p"}}}`), want: cred("h.x", "u", "p")},
	"two spellings differ": {
		server:  "h.x",
		secret:  dockerSecret(`{"auths":{"https://h.x":{"username":"other","password":"x"},"h.x":{"username":"u","password":"` + sentinel + `"}}}`),
		wantErr: `auths["h.x"] and ["https://h.x"] both name registry "h.x" with different credentials`,
	},
	"emails differ":         {server: "h.x", secret: dockerSecret(`{"auths":{"H.X":{"username":"u","password":"p","email":"a@x"},"h.x":{"username":"u","password":"p"}}}`), wantErr: "different credentials"},
	"docker hub legacy key": {server: "docker.io", secret: dockerSecret(`{"auths":{"https://index.docker.io/v1/":{"auth":"` + auth("hub:"+sentinel) + `"}}}`), want: cred("docker.io", "hub", sentinel)},
	"docker hub registry-1": {server: "index.docker.io", secret: dockerSecret(`{"auths":{"registry-1.docker.io":{"auth":"` + auth("hub:"+sentinel) + `"}}}`), want: cred("index.docker.io", "hub", sentinel)},
	"auth only":             {server: "h.x:5000", secret: dockerSecret(`{"auths":{"h.x:5000":{"auth":"` + auth("u:p:with:colons") + `"}}}`), want: cred("h.x:5000", "u", "p:with:colons")},
	"unpadded auth":         {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + strings.TrimRight(auth("u:pw"), "=") + `"}}}`), want: cred("h.x", "u", "pw")},
	"auth agrees":           {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"p","auth":"` + auth("u:p") + `"}}}`), want: cred("h.x", "u", "p")},
	"auth with user only":   {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","auth":"` + auth("u:p") + `"}}}`), want: cred("h.x", "u", "p")},
	"auth disagrees":        {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"` + sentinel + `","auth":"` + auth("a:b") + `"}}}`), wantErr: `auths["h.x"]: auth and username/password disagree (kubelet uses auth)`},
	"email kept": {
		server: "h.x",
		secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + auth("u:"+sentinel) + `","email":"ci@example.com"}}}`),
		want:   Credential{Server: "h.x", Username: "u", Password: sentinel, Email: "ci@example.com"},
	},
	"tokens kept": {
		server: "h.x",
		secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"p","identitytoken":"` + sentinel + `","registrytoken":"rt"}}}`),
		want:   Credential{Server: "h.x", Username: "u", Password: "p", IdentityToken: sentinel, RegistryToken: "rt"},
	},
	"identity token only":  {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + auth("00000000-0000-0000-0000-000000000000:") + `","identitytoken":"` + sentinel + `"}}}`), wantErr: "has no password (neither password nor auth); kubelet takes only username and password from a pull Secret, not identitytoken"},
	"colon in username":    {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"a:b","password":"` + sentinel + `"}}}`), wantErr: `auths["h.x"].username contains ':'`},
	"auth not UTF-8":       {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + auth("u:\xff") + `"}}}`), wantErr: "not valid UTF-8"},
	"explicit fields only": {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"p","auth":""}}}`), want: cred("h.x", "u", "p")},
	"no entry":             {server: "other.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"` + sentinel + `"}}}`), wantErr: `no auths entry for registry "other.x"`},
	"no auths":             {server: "h.x", secret: dockerSecret(`{}`), wantErr: "no auths entry"},
	"missing key":          {server: "h.x", secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson}, wantErr: `data[".dockerconfigjson"] is missing`},
	"not json":             {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"password":"` + sentinel), wantErr: "not valid docker config JSON"},
	"syntax at the secret": {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"password":` + sentinel + `}}}`), wantErr: "not valid docker config JSON"},
	"wrong json type":      {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":["` + sentinel + `"]}}}`), wantErr: "not valid docker config JSON"},
	"bad base64":           {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + sentinel + `!"}}}`), wantErr: "auth is not valid base64"},
	"auth without colon":   {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + auth(sentinel) + `"}}}`), wantErr: `not base64 of "username:password"`},
	"username only":        {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u"}}}`), wantErr: "has no password"},
	"password only":        {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"password":"` + sentinel + `"}}}`), wantErr: "has no username"},
	"empty user in auth":   {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + auth(":"+sentinel) + `"}}}`), wantErr: "has no username"},
	"opaque":               {server: "h.x", secret: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"password": []byte(sentinel)}}, wantErr: `secret "creds" has type "Opaque"`},
	"nil secret":           {server: "h.x", secret: nil, wantErr: "no Secret"},
	"no server":            {server: "", secret: basicSecret("u", sentinel), wantErr: "no registry server"},
}

func TestFromSecret(t *testing.T) {
	for name, tc := range fromSecretCases {
		t.Run(name, func(t *testing.T) {
			got, err := FromSecret(tc.server, tc.secret)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if tc.secret != nil && tc.secret.Name != "" && !strings.Contains(err.Error(), tc.secret.Name) {
					t.Errorf("error %q does not name the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNoSecretValueLeaks(t *testing.T) {
	for name, tc := range fromSecretCases {
		t.Run(name, func(t *testing.T) {
			c, err := FromSecret(tc.server, tc.secret)
			if err != nil && strings.Contains(err.Error(), sentinel) {
				t.Errorf("error leaks the password: %v", err)
			}
			assertRedacted(t, c)
		})
	}
	bad := [][]Credential{
		{{Server: "", Username: "u", Password: sentinel}},
		{{Server: "h.x", Username: "", Password: sentinel}},
		{{Server: "h.x", Username: "a:b", Password: sentinel}},
		{{Server: "h.x", Username: "a", Password: sentinel}, {Server: "h.x", Username: "b", Password: sentinel}},
	}
	for _, creds := range bad {
		if _, err := DockerConfigJSON(creds); err == nil || strings.Contains(err.Error(), sentinel) {
			t.Errorf("DockerConfigJSON(%v) err = %v", creds, err)
		}
	}
}

func assertRedacted(t *testing.T, c Credential) {
	t.Helper()
	c.Password = sentinel
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%v", &c), fmt.Sprintf("%+v", []Credential{c}), string(js)} {
		if strings.Contains(out, sentinel) {
			t.Errorf("rendering leaks the password: %s", out)
		}
	}
	if want := "server=" + c.Server + " user=" + c.Username + " password=<redacted>"; c.String() != want {
		t.Errorf("String() = %q, want %q", c.String(), want)
	}
}
