package config

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fullSpec is the documented example.
const fullSpec = `
registries:
  - server: harbor.example.com
    credentialsSecret: harbor-robot
    maxConcurrentPulls: 20
images:
  - harbor.example.com/ml/pytorch:2.5.1
  - harbor.example.com/ml/triton@` + digest + `
  - nginx:1.27
nodeSelector: {node.kubernetes.io/instance-type: g5.xlarge}
tolerations: []
rollout:
  maxConcurrentNodes: 10
  pullTimeout: 15m
  retries: 1
once: false
`

// validSpecs and invalidSpecs also seed FuzzParse.
var validSpecs = map[string]struct {
	in    string
	check func(t *testing.T, s *Spec)
}{
	"full example": {in: fullSpec, check: func(t *testing.T, s *Spec) {
		if len(s.Images) != 3 || len(s.Registries) != 1 || s.Registries[0].MaxConcurrentPulls != 20 {
			t.Errorf("unexpected spec %+v", s)
		}
	}},
	"minimal":                           {in: "images: [nginx]"},
	"json":                              {in: `{"images":["nginx:1.27"],"rollout":{"maxConcurrentNodes":"25%"}}`},
	"percent":                           {in: "images: [nginx]\nrollout: {maxConcurrentNodes: 100%}"},
	"registry with port":                {in: "registries: [{server: 'registry.local:5000'}]\nimages: ['registry.local:5000/team/app:v1']"},
	"localhost registry":                {in: "registries: [{server: localhost}]\nimages: [localhost/app:v1]"},
	"docker hub listed":                 {in: "registries: [{server: docker.io, credentialsSecret: hub}]\nimages: [myorg/private:1]"},
	"docker hub alias listed":           {in: "registries: [{server: index.docker.io, credentialsSecret: hub}]\nimages: [myorg/private:1]"},
	"server in capitals":                {in: "registries: [{server: Harbor.Example.com, credentialsSecret: s}]\nimages: [harbor.example.com/a:1, Harbor.Example.com/b:1]"},
	"image in capitals, no credentials": {in: "registries: [{server: harbor.x}]\nimages: [HARBOR.x/a:1]"},
	"docker hub spellings": {
		in: "registries: [{server: docker.io, credentialsSecret: hub}]\n" +
			"images: [nginx, library/redis, docker.io/library/busybox, index.docker.io/library/alpine, registry-1.docker.io/library/ubuntu, myorg/app]",
	},
	"ipv6 with port":                     {in: "registries: [{server: '[::1]:5000', credentialsSecret: s}]\nimages: ['[::1]:5000/a:1']"},
	"ipv6 without port, no credentials":  {in: "registries: [{server: '[::1]'}]\nimages: ['[::1]/a:1']"},
	"localhost with its own credentials": {in: "registries: [{server: docker.io, credentialsSecret: hub}, {server: localhost, credentialsSecret: l}]\nimages: [nginx, localhost/app]"},
	"every public registry":              {in: "images: [registry.k8s.io/pause:3.10, ghcr.io/a/b:1, quay.io/a/b:1, gcr.io/a/b:1, mcr.microsoft.com/a/b:1, public.ecr.aws/a/b:1, nvcr.io/a/b:1]"},
	"tag and digest":                     {in: "images: ['nginx:1.27@" + digest + "']"},
	"bounds":                             {in: "images: [nginx]\nrollout: {maxConcurrentNodes: 1, pullTimeout: 1m, retries: 0}"},
	"upper bounds":                       {in: "images: [nginx]\nrollout: {pullTimeout: 24h, retries: 10}"},
	"keep failed jobs":                   {in: "images: [nginx]\nrollout: {keepFailedJobs: 30m}"},
	"keep no failed jobs":                {in: "images: [nginx]\nrollout: {keepFailedJobs: 0s}"},
	"keep failed jobs a day":             {in: "images: [nginx]\nrollout: {keepFailedJobs: 24h}"},
	"startup taint":                      {in: "images: [nginx]\nrollout: {startupTaint: image-prewarm.io/prewarming, startupTaintTimeout: 1h, keepTaintOnFailure: true, nodeLabel: true}"},
	"cluster-autoscaler startup taint":   {in: "images: [nginx]\nrollout: {startupTaint: startup-taint.cluster-autoscaler.kubernetes.io/prewarm}"},
	"tolerations":                        {in: "images: [nginx]\ntolerations: [{key: gpu, operator: Equal, value: 'true', effect: NoSchedule}, {key: x, operator: Exists}, {key: y, value: z}, {operator: Exists, effect: NoExecute, tolerationSeconds: 60}]"},
	"artifacts only": {in: "registries: [{server: harbor.x, credentialsSecret: s}]\nartifacts: [harbor.x/models/llama:8b]", check: func(t *testing.T, s *Spec) {
		if len(s.Artifacts) != 1 || s.Rollout.PullMethod() != MethodAuto || s.Rollout.Method != "" {
			t.Errorf("artifacts %v, method %q", s.Artifacts, s.Rollout.Method)
		}
	}},
	"image volumes": {in: "images: [nginx]\nartifacts: [ghcr.io/a/model:1]\nrollout: {method: imageVolume}"},
	"init containers": {in: "images: [nginx]\nrollout: {method: initContainers}", check: func(t *testing.T, s *Spec) {
		if got := s.References(); len(got) != 1 || got[0] != "nginx" {
			t.Errorf("References() = %v", got)
		}
	}},
	"once": {in: "images: [nginx]\nonce: true", check: func(t *testing.T, s *Spec) {
		if !s.Once {
			t.Error("once not set")
		}
	}},
}

