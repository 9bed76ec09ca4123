package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/pullsecret"
)

const (
	// MaxBodyBytes bounds a request body; anything larger is refused with 413 before
	// it is decoded.
	MaxBodyBytes = 1 << 20
	// DefaultBatchSize is the rolling window of a task that gives no batchSize.
	DefaultBatchSize = 10
	// MaxBatchSize bounds batchSize; a window larger than the cluster is harmless, a
	// number that overflows the spec's int32 is not.
	MaxBatchSize = 10000
	// Bounds of the credential fields: generous for registry tokens (cloud registries
	// hand out passwords of a few KiB), small enough to keep the Secret sane.
	maxUsernameBytes = 1024
	maxPasswordBytes = 16 << 10
)

// knownFields are the request's fields, in the order messages list them.
var knownFields = []string{"images", "artifacts", "batchSize", "registry", "username", "password", "nodeSelector"}

// Request is a decoded, validated task request. Credential formats redacted (String,
// GoString, MarshalJSON), so logging a Request never shows the password.
type Request struct {
	Images []string
	// Artifacts are OCI artifacts (model weights): pulled as image volumes only.
	Artifacts []string
	// BatchSize is the rolling window: DefaultBatchSize when the request gave none.
	BatchSize    int
	NodeSelector map[string]string
	// Credential is zero when the task pulls anonymously.
	Credential pullsecret.Credential
}

// HasCredentials reports whether the task gets a pull Secret.
func (r *Request) HasCredentials() bool { return r.Credential.Server != "" }

// Spec is the prewarm spec of task id: a one-shot run whose credentials, if any, are
// in the task's own Secret (only its name is in the spec).
func (r *Request) Spec(id string) *config.Spec {
	s := &config.Spec{
		Images:       append([]string(nil), r.Images...),
		Artifacts:    append([]string(nil), r.Artifacts...),
		NodeSelector: r.NodeSelector,
		Rollout:      config.Rollout{MaxConcurrentNodes: intstr.FromInt32(int32(r.BatchSize))},
		Once:         true,
	}
	if r.HasCredentials() {
		s.Registries = []config.Registry{{Server: r.Credential.Server}}
		s.PullSecret = jobs.SecretName(id)
	}
	return s
}

// DecodeRequest reads a task request from body, strictly: one JSON object, known
// fields only (case-sensitive, each at most once), the right types, nothing after it.
// It then validates the request. Every error is an *Error naming the field; a body
// over the limit of an http.MaxBytesReader is a 413.
func DecodeRequest(body io.Reader) (*Request, error) {
	dec := json.NewDecoder(body)
	raw, err := readObject(dec)
	if err != nil {
		return nil, err
	}
	// Trailing data is rejected: "{...}{...}" or "{...} x" is not one request.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			return nil, bodyTooLarge()
		}
		return nil, badRequest("body", "unexpected data after the JSON object; send exactly one object")
	}
	req := &Request{BatchSize: DefaultBatchSize}
	for _, name := range knownFields {
		if v, ok := raw[name]; ok {
			if err := decodeField(req, name, v); err != nil {
				return nil, err
			}
		}
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	return req, nil
}

// readObject reads the top-level object's fields as raw values, refusing unknown and
// repeated fields. Go's decoder matches field names case-insensitively and keeps the
// last of repeated keys; both would hide a client's mistake.
func readObject(dec *json.Decoder) (map[string]json.RawMessage, error) {
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, badRequest("body", "is empty; send a JSON object such as {\"images\":[\"nginx:1.27\"]}")
	}
	if err != nil {
		return nil, syntaxError(err)
	}
	if tok != json.Delim('{') {
		return nil, badRequest("body", "must be a JSON object with the fields %s", strings.Join(knownFields, ", "))
	}
	raw := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		key, _ := tok.(string) // the decoder guarantees a string in key position
		if !slices.Contains(knownFields, key) {
			field := key
			if field == "" {
				field = "body" // an empty name cannot name the field at fault
			}
			return nil, badRequest(field, "unknown field %s; the fields are %s (case-sensitive)", quote(key), strings.Join(knownFields, ", "))
		}
		if _, dup := raw[key]; dup {
			return nil, badRequest(key, "given more than once")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, syntaxError(err)
		}
		raw[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, syntaxError(err)
	}
	return raw, nil
}

