package test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/image-prewarm/image-prewarm/test/images"
)

// runtimeStage is what the Dockerfile's last stage puts in the image.
type runtimeStage struct {
	from string
	// files are images.Entry strings ("path mode uid:gid"), sorted.
	files      []string
	user       string
	entrypoint []string
}

// What BuildKit writes into the config of a FROM scratch stage (dockerfile2llb's
// emptyImage): the image `make image` builds must carry the same.
var (
	scratchEnv     = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	scratchWorkDir = "/"
)

// parseRuntimeStage reads the instructions after the Dockerfile's last FROM. It
// models COPY --from=build (the mode go build gives its output, 0755, unless
// --chmod; root unless --chown; parent directories 0755), USER and ENTRYPOINT in
// exec form, and refuses anything else, so that a new instruction in the Dockerfile
// fails here until test/images learns it too.
func parseRuntimeStage(dockerfile string) (runtimeStage, error) {
	lines := instructions(dockerfile)
	last := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			last = i
		}
	}
	if last < 0 {
		return runtimeStage{}, fmt.Errorf("no FROM")
	}
	stage := runtimeStage{from: strings.TrimSpace(lines[last][len("FROM "):])}
	files := map[string]string{}
	for _, l := range lines[last+1:] {
		keyword, args, _ := strings.Cut(l, " ")
		var err error
		switch strings.ToUpper(keyword) {
		case "COPY":
			err = parseCopy(strings.Fields(args), files)
		case "USER":
			stage.user = strings.TrimSpace(args)
		case "ENTRYPOINT":
			if err = json.Unmarshal([]byte(args), &stage.entrypoint); err != nil {
				err = fmt.Errorf("ENTRYPOINT %s: want the exec (JSON) form: %w", args, err)
			}
		default:
			err = fmt.Errorf("%q: not modelled by this test (nor, probably, by test/images)", l)
		}
		if err != nil {
			return runtimeStage{}, err
		}
	}
	for _, f := range files {
		stage.files = append(stage.files, f)
	}
	slices.Sort(stage.files)
	return stage, nil
}