var invalidSpecs = map[string]struct {
	in        string
	wantPaths []string
	wantMsg   string
}{
	"no images":                        {in: "registries: []", wantPaths: []string{"images"}, wantMsg: "at least one image"},
	"artifacts with init containers":   {in: "images: [nginx]\nartifacts: [ghcr.io/a/model:1]\nrollout: {method: initContainers}", wantPaths: []string{"artifacts"}, wantMsg: "cannot prewarm artifacts"},
	"unknown method":                   {in: "images: [nginx]\nrollout: {method: magic}", wantPaths: []string{"rollout.method"}, wantMsg: `"magic" is not a method`},
	"artifact duplicates an image":     {in: "images: [nginx]\nartifacts: [docker.io/library/nginx:latest]", wantPaths: []string{"artifacts[0]"}, wantMsg: "duplicate of images[0]"},
	"artifact on an unlisted registry": {in: "images: [nginx]\nartifacts: [harbor.x/m:1]", wantPaths: []string{"artifacts[0]"}, wantMsg: "not listed"},
	"empty document":                   {in: "", wantPaths: []string{"images"}},
	"unknown field":                    {in: "images: [nginx]\nimagez: [x]", wantMsg: `unknown field "imagez"`},
	"unknown rollout field":            {in: "images: [nginx]\nrollout: {window: 3}", wantMsg: `unknown field "window"`},
	"duplicate yaml key":               {in: "images: [nginx]\nimages: [redis]", wantMsg: "already set"},
	"not a mapping":                    {in: "[1, 2]", wantMsg: "the spec must be a mapping"},
	"broken yaml":                      {in: "images: [nginx", wantMsg: "yaml"},
	"images not a list":                {in: "images: nginx", wantPaths: []string{"images"}, wantMsg: "must be a list"},
	"invalid reference":                {in: "images: [nginx, 'Foo/Bar:1']", wantPaths: []string{"images[1]"}, wantMsg: "must be lowercase"},
	"empty image":                      {in: "images: ['']", wantPaths: []string{"images[0]"}, wantMsg: "invalid reference format"},
	"duplicate image":                  {in: "images: [nginx, docker.io/library/nginx:latest]", wantPaths: []string{"images[1]"}, wantMsg: "duplicate of images[0]"},
	"unlisted registry": {
		in:        "images: [harbor.x/a/b:1]",
		wantPaths: []string{"images[0]"},
		wantMsg:   `images[0]: registry "harbor.x" is not listed in registries and is not a known public registry`,
	},
	"server with scheme": {in: "registries: [{server: 'https://harbor.x'}]\nimages: [nginx]", wantPaths: []string{"registries[0].server"}},
	"server with path":   {in: "registries: [{server: harbor.x/team}]\nimages: [nginx]", wantPaths: []string{"registries[0].server"}},
	"server not a host":  {in: "registries: [{server: harbor}]\nimages: [nginx]", wantPaths: []string{"registries[0].server"}},
	"server missing":     {in: "registries: [{credentialsSecret: s}]\nimages: [nginx]", wantPaths: []string{"registries[0].server"}, wantMsg: "is required"},
	"duplicate server":   {in: "registries: [{server: h.x}, {server: H.X}]\nimages: [nginx]", wantPaths: []string{"registries[1].server"}, wantMsg: "duplicate of registries[0]"},
	"image in capitals": {
		in:        "registries: [{server: harbor.x, credentialsSecret: s}]\nimages: [Harbor.X/a:1]",
		wantPaths: []string{"images[0]"},
		wantMsg:   `images[0]: registry "Harbor.X" would get no credentials: kubelet looks them up by the registry name exactly as the image spells it, case included; spell it "harbor.x"`,
	},
	"docker hub in capitals": {
		in:        "registries: [{server: docker.io, credentialsSecret: hub}]\nimages: [Docker.io/nginx]",
		wantPaths: []string{"images[0]"},
		wantMsg:   `spell it "docker.io" or "registry-1.docker.io"`,
	},
	"ipv6 without port": {
		in:        "registries: [{server: '[::1]', credentialsSecret: s}]\nimages: ['[::1]/a:1']",
		wantPaths: []string{"registries[0].server"},
		wantMsg:   `registries[0].server: "[::1]" is an IPv6 address without a port: kubelet cannot match pull credentials to it`,
	},
	"ipv6 without port, task": {
		in:        "registries: [{server: '[::1]'}]\npullSecret: s\nimages: ['[::1]/a:1']",
		wantPaths: []string{"registries[0].server"},
		wantMsg:   "IPv6 address without a port",
	},
	"docker hub credentials to localhost": {
		in:        "registries: [{server: docker.io, credentialsSecret: hub}, {server: localhost}]\nimages: [nginx, localhost/app]",
		wantPaths: []string{"images[1]"},
		wantMsg:   `images[1]: registry "localhost" has no credentials, and kubelet would send it the Docker Hub credentials of registries[0]`,
	},
	"bad secret name":             {in: "registries: [{server: h.x, credentialsSecret: Bad_Name}]\nimages: [nginx]", wantPaths: []string{"registries[0].credentialsSecret"}},
	"negative cap":                {in: "registries: [{server: h.x, maxConcurrentPulls: -1}]\nimages: [nginx]", wantPaths: []string{"registries[0].maxConcurrentPulls"}},
	"bad selector key":            {in: "images: [nginx]\nnodeSelector: {'bad key': x}", wantPaths: []string{`nodeSelector["bad key"]`}},
	"bad selector value":          {in: "images: [nginx]\nnodeSelector: {zone: 'a b'}", wantPaths: []string{`nodeSelector["zone"]`}},
	"bad operator":                {in: "images: [nginx]\ntolerations: [{key: a, operator: Lt, value: '1'}]", wantPaths: []string{"tolerations[0].operator"}},
	"bad effect":                  {in: "images: [nginx]\ntolerations: [{operator: Exists, effect: Sometimes}]", wantPaths: []string{"tolerations[0].effect"}},
	"exists with value":           {in: "images: [nginx]\ntolerations: [{key: a, operator: Exists, value: b}]", wantPaths: []string{"tolerations[0].value"}},
	"equal without key":           {in: "images: [nginx]\ntolerations: [{operator: Equal, value: b}]", wantPaths: []string{"tolerations[0].operator"}},
	"seconds without NoExecute":   {in: "images: [nginx]\ntolerations: [{operator: Exists, tolerationSeconds: 5}]", wantPaths: []string{"tolerations[0].tolerationSeconds"}},
	"zero window":                 {in: "images: [nginx]\nrollout: {maxConcurrentNodes: 0}", wantPaths: []string{"rollout.maxConcurrentNodes"}, wantMsg: "at least 1"},
	"zero percent":                {in: "images: [nginx]\nrollout: {maxConcurrentNodes: 0%}", wantPaths: []string{"rollout.maxConcurrentNodes"}},
	"over 100 percent":            {in: "images: [nginx]\nrollout: {maxConcurrentNodes: 101%}", wantPaths: []string{"rollout.maxConcurrentNodes"}},
	"string window":               {in: "images: [nginx]\nrollout: {maxConcurrentNodes: '10'}", wantPaths: []string{"rollout.maxConcurrentNodes"}},
	"zero timeout":                {in: "images: [nginx]\nrollout: {pullTimeout: 0s}", wantPaths: []string{"rollout.pullTimeout"}},
	"short timeout":               {in: "images: [nginx]\nrollout: {pullTimeout: 30s}", wantPaths: []string{"rollout.pullTimeout"}},
	"long timeout":                {in: "images: [nginx]\nrollout: {pullTimeout: 25h}", wantPaths: []string{"rollout.pullTimeout"}},
	"bad duration":                {in: "images: [nginx]\nrollout: {pullTimeout: soon}", wantPaths: []string{"rollout.pullTimeout"}, wantMsg: "Go duration"},
	"keep failed jobs too long":   {in: "images: [nginx]\nrollout: {keepFailedJobs: 25h}", wantPaths: []string{"rollout.keepFailedJobs"}, wantMsg: "must be between 0s and 24h0m0s, got 25h0m0s"},
	"keep failed jobs negative":   {in: "images: [nginx]\nrollout: {keepFailedJobs: -1m}", wantPaths: []string{"rollout.keepFailedJobs"}},
	"startup taint not a key":     {in: "images: [nginx]\nrollout: {startupTaint: 'no spaces/allowed here'}", wantPaths: []string{"rollout.startupTaint"}, wantMsg: "is not a valid taint key"},
	"startup taint timeout short": {in: "images: [nginx]\nrollout: {startupTaint: a.io/b, startupTaintTimeout: 10s}", wantPaths: []string{"rollout.startupTaintTimeout"}, wantMsg: "must be between 1m0s and 24h0m0s"},
	"startup taint timeout bad":   {in: "images: [nginx]\nrollout: {startupTaint: a.io/b, startupTaintTimeout: soon}", wantPaths: []string{"rollout.startupTaintTimeout"}},
	"taint timeout without taint": {in: "images: [nginx]\nrollout: {startupTaintTimeout: 1h}", wantPaths: []string{"rollout.startupTaint"}, wantMsg: "name the taint key"},
	"keep failed jobs not a duration": {
		in: "images: [nginx]\nrollout: {pullTimeout: 15m, keepFailedJobs: an hour}", wantPaths: []string{"rollout.keepFailedJobs"}, wantMsg: "Go duration",
	},
	"keep failed jobs a number": {in: "images: [nginx]\nrollout: {keepFailedJobs: 3600}", wantPaths: []string{"rollout.keepFailedJobs"}},
	"negative retries":          {in: "images: [nginx]\nrollout: {retries: -1}", wantPaths: []string{"rollout.retries"}},
	"too many retries":          {in: "images: [nginx]\nrollout: {retries: 11}", wantPaths: []string{"rollout.retries"}},
	"retries not a number":      {in: "images: [nginx]\nrollout: {retries: x}", wantPaths: []string{"rollout.retries"}, wantMsg: "must be an integer"},
	"every problem reported": {
		in: "registries: [{server: 'https://h.x'}, {server: h.y, credentialsSecret: Bad_Name}]\n" +
			"images: [nginx, 'Foo/Bar', harbor.z/a:1]\n" +
			"nodeSelector: {'bad key': ok}\n" +
			"tolerations: [{operator: Exists, effect: Bad}]\n" +
			"rollout: {maxConcurrentNodes: 0, pullTimeout: 1s, retries: 99}",
		wantPaths: []string{
			"registries[0].server", "registries[1].credentialsSecret", "images[1]", "images[2]",
			`nodeSelector["bad key"]`, "tolerations[0].effect",
			"rollout.maxConcurrentNodes", "rollout.pullTimeout", "rollout.retries",
		},
	},
}

