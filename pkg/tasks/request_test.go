package tasks

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/pullsecret"
	"github.com/image-prewarm/image-prewarm/pkg/tasks/taskstest"
)

func TestDecodeRequestAccepts(t *testing.T) {
	harbor := pullsecret.Credential{Server: "harbor.example.com", Username: "robot$x", Password: "p:a ss"}
	tests := map[string]struct {
		body string
		want Request
	}{
		"images only": {
			body: `{"images":["nginx:1.27"]}`,
			want: Request{Images: []string{"nginx:1.27"}, BatchSize: DefaultBatchSize},
		},
		"artifacts only, with credentials": {
			body: `{"artifacts":["harbor.example.com/models/llama:8b"],"registry":"harbor.example.com","username":"robot$x","password":"p:a ss"}`,
			want: Request{Artifacts: []string{"harbor.example.com/models/llama:8b"}, BatchSize: DefaultBatchSize, Credential: harbor},
		},
		"every field": {
			body: `{"images":["harbor.example.com/ml/a:1","nginx"],"batchSize":3,"registry":"harbor.example.com",
				"username":"robot$x","password":"p:a ss","nodeSelector":{"pool":"gpu","zone":""}}`,
			want: Request{Images: []string{"harbor.example.com/ml/a:1", "nginx"}, BatchSize: 3, Credential: harbor,
				NodeSelector: map[string]string{"pool": "gpu", "zone": ""}},
		},
		"nulls are absent": {
			body: `{"images":["nginx"],"batchSize":null,"registry":null,"username":null,"password":null,"nodeSelector":null}`,
			want: Request{Images: []string{"nginx"}, BatchSize: DefaultBatchSize},
		},
		"empty credentials are absent": {
			body: `{"images":["nginx"],"registry":"","username":"","password":""}`,
			want: Request{Images: []string{"nginx"}, BatchSize: DefaultBatchSize},
		},
		"Docker Hub under any name": {
			body: `{"images":["private/app:1"],"registry":"index.docker.io","username":"u","password":"p"}`,
			want: Request{Images: []string{"private/app:1"}, BatchSize: DefaultBatchSize,
				Credential: pullsecret.Credential{Server: "index.docker.io", Username: "u", Password: "p"}},
		},
		"registry with port": {
			body: `{"images":["registry.local:5000/a@sha256:` + strings.Repeat("a", 64) + `"],"registry":"registry.local:5000","username":"u","password":"p"}`,
			want: Request{Images: []string{"registry.local:5000/a@sha256:" + strings.Repeat("a", 64)}, BatchSize: DefaultBatchSize,
				Credential: pullsecret.Credential{Server: "registry.local:5000", Username: "u", Password: "p"}},
		},
		"registry in capitals": {
			body: `{"images":["harbor.example.com/a:1","Harbor.Example.com/b:1"],"registry":"Harbor.Example.com","username":"u","password":"p"}`,
			want: Request{Images: []string{"harbor.example.com/a:1", "Harbor.Example.com/b:1"}, BatchSize: DefaultBatchSize,
				Credential: pullsecret.Credential{Server: "Harbor.Example.com", Username: "u", Password: "p"}},
		},
		"Docker Hub's registry-1 name": {
			body: `{"images":["registry-1.docker.io/private/app:1","private/b"],"registry":"docker.io","username":"u","password":"p"}`,
			want: Request{Images: []string{"registry-1.docker.io/private/app:1", "private/b"}, BatchSize: DefaultBatchSize,
				Credential: pullsecret.Credential{Server: "docker.io", Username: "u", Password: "p"}},
		},
		"whitespace around": {
			body: " \n{\"images\" : [ \"nginx\" ] , \"batchSize\" : 10000 }\n\t",
			want: Request{Images: []string{"nginx"}, BatchSize: MaxBatchSize},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeRequest(strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Images, tc.want.Images) || got.BatchSize != tc.want.BatchSize || got.Credential != tc.want.Credential ||
				!maps.Equal(got.NodeSelector, tc.want.NodeSelector) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			assertSpecRoundTrips(t, got)
		})
	}
}