// instructions returns the Dockerfile's instructions, continuation lines joined,
// comments and blank lines dropped.
func instructions(dockerfile string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(dockerfile, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if more, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(more + " ")
			continue
		}
		cur.WriteString(trimmed)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// parseCopy adds the entries one COPY --from=build creates to files (path → entry).
func parseCopy(fields []string, files map[string]string) error {
	mode, owner, from := fs.FileMode(0o755), "0:0", ""
	var operands []string
	for _, f := range fields {
		switch {
		case strings.HasPrefix(f, "--from="):
			from = strings.TrimPrefix(f, "--from=")
		case strings.HasPrefix(f, "--chmod="):
			m, err := strconv.ParseUint(strings.TrimPrefix(f, "--chmod="), 8, 32)
			if err != nil {
				return fmt.Errorf("COPY %s: %w", f, err)
			}
			mode = fs.FileMode(m)
		case strings.HasPrefix(f, "--chown="):
			owner = strings.TrimPrefix(f, "--chown=")
		case strings.HasPrefix(f, "--"):
			return fmt.Errorf("COPY %s: flag not modelled", f)
		default:
			operands = append(operands, f)
		}
	}
	if from != "build" || len(operands) != 2 || !path.IsAbs(operands[1]) {
		return fmt.Errorf("COPY %s: want COPY --from=build <file> </absolute/path>", strings.Join(fields, " "))
	}
	dst := path.Clean(operands[1])
	files[dst] = fmt.Sprintf("%s %s %s", dst, mode, owner)
	for dir := path.Dir(dst); dir != "/"; dir = path.Dir(dir) {
		files[dir] = fmt.Sprintf("%s %s 0:0", dir, fs.ModeDir|0o755)
	}
	return nil
}

func TestDockerfileRuntimeStageParse(t *testing.T) {
	cases := map[string]struct {
		dockerfile string
		want       runtimeStage
		wantErr    string
	}{
		"copies, user, entrypoint": {
			dockerfile: "FROM golang AS build\nRUN go build \\\n  -o /out/a .\n# runtime\nFROM scratch\n" +
				"COPY --from=build /out/a /a\nCOPY --from=build --chmod=0700 --chown=1:2 /out/b /opt/x/b\n" +
				"USER 65532:65532\nENTRYPOINT [\"/a\", \"run\"]\n",
			want: runtimeStage{
				from: "scratch",
				files: []string{
					"/a -rwxr-xr-x 0:0", "/opt drwxr-xr-x 0:0", "/opt/x drwxr-xr-x 0:0", "/opt/x/b -rwx------ 1:2",
				},
				user: "65532:65532", entrypoint: []string{"/a", "run"},
			},
		},
		"unmodelled instruction": {dockerfile: "FROM scratch\nENV A=b\n", wantErr: "not modelled"},
		"shell entrypoint":       {dockerfile: "FROM scratch\nENTRYPOINT /a\n", wantErr: "exec (JSON) form"},
		"copy from context":      {dockerfile: "FROM scratch\nCOPY a /a\n", wantErr: "--from=build"},
		"no stage":               {dockerfile: "# empty\n", wantErr: "no FROM"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parseRuntimeStage(tc.dockerfile)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.from != tc.want.from || got.user != tc.want.user ||
				!slices.Equal(got.files, tc.want.files) || !slices.Equal(got.entrypoint, tc.want.entrypoint) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestImageMatchesDockerfile builds the project image as `make image` does, for
// every platform, and checks it against the Dockerfile's runtime stage: the same
// files with the same modes and owners, user and entrypoint, and BuildKit's config
// for a scratch stage.
func TestImageMatchesDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the project for every platform")
	}
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stage, err := parseRuntimeStage(string(raw))
	if err != nil {
		t.Fatalf("Dockerfile runtime stage: %v", err)
	}
	if stage.from != "scratch" {
		t.Fatalf("runtime stage FROM %s: want scratch, which is what test/images builds on", stage.from)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	const version = "v0.0.0-image-test"
	start := time.Now()
	idx, err := images.Project(ctx, images.ProjectOptions{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built the project index in %s", time.Since(start).Round(time.Millisecond))
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform in the index", d.Digest)
		}
		platforms = append(platforms, d.Platform.String())
		t.Run(d.Platform.String(), func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstStage(t, img, *d.Platform, stage)
			checkEntrypointBinary(t, img, *d.Platform, stage.entrypoint[0], version)
		})
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Errorf("index platforms %v, want %v", platforms, want)
	}
}

func checkAgainstStage(t *testing.T, img v1.Image, p v1.Platform, stage runtimeStage) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cp := cfg.Platform(); cp == nil || !cp.Equals(p) {
		t.Errorf("config platform %v, index says %v", cp, p)
	}
	entries, err := images.Contents(img)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.String())
	}
	if !slices.Equal(files, stage.files) {
		t.Errorf("image files %q\nDockerfile  %q", files, stage.files)
	}
	c := cfg.Config
	if c.User != stage.user || !slices.Equal(c.Entrypoint, stage.entrypoint) || len(c.Cmd) > 0 {
		t.Errorf("user %q entrypoint %q cmd %q; Dockerfile: user %q entrypoint %q, no cmd",
			c.User, c.Entrypoint, c.Cmd, stage.user, stage.entrypoint)
	}
	if !slices.Equal(c.Env, scratchEnv) || c.WorkingDir != scratchWorkDir {
		t.Errorf("env %q workdir %q; BuildKit's scratch gives %q and %q", c.Env, c.WorkingDir, scratchEnv, scratchWorkDir)
	}
}

// checkEntrypointBinary checks that the entrypoint is a binary for p (a wrong
// GOARCH would pass every other check and fail only on a node) carrying version.
func checkEntrypointBinary(t *testing.T, img v1.Image, p v1.Platform, file, version string) {
	t.Helper()
	bin, err := images.ReadFile(img, file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
	if f.Machine != want {
		t.Errorf("%s is built for %s, want %s", file, f.Machine, want)
	}
	if !bytes.Contains(bin, []byte(version)) {
		t.Errorf("%s does not carry version %s", file, version)
	}
}