func TestParseValid(t *testing.T) {
	for name, tc := range validSpecs {
		t.Run(name, func(t *testing.T) {
			s, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	for name, tc := range invalidSpecs {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Parse error = %v, want a *ValidationError", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "invalid prewarm spec: ") || strings.Contains(msg, "\n") {
				t.Errorf("message is not one prefixed line: %q", msg)
			}
			for _, path := range tc.wantPaths {
				if !hasPath(verr, path) {
					t.Errorf("no problem at %s in %q", path, msg)
				}
			}
			if len(tc.wantPaths) > 1 && len(verr.Problems) < len(tc.wantPaths) {
				t.Errorf("got %d problems, want at least %d", len(verr.Problems), len(tc.wantPaths))
			}
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tc.wantMsg)
			}
		})
	}
}

func hasPath(e *ValidationError, path string) bool {
	for _, p := range e.Problems {
		if p.Path == path {
			return true
		}
	}
	return false
}

func TestParseLimits(t *testing.T) {
	manyImages := "images:\n"
	for i := range MaxImages + 1 {
		manyImages += "- nginx:1." + strconv.Itoa(i) + "\n"
	}
	manyRegistries := "images: [nginx]\nregistries:\n"
	for i := range MaxRegistries + 1 {
		manyRegistries += "- server: r" + strconv.Itoa(i) + ".example.com\n"
	}
	tests := map[string]struct {
		in       string
		wantPath string
		wantMsg  string
	}{
		"too large":           {in: "images: [nginx]\n#" + strings.Repeat("x", MaxSpecBytes), wantMsg: "byte limit"},
		"too many images":     {in: manyImages, wantPath: "images", wantMsg: "at most 200 images"},
		"too many registries": {in: manyRegistries, wantPath: "registries", wantMsg: "at most 50 registries"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Parse error = %v, want a *ValidationError", err)
			}
			if !hasPath(verr, tc.wantPath) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("got %v, want %q at path %q", err, tc.wantMsg, tc.wantPath)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	tests := map[string]struct {
		in              string
		wantTolerations []corev1.Toleration
		wantWindow      intstr.IntOrString
		wantTimeout     time.Duration
		wantRetries     int32
	}{
		"absent": {
			in:              "images: [nginx]",
			wantTolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			wantWindow:      intstr.FromInt32(10), wantTimeout: 15 * time.Minute, wantRetries: 1,
		},
		"explicit empty tolerations mean none": {
			in:              "images: [nginx]\ntolerations: []",
			wantTolerations: []corev1.Toleration{},
			wantWindow:      intstr.FromInt32(10), wantTimeout: 15 * time.Minute, wantRetries: 1,
		},
		"null values are absent": {
			in:              "images: [nginx]\ntolerations: null\nrollout: {maxConcurrentNodes: null, retries: null}",
			wantTolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			wantWindow:      intstr.FromInt32(10), wantTimeout: 15 * time.Minute, wantRetries: 1,
		},
		"given values kept": {
			in:              "images: [nginx]\ntolerations: [{key: a, operator: Exists}]\nrollout: {maxConcurrentNodes: 5%, pullTimeout: 2h, retries: 0}",
			wantTolerations: []corev1.Toleration{{Key: "a", Operator: corev1.TolerationOpExists}},
			wantWindow:      intstr.FromString("5%"), wantTimeout: 2 * time.Hour, wantRetries: 0,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if s.Tolerations == nil || len(s.Tolerations) != len(tc.wantTolerations) {
				t.Fatalf("tolerations = %#v, want %#v", s.Tolerations, tc.wantTolerations)
			}
			for i := range s.Tolerations {
				if s.Tolerations[i] != tc.wantTolerations[i] {
					t.Errorf("tolerations[%d] = %+v, want %+v", i, s.Tolerations[i], tc.wantTolerations[i])
				}
			}
			r := s.Rollout
			if r.MaxConcurrentNodes != tc.wantWindow || r.PullTimeout.Duration != tc.wantTimeout || r.Retries == nil || *r.Retries != tc.wantRetries {
				t.Errorf("rollout = %+v (retries %v), want %v %v %d", r, r.Retries, tc.wantWindow, tc.wantTimeout, tc.wantRetries)
			}
		})
	}
}

