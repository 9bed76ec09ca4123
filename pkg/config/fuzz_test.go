package config

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParse: no input panics, and an accepted spec is valid, has a stable
// RunID and survives a marshal/parse round trip (the task API stores specs
// it built as YAML).
func FuzzParse(f *testing.F) {
	for _, tc := range validSpecs {
		f.Add([]byte(tc.in))
	}
	for _, tc := range invalidSpecs {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if _, ok := err.(*ValidationError); !ok {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted spec does not re-validate: %v", err)
		}
		id := s.RunID()
		if again := s.RunID(); again != id {
			t.Fatalf("RunID not stable: %s vs %s", id, again)
		}
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if back.RunID() != id {
			t.Fatalf("round trip changed RunID:\n%s", out)
		}
	})
}