// TestDecodeRequestRefusesSpellingsKubeletMisses: an image spelling that kubelet would
// pull without the request's credentials is refused, naming the field.
func TestDecodeRequestRefusesSpellingsKubeletMisses(t *testing.T) {
	tests := map[string]struct {
		body      string
		wantField string
		wantMsg   string
	}{
		"image in capitals": {
			body:      `{"images":["harbor.x/a:1","Harbor.X/b:1"],"registry":"harbor.x","username":"u","password":"p"}`,
			wantField: "images[1]", wantMsg: `registry "Harbor.X" would get no credentials`,
		},
		"Docker Hub in capitals": {
			body:      `{"images":["Docker.io/nginx"],"registry":"docker.io","username":"u","password":"p"}`,
			wantField: "images[0]", wantMsg: `spell it "docker.io" or "registry-1.docker.io"`,
		},
		"IPv6 without a port": {
			body:      `{"images":["[::1]/a:1"],"registry":"[::1]","username":"u","password":"p"}`,
			wantField: "registry", wantMsg: "IPv6 address without a port",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeRequest(strings.NewReader(tc.body))
			var e *Error
			if !errors.As(err, &e) || e.Field != tc.wantField || !strings.Contains(e.Message, tc.wantMsg) {
				t.Fatalf("DecodeRequest: %v, want %s: ...%s", err, tc.wantField, tc.wantMsg)
			}
		})
	}
}

// assertSpecRoundTrips: the spec stored for a request parses back as the controller
// and the validating webhook will parse it, with no credential in it.
func assertSpecRoundTrips(t *testing.T, req *Request) {
	t.Helper()
	data, err := yaml.Marshal(req.Spec("abcdefghij"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.Parse(data)
	if err != nil {
		t.Fatalf("the stored spec does not parse: %v\n%s", err, data)
	}
	if !spec.Once || (req.HasCredentials() != (spec.PullSecret != "")) {
		t.Fatalf("spec %+v for %v", spec, req)
	}
	// The password may happen to occur in other fields (fuzzing); it must not occur
	// more often than in the spec of the same request with another password.
	other := *req
	other.Credential.Password = "\x00other"
	otherData, err := yaml.Marshal(other.Spec("abcdefghij"))
	if err != nil {
		t.Fatal(err)
	}
	if pw := req.Credential.Password; pw != "" && strings.Count(string(data), pw) != strings.Count(string(otherData), pw) {
		t.Fatalf("the password is in the spec:\n%s", data)
	}
}

func TestRequestRedactsPassword(t *testing.T) {
	req := &Request{Images: []string{"a"}, Credential: pullsecret.Credential{Server: "h", Username: "u", Password: sentinel}}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, req); strings.Contains(s, sentinel) {
			t.Errorf("%s shows the password: %s", format, s)
		}
	}
}

func TestErrorsAreTyped(t *testing.T) {
	for _, c := range taskstest.Malformed() {
		if c.Method != "POST" || c.ContentType != "application/json" || c.WantStatus == 413 {
			continue // 413 needs a MaxBytesReader: the handler tests cover it
		}
		t.Run(c.Name, func(t *testing.T) {
			_, err := DecodeRequest(strings.NewReader(c.Body))
			var e *Error
			if !errors.As(err, &e) || e.Status != c.WantStatus || e.Field != c.WantField {
				t.Fatalf("DecodeRequest: %#v, want %d %q", err, c.WantStatus, c.WantField)
			}
		})
	}
}

// FuzzDecodeTaskRequest: no input panics the decoder, every refusal is a 4xx naming a
// field, and every accepted request becomes a spec the controller accepts.
func FuzzDecodeTaskRequest(f *testing.F) {
	for _, c := range taskstest.Malformed() {
		if len(c.Body) < 4096 {
			f.Add(c.Body)
		}
	}
	f.Add(`{"images":["nginx:1.27"]}`)
	f.Add(`{"images":["harbor.example.com/a:1"],"batchSize":2,"registry":"harbor.example.com","username":"u","password":"p","nodeSelector":{"k":"v"}}`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := DecodeRequest(strings.NewReader(body))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 || e.Field == "" || e.Message == "" {
				t.Fatalf("refusal %#v is not a 4xx naming a field", err)
			}
			return
		}
		if err := req.validate(); err != nil {
			t.Fatalf("an accepted request does not re-validate: %v", err)
		}
		assertSpecRoundTrips(t, req)
	})
}
