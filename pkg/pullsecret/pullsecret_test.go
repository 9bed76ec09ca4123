package pullsecret

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// sentinel is a password that must never show up in an error or a rendering.
const sentinel = "S3ntinel-Pa55w0rd"

func TestDockerConfigJSON(t *testing.T) {
	tests := map[string]struct {
		creds   []Credential
		wantKey map[string]string // auths key -> username
		wantErr string
	}{
		"one registry": {
			creds:   []Credential{{Server: "harbor.x", Username: "robot", Password: "p:w"}},
			wantKey: map[string]string{"harbor.x": "robot"},
		},
		"docker hub names": {
			creds:   []Credential{{Server: "docker.io", Username: "hub", Password: "p"}},
			wantKey: map[string]string{DockerHubKey: "hub"},
		},
		"index.docker.io": {
			creds:   []Credential{{Server: "index.docker.io", Username: "hub", Password: "p"}, {Server: "r.local:5000", Username: "u", Password: "p"}},
			wantKey: map[string]string{DockerHubKey: "hub", "r.local:5000": "u"},
		},
		"none":             {creds: nil, wantKey: map[string]string{}},
		"empty server":     {creds: []Credential{{Username: "u", Password: "p"}}, wantErr: "server is empty"},
		"empty username":   {creds: []Credential{{Server: "h.x", Password: "p"}}, wantErr: "username is empty"},
		"colon in user":    {creds: []Credential{{Server: "h.x", Username: "a:b", Password: "p"}}, wantErr: "must not contain ':'"},
		"duplicate server": {creds: []Credential{{Server: "docker.io", Username: "a", Password: "p"}, {Server: "registry-1.docker.io", Username: "b", Password: "p"}}, wantErr: "same registry"},
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
				Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
			}
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatalf("output %s: %v", out, err)
			}
			if len(cfg.Auths) != len(tc.wantKey) {
				t.Fatalf("auths %s, want keys %v", out, tc.wantKey)
			}
			for _, c := range tc.creds {
				e := cfg.Auths[authKey(c.Server)]
				if e.Username != tc.wantKey[authKey(c.Server)] || e.Password != c.Password {
					t.Errorf("entry %+v for %s", e, c.Server)
				}
				if want := base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password)); e.Auth != want {
					t.Errorf("auth = %q, want %q", e.Auth, want)
				}
			}
			again, _ := DockerConfigJSON(tc.creds)
			if string(again) != string(out) {
				t.Errorf("output not deterministic: %s vs %s", out, again)
			}
		})
	}
}

func TestDockerConfigJSONRoundTrip(t *testing.T) {
	creds := []Credential{{Server: "harbor.x", Username: "robot$x", Password: "p@ss:word"}, {Server: "docker.io", Username: "hub", Password: "h"}}
	out, err := DockerConfigJSON(creds)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range creds {
		got, err := FromSecret(want.Server, dockerSecret(string(out)))
		if err != nil {
			t.Fatalf("FromSecret(%s): %v", want.Server, err)
		}
		if got != want {
			t.Errorf("round trip %v, want %v", got, want)
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

// fromSecretCases also seeds FuzzFromSecret (the dockerconfigjson ones).
var fromSecretCases = map[string]struct {
	server  string
	secret  *corev1.Secret
	want    Credential
	wantErr string
}{
	"basic auth":             {server: "h.x", secret: basicSecret("robot", sentinel), want: Credential{"h.x", "robot", sentinel}},
	"basic auth no username": {server: "h.x", secret: basicSecret("-", sentinel), wantErr: `data["username"] is missing`},
	"basic auth empty user":  {server: "h.x", secret: basicSecret("", sentinel), wantErr: `data["username"]`},
	"basic auth no password": {server: "h.x", secret: basicSecret("robot", "-"), wantErr: `data["password"] is missing`},
	"exact key":              {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"` + sentinel + `"}}}`), want: Credential{"h.x", "u", sentinel}},
	"https and path key":     {server: "h.x", secret: dockerSecret(`{"auths":{"https://h.x/v2/":{"username":"u","password":"` + sentinel + `"}}}`), want: Credential{"h.x", "u", sentinel}},
	"exact key preferred":    {server: "h.x", secret: dockerSecret(`{"auths":{"https://h.x":{"username":"other","password":"x"},"h.x":{"username":"u","password":"p"}}}`), want: Credential{"h.x", "u", "p"}},
	"docker hub legacy key":  {server: "docker.io", secret: dockerSecret(`{"auths":{"https://index.docker.io/v1/":{"auth":"` + auth("hub:"+sentinel) + `"}}}`), want: Credential{"docker.io", "hub", sentinel}},
	"auth only":              {server: "h.x:5000", secret: dockerSecret(`{"auths":{"h.x:5000":{"auth":"` + auth("u:p:with:colons") + `"}}}`), want: Credential{"h.x:5000", "u", "p:with:colons"}},
	"explicit fields win":    {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"p","auth":"` + auth("a:b") + `"}}}`), want: Credential{"h.x", "u", "p"}},
	"no entry":               {server: "other.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":"` + sentinel + `"}}}`), wantErr: `no auths entry for registry "other.x"`},
	"no auths":               {server: "h.x", secret: dockerSecret(`{}`), wantErr: "no auths entry"},
	"missing key":            {server: "h.x", secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson}, wantErr: `data[".dockerconfigjson"] is missing`},
	"not json":               {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"password":"` + sentinel), wantErr: "not valid docker config JSON"},
	"syntax at the secret":   {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"password":` + sentinel + `}}}`), wantErr: "not valid docker config JSON"},
	"wrong json type":        {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u","password":["` + sentinel + `"]}}}`), wantErr: "not valid docker config JSON"},
	"bad base64":             {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + sentinel + `"}}}`), wantErr: "auth is not valid base64"},
	"auth without colon":     {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + auth(sentinel) + `"}}}`), wantErr: `not base64 of "username:password"`},
	"username only":          {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"username":"u"}}}`), wantErr: "has no password"},
	"password only":          {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"password":"` + sentinel + `"}}}`), wantErr: "has no username"},
	"empty user in auth":     {server: "h.x", secret: dockerSecret(`{"auths":{"h.x":{"auth":"` + auth(":"+sentinel) + `"}}}`), wantErr: "has no username"},
	"opaque":                 {server: "h.x", secret: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"password": []byte(sentinel)}}, wantErr: `secret "creds" has type "Opaque"`},
	"nil secret":             {server: "h.x", secret: nil, wantErr: "no Secret"},
	"no server":              {server: "", secret: basicSecret("u", sentinel), wantErr: "no registry server"},
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