func TestFromConfigMap(t *testing.T) {
	tests := map[string]struct {
		cm       *corev1.ConfigMap
		wantPath string
		wantErr  bool
	}{
		"ok":          {cm: &corev1.ConfigMap{Data: map[string]string{SpecKey: "images: [nginx]"}}},
		"missing key": {cm: &corev1.ConfigMap{Data: map[string]string{"other": "x"}}, wantPath: "data.prewarm.yaml", wantErr: true},
		"invalid":     {cm: &corev1.ConfigMap{Data: map[string]string{SpecKey: "images: []"}}, wantPath: "images", wantErr: true},
		"nil":         {cm: nil, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := FromConfigMap(tc.cm)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr {
				if s == nil || len(s.Images) != 1 {
					t.Errorf("spec = %+v", s)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			if tc.wantPath != "" && !hasPath(verr, tc.wantPath) {
				t.Errorf("no problem at %s in %v", tc.wantPath, err)
			}
		})
	}
}

func TestRunID(t *testing.T) {
	base := mustParse(t, fullSpec)
	tests := map[string]struct {
		in       string
		wantSame bool
	}{
		"same content, other order and format": {wantSame: true, in: `{"once":false,"rollout":{"retries":1,"pullTimeout":"900s","maxConcurrentNodes":10},
			"tolerations":[],"nodeSelector":{"node.kubernetes.io/instance-type":"g5.xlarge"},
			"images":["harbor.example.com/ml/pytorch:2.5.1","harbor.example.com/ml/triton@` + digest + `","nginx:1.27"],
			"registries":[{"maxConcurrentPulls":20,"credentialsSecret":"harbor-robot","server":"harbor.example.com"}]}`},
		"defaults written out": {wantSame: true, in: strings.Replace(fullSpec, "rollout:\n  maxConcurrentNodes: 10\n  pullTimeout: 15m\n  retries: 1\n", "", 1)},
		"other image":          {in: strings.Replace(fullSpec, "nginx:1.27", "nginx:1.28", 1)},
		"other tolerations":    {in: strings.Replace(fullSpec, "tolerations: []\n", "", 1)},
		"other window":         {in: strings.Replace(fullSpec, "maxConcurrentNodes: 10", "maxConcurrentNodes: 10%", 1)},
		// How long failures stay is cleanup policy: editing it must not re-run the spec.
		"other keepFailedJobs": {wantSame: true, in: strings.Replace(fullSpec, "retries: 1\n", "retries: 1\n  keepFailedJobs: 5m\n", 1)},
		"once":                 {in: strings.Replace(fullSpec, "once: false", "once: true", 1)},
		// So is the node gate: adding a startup taint or a label must not pull again.
		"node gate": {wantSame: true, in: strings.Replace(fullSpec, "retries: 1\n", "retries: 1\n  startupTaint: a.io/b\n  startupTaintTimeout: 1h\n  keepTaintOnFailure: true\n  nodeLabel: true\n", 1)},
	}
	id := base.RunID()
	if len(id) != 10 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("RunID %q is not 10 lowercase hex characters", id)
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			other := mustParse(t, tc.in).RunID()
			if (other == id) != tc.wantSame {
				t.Errorf("RunID %s vs %s, wantSame %v", other, id, tc.wantSame)
			}
		})
	}
}