// decodeField stores one field's value. JSON null means "not given" for every field.
func decodeField(req *Request, name string, v json.RawMessage) error {
	if string(v) == "null" {
		return nil
	}
	switch name {
	case "images":
		return decodeReferences(&req.Images, name, v)
	case "artifacts":
		return decodeReferences(&req.Artifacts, name, v)
	case "batchSize":
		var n int
		if err := json.Unmarshal(v, &n); err != nil {
			kind := jsonKind(v)
			if kind == "a number" {
				kind = "a number that is not a whole number in range"
			}
			return badRequest(name, "must be a whole number from 1 to %d, got %s", MaxBatchSize, kind)
		}
		req.BatchSize = n
		return nil
	case "nodeSelector":
		return decodeNodeSelector(req, v)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return badRequest(name, "must be a string, got %s", jsonKind(v))
	}
	switch name {
	case "registry":
		req.Credential.Server = s
	case "username":
		req.Credential.Username = s
	case "password":
		req.Credential.Password = s
	}
	return nil
}

// decodeReferences decodes images or artifacts element by element, so a wrong type
// names its index.
func decodeReferences(into *[]string, field string, v json.RawMessage) error {
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		return badRequest(field, "must be a list of image references (strings), got %s", jsonKind(v))
	}
	refs := make([]string, len(items))
	for i, item := range items {
		if err := json.Unmarshal(item, &refs[i]); err != nil || string(item) == "null" {
			return badRequest(fmt.Sprintf("%s[%d]", field, i), "must be an image reference (a string), got %s", jsonKind(item))
		}
	}
	*into = refs
	return nil
}

func decodeNodeSelector(req *Request, v json.RawMessage) error {
	var items map[string]json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		return badRequest("nodeSelector", "must be an object of label keys to values (strings), got %s", jsonKind(v))
	}
	req.NodeSelector = make(map[string]string, len(items))
	for _, k := range slices.Sorted(maps.Keys(items)) { // sorted: the same answer every time
		item := items[k]
		var s string
		if err := json.Unmarshal(item, &s); err != nil || string(item) == "null" {
			return badRequest(fmt.Sprintf("nodeSelector[%s]", quote(k)), "must be a string label value, got %s", jsonKind(item))
		}
		req.NodeSelector[k] = s
	}
	return nil
}

// jsonKind names a JSON value's type for a message, never quoting the value itself:
// it may be a credential sent in the wrong field.
func jsonKind(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	switch {
	case s == "":
		return "nothing"
	case s == "null":
		return "null"
	case s == "true" || s == "false":
		return "a boolean"
	case s[0] == '"':
		return "a string"
	case s[0] == '[':
		return "a list"
	case s[0] == '{':
		return "an object"
	}
	return "a number"
}

// syntaxError reports a body that is not JSON past its first token (readObject tells
// an empty body apart). The decoder's offset is kept, its message is not: it quotes
// input bytes, which may belong to a password.
func syntaxError(err error) *Error {
	var syn *json.SyntaxError
	switch {
	case tooLarge(err):
		return bodyTooLarge()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("body", "is not valid JSON: it ends before the object is complete")
	case errors.As(err, &syn):
		return badRequest("body", "is not valid JSON: syntax error at byte %d", syn.Offset)
	}
	return badRequest("body", "is not valid JSON")
}

func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func bodyTooLarge() *Error {
	return fail(http.StatusRequestEntityTooLarge, "body", "is larger than %d bytes", MaxBodyBytes)
}
