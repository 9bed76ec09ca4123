package images

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const (
	testUser     = "pusher"
	testPassword = "s3cret"
)

// testRegistry is go-containerregistry's in-memory registry behind TLS on
// 127.0.0.1 with basic auth, the way distribution with htpasswd answers. The
// certificate is the server's own, which signs itself.
func testRegistry(t *testing.T) (Registry, *x509.Certificate) {
	t.Helper()
	handler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return Registry{Host: srv.Listener.Addr().String(), CA: pool, Username: testUser, Password: testPassword},
		srv.Certificate()
}

func TestPushAndPullBack(t *testing.T) {
	reg, _ := testRegistry(t)
	multiArch, err := indexOf(need(scratchFor(ProjectPlatforms[0]))(t), need(scratchFor(ProjectPlatforms[1]))(t))
	if err != nil {
		t.Fatal(err)
	}
	indexes := map[string]v1.ImageIndex{
		"multiarch:v1": multiArch,
		"foreign:v1":   must(ForeignArch)(t),
	}
	for repo, idx := range indexes {
		t.Run(repo, func(t *testing.T) {
			if err := Push(context.Background(), reg.Ref(repo), idx, reg); err != nil {
				t.Fatal(err)
			}
			got := need(remote.Index(ref(t, reg.Ref(repo)), pullOpts(t, reg)...))(t)
			if digest, want := need(got.Digest())(t), need(idx.Digest())(t); digest != want {
				t.Fatalf("pulled index %s, pushed %s", digest, want)
			}
			checkPlatforms(t, got)
		})
	}
	imgs := map[string]v1.Image{
		"scratch:v1":        must(Scratch)(t),
		"large:v1":          need(Large(4, 1))(t),
		"model:mountable":   need(Artifact(2, 1, ArtifactImageConfig))(t),
		"model:bare":        need(Artifact(2, 1, ArtifactModelConfig))(t),
		"private/scratch:1": must(Scratch)(t),
	}
	for repo, img := range imgs {
		t.Run(repo, func(t *testing.T) {
			if err := Push(context.Background(), reg.Ref(repo), img, reg); err != nil {
				t.Fatal(err)
			}
			got := need(remote.Image(ref(t, reg.Ref(repo)), pullOpts(t, reg)...))(t)
			if digest, want := need(got.Digest())(t), need(img.Digest())(t); digest != want {
				t.Fatalf("pulled %s, pushed %s", digest, want)
			}
			for _, l := range need(got.Layers())(t) {
				rc := need(l.Compressed())(t)
				h, _, err := v1.SHA256(rc)
				rc.Close()
				if want := need(l.Digest())(t); err != nil || h != want {
					t.Errorf("layer %s: pulled bytes hash to %s: %v", want, h, err)
				}
			}
		})
	}
}

// checkPlatforms checks that every manifest of idx names a platform and that its
// config names the same one.
func checkPlatforms(t *testing.T, idx v1.ImageIndex) {
	t.Helper()
	for _, d := range need(idx.IndexManifest())(t).Manifests {
		cfg := need(need(idx.Image(d.Digest))(t).ConfigFile())(t)
		if d.Platform == nil || cfg.Platform() == nil || !d.Platform.Equals(*cfg.Platform()) {
			t.Errorf("manifest %s: index platform %v, config platform %v", d.Digest, d.Platform, cfg.Platform())
		}
	}
}

func TestPushRefusals(t *testing.T) {
	reg, _ := testRegistry(t)
	img := must(Scratch)(t)
	wrongPassword := reg
	wrongPassword.Password = "wrong"
	byName := reg
	byName.Host = "localhost" + reg.Host[strings.LastIndex(reg.Host, ":"):]
	cases := map[string]struct {
		ref  string
		reg  Registry
		want string
	}{
		"wrong password":     {reg.Ref("a:v1"), wrongPassword, "401 Unauthorized"},
		"another registry":   {"127.0.0.2:5000/a:v1", reg, "is not " + reg.Host},
		"host name":          {byName.Ref("a:v1"), byName, "not a name"},
		"no tag":             {reg.Ref("a"), reg, "push"},
		"untrusted registry": {reg.Ref("a:v1"), Registry{Host: reg.Host, CA: x509.NewCertPool()}, "certificate"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := Push(context.Background(), tc.ref, img, tc.reg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Push: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRegistryCAFile(t *testing.T) {
	reg, cert := testRegistry(t)
	file := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	byFile := Registry{Host: reg.Host, CAFile: file, Username: testUser, Password: testPassword}
	if err := Push(context.Background(), byFile.Ref("scratch:file"), must(Scratch)(t), byFile); err != nil {
		t.Fatal(err)
	}
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	return need(name.ParseReference(s))(t)
}

func pullOpts(t *testing.T, reg Registry) []remote.Option {
	t.Helper()
	return []remote.Option{remote.WithTransport(need(reg.transport())(t)), remote.WithAuth(reg.auth())}
}