func TestRunIDOfCodeBuiltSpec(t *testing.T) {
	// The task API builds specs in code and stores them as YAML: the zero
	// values must mean "default" both for RunID and after a round trip.
	built := &Spec{Images: []string{"nginx:1.27"}, Once: true}
	parsed := mustParse(t, "images: [nginx:1.27]\nonce: true")
	if built.RunID() != parsed.RunID() {
		t.Errorf("code-built RunID %s != parsed %s", built.RunID(), parsed.RunID())
	}
	if built.Tolerations != nil || built.Rollout.Retries != nil || built.Rollout.KeepFailedJobs != nil {
		t.Error("RunID modified the spec")
	}
	data, err := yaml.Marshal(built)
	if err != nil {
		t.Fatal(err)
	}
	if again := mustParse(t, string(data)); again.RunID() != built.RunID() {
		t.Errorf("round trip changed RunID:\n%s", data)
	}
	none := &Spec{Images: []string{"nginx:1.27"}, Tolerations: []corev1.Toleration{}}
	data, err = yaml.Marshal(none)
	if err != nil {
		t.Fatal(err)
	}
	if again := mustParse(t, string(data)); again.Tolerations == nil || len(again.Tolerations) != 0 {
		t.Errorf("explicit empty tolerations lost in round trip:\n%s", data)
	}
}

