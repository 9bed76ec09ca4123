// Package test holds checks of the repository's build files. No Docker engine runs
// here, so the Dockerfile is kept correct by reading it: every path it copies must be a
// real build output, and the runtime paths must be the ones the code expects.
package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

func TestDockerfileCopiesRealBuildOutputs(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(raw)
	builds := regexp.MustCompile(`-o (/out/[\w-]+) (\./cmd/[\w-]+)`).FindAllStringSubmatch(dockerfile, -1)
	if len(builds) != 2 {
		t.Fatalf("want 2 go build outputs, found %v", builds)
	}
	outputs := map[string]bool{}
	bin := t.TempDir()
	for _, b := range builds {
		out, pkg := b[1], b[2]
		if filepath.Base(out) != filepath.Base(pkg) {
			t.Errorf("%s is built from %s: names differ", out, pkg)
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, filepath.Base(out)), pkg)
		cmd.Dir, cmd.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, msg)
		}
		outputs[out] = true
	}
	copies := regexp.MustCompile(`COPY --from=build (\S+) (\S+)`).FindAllStringSubmatch(dockerfile, -1)
	runtime := map[string]bool{}
	for _, c := range copies {
		if !outputs[c[1]] {
			t.Errorf("COPY %s: not a build output", c[1])
		}
		runtime[c[2]] = true
	}
	if !runtime[jobs.NoopBinary] {
		t.Errorf("runtime image lacks %s, which prewarm Jobs run", jobs.NoopBinary)
	}
	for _, dir := range regexp.MustCompile(`(?m)^COPY (\w+) \w+$`).FindAllStringSubmatch(dockerfile, -1) {
		if _, err := os.Stat(filepath.Join("..", dir[1])); err != nil {
			t.Errorf("COPY %s: %v", dir[1], err)
		}
	}
	if !strings.Contains(dockerfile, "USER 65532") || !strings.Contains(dockerfile, "CGO_ENABLED=0") {
		t.Error("runtime must be non-root and the build CGO-free")
	}
}

func TestDockerfileGoMatchesGoMod(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	docker, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goVersion == nil {
		t.Fatal("go.mod has no go directive")
	}
	// The build stage may pin its platform (--platform=$BUILDPLATFORM) to cross-compile.
	from := regexp.MustCompile(`(?m)^FROM (?:--platform=\S+ )?golang:` + regexp.QuoteMeta(string(goVersion[1])) + `\b`)
	if !from.Match(docker) {
		t.Fatalf("Dockerfile's golang image does not match go.mod's go %s", goVersion[1])
	}
}