func TestKeepFailedJobs(t *testing.T) {
	tests := map[string]struct {
		in   string
		want time.Duration
	}{
		"absent":   {in: "images: [nginx]", want: DefaultKeepFailedJobs},
		"null":     {in: "images: [nginx]\nrollout: {keepFailedJobs: null}", want: DefaultKeepFailedJobs},
		"given":    {in: "images: [nginx]\nrollout: {keepFailedJobs: 10m}", want: 10 * time.Minute},
		"explicit": {in: "images: [nginx]\nrollout: {keepFailedJobs: 0s}", want: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := mustParse(t, tc.in)
			if got := s.KeepFailedJobs(); got != tc.want {
				t.Fatalf("KeepFailedJobs() = %v, want %v", got, tc.want)
			}
			// The task API stores the specs it built as YAML: an explicit 0 must
			// survive the round trip rather than become the default.
			data, err := yaml.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustParse(t, string(data)).KeepFailedJobs(); got != tc.want {
				t.Errorf("after a round trip KeepFailedJobs() = %v, want %v:\n%s", got, tc.want, data)
			}
		})
	}
	if got := (&Spec{}).KeepFailedJobs(); got != DefaultKeepFailedJobs {
		t.Errorf("code-built spec: KeepFailedJobs() = %v, want the default", got)
	}
}

func mustParse(t *testing.T, in string) *Spec {
	t.Helper()
	s, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestWindowSize(t *testing.T) {
	tests := map[string]struct {
		window   intstr.IntOrString
		eligible int
		want     int
	}{
		"int":                  {window: intstr.FromInt32(10), eligible: 100, want: 10},
		"int above eligible":   {window: intstr.FromInt32(10), eligible: 3, want: 10},
		"percent":              {window: intstr.FromString("10%"), eligible: 100, want: 10},
		"percent rounds up":    {window: intstr.FromString("10%"), eligible: 15, want: 2},
		"percent at least one": {window: intstr.FromString("1%"), eligible: 5, want: 1},
		"hundred percent":      {window: intstr.FromString("100%"), eligible: 7, want: 7},
		"no eligible nodes":    {window: intstr.FromString("50%"), eligible: 0, want: 1},
		"invalid is one":       {window: intstr.FromString("x"), eligible: 10, want: 1},
		"zero is one":          {window: intstr.FromInt32(0), eligible: 10, want: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &Spec{Rollout: Rollout{MaxConcurrentNodes: tc.window}}
			if got := s.WindowSize(tc.eligible); got != tc.want {
				t.Errorf("WindowSize(%d) = %d, want %d", tc.eligible, got, tc.want)
			}
		})
	}
}

func TestPullPolicyFor(t *testing.T) {
	tests := map[string]struct {
		image string
		want  corev1.PullPolicy
	}{
		"tagged":        {image: "nginx:1.27", want: corev1.PullIfNotPresent},
		"latest":        {image: "nginx:latest", want: corev1.PullAlways},
		"untagged":      {image: "harbor.x/a/b", want: corev1.PullAlways},
		"digest":        {image: "harbor.x/a/b@" + digest, want: corev1.PullIfNotPresent},
		"latest pinned": {image: "nginx:latest@" + digest, want: corev1.PullIfNotPresent},
		"registry port": {image: "registry.local:5000/app", want: corev1.PullAlways},
		"port and tag":  {image: "registry.local:5000/app:v2", want: corev1.PullIfNotPresent},
		"invalid":       {image: "Not Valid", want: corev1.PullAlways},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := (&Spec{}).PullPolicyFor(tc.image); got != tc.want {
				t.Errorf("PullPolicyFor(%q) = %s, want %s", tc.image, got, tc.want)
			}
		})
	}
}

func TestRegistryHostAndFor(t *testing.T) {
	s := &Spec{Registries: []Registry{
		{Server: "harbor.example.com", CredentialsSecret: "robot"},
		{Server: "index.docker.io", CredentialsSecret: "hub"},
		{Server: "registry.local:5000"},
	}}
	tests := map[string]struct {
		image      string
		wantHost   string
		wantErr    bool
		wantSecret string // of RegistryFor; "" means nil
	}{
		"short name":   {image: "nginx", wantHost: "docker.io", wantSecret: "hub"},
		"hub org":      {image: "myorg/app:1", wantHost: "docker.io", wantSecret: "hub"},
		"listed":       {image: "harbor.example.com/ml/x:1", wantHost: "harbor.example.com", wantSecret: "robot"},
		"listed upper": {image: "HARBOR.example.com/ml/x:1", wantHost: "HARBOR.example.com", wantSecret: "robot"},
		"port":         {image: "registry.local:5000/x", wantHost: "registry.local:5000"},
		"unlisted":     {image: "ghcr.io/a/b", wantHost: "ghcr.io"},
		"invalid":      {image: "a b", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			host, err := RegistryHost(tc.image)
			if (err != nil) != tc.wantErr || host != tc.wantHost {
				t.Errorf("RegistryHost(%q) = %q, %v; want %q, err %v", tc.image, host, err, tc.wantHost, tc.wantErr)
			}
			r := s.RegistryFor(tc.image)
			switch {
			case tc.wantSecret == "" && r != nil && r.CredentialsSecret != "":
				t.Errorf("RegistryFor(%q) = %+v, want no credentials", tc.image, r)
			case tc.wantSecret != "" && (r == nil || r.CredentialsSecret != tc.wantSecret):
				t.Errorf("RegistryFor(%q) = %+v, want secret %q", tc.image, r, tc.wantSecret)
			}
		})
	}
	if r := s.RegistryFor("registry.local:5000/x"); r == nil || r.Server != "registry.local:5000" {
		t.Errorf("RegistryFor(port) = %+v", r)
	}
}

func TestCredentialHosts(t *testing.T) {
	tests := map[string][]string{
		"harbor.example.com":   {"harbor.example.com"},
		"Harbor.Example.com":   {"harbor.example.com", "Harbor.Example.com"},
		"LOCALHOST:5000":       {"localhost:5000", "LOCALHOST:5000"},
		"docker.io":            {"docker.io", "registry-1.docker.io"},
		"index.docker.io":      {"docker.io", "registry-1.docker.io"},
		"registry-1.docker.io": {"docker.io", "registry-1.docker.io"},
		"Docker.io":            {"docker.io", "registry-1.docker.io", "Docker.io"},
	}
	for server, want := range tests {
		if got := CredentialHosts(server); !slices.Equal(got, want) {
			t.Errorf("CredentialHosts(%q) = %q, want %q", server, got, want)
		}
	}
}

func TestValidateCodeBuiltSpec(t *testing.T) {
	// Validate checks the spec as given: defaults are Parse's or Default's job.
	s := &Spec{Images: []string{"nginx"}}
	if err := s.Validate(); err == nil {
		t.Fatal("undefaulted spec validated")
	}
	s.Default()
	if err := s.Validate(); err != nil {
		t.Fatalf("defaulted spec: %v", err)
	}
	if s.Rollout.PullTimeout != (metav1.Duration{Duration: DefaultPullTimeout}) {
		t.Errorf("pullTimeout = %v", s.Rollout.PullTimeout)
	}
}

func TestValidationErrorRendering(t *testing.T) {
	many := make([]Problem, maxRenderedProblems+5)
	for i := range many {
		many[i] = Problem{Path: "images[" + strconv.Itoa(i) + "]", Message: "bad"}
	}
	tests := map[string]struct {
		problems []Problem
		want     string
	}{
		"paths":        {problems: []Problem{{"images[3]", "bad"}, {"rollout.pullTimeout", "too long"}}, want: "invalid prewarm spec: images[3]: bad; rollout.pullTimeout: too long"},
		"no path":      {problems: []Problem{{"", "spec is too large"}}, want: "invalid prewarm spec: spec is too large"},
		"one line":     {problems: []Problem{{"x", "a\nb"}}, want: "invalid prewarm spec: x: a b"},
		"bounded size": {problems: many, want: "; images[99]: bad; and 5 more problems"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := (&ValidationError{Problems: tc.problems}).Error()
			if !strings.HasSuffix(got, tc.want) {
				t.Errorf("Error() = %q, want suffix %q", got, tc.want)
			}
		})
	}
}
