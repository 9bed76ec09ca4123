// Package taskstest holds what the task API's unit tests and the end-to-end tests
// share: a corpus of malformed requests with the answer each must get, and a
// throwaway serving certificate.
package taskstest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

const (
	base = "/api/v1/tasks"
	// UnknownID is a well-formed task ID that no test creates.
	UnknownID = "zzzzzzzzzz"
	jsonType  = "application/json"
)

// Case is one malformed request and the 4xx it must get: the status and the field
// the answer names. Requests carry no token; the caller adds one with every right, so
// that the refusal is about the request itself.
type Case struct {
	Name        string
	Method      string
	Path        string // may hold escapes, e.g. "%00"
	ContentType string // empty: no Content-Type header
	Body        string
	WantStatus  int
	WantField   string
}

// NewRequest builds the case's request against baseURL ("" for httptest.NewRequest
// style targets).
func (c Case) NewRequest(baseURL string) (*http.Request, error) {
	var body io.Reader
	if c.Body != "" {
		body = strings.NewReader(c.Body)
	}
	r, err := http.NewRequest(c.Method, baseURL+c.Path, body)
	if err != nil {
		return nil, err
	}
	if c.ContentType != "" {
		r.Header.Set("Content-Type", c.ContentType)
	}
	return r, nil
}

// post is a POST of body with the right content type.
func post(name, body string, status int, field string) Case {
	return Case{Name: name, Method: http.MethodPost, Path: base, ContentType: jsonType, Body: body, WantStatus: status, WantField: field}
}

func bad(name, body, field string) Case { return post(name, body, http.StatusBadRequest, field) }

// withImages completes a body with a valid images field, so that only the part under
// test is wrong.
func withImages(fields string) string {
	if fields == "" {
		return `{"images":["nginx:1.27"]}`
	}
	return `{"images":["nginx:1.27"],` + fields + `}`
}

func creds(registry, user, password string) string {
	return fmt.Sprintf(`"registry":%q,"username":%q,"password":%q`, registry, user, password)
}

// Malformed returns every malformed request of the corpus (more than 100).
func Malformed() []Case {
	var cs []Case
	for _, group := range [][]Case{badJSON(), unknownFields(), wrongTypes(), badValues(), badCredentials(), badTransport(), badRoutes()} {
		cs = append(cs, group...)
	}
	return cs
}

// Check verifies an answer to the case: the status, a JSON error body naming the
// field, and a message that starts with the field and says more than its name.
func (c Case) Check(code int, contentType string, body []byte) error {
	var e struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	if err := json.Unmarshal(body, &e); err != nil || contentType != jsonType {
		return fmt.Errorf("%d %q body %q: not a JSON error (%v)", code, contentType, body, err)
	}
	if code != c.WantStatus || e.Field != c.WantField {
		return fmt.Errorf("%d field %q (%s), want %d field %q", code, e.Field, e.Error, c.WantStatus, c.WantField)
	}
	if !strings.HasPrefix(e.Error, c.WantField+": ") || len(e.Error) < len(c.WantField)+12 {
		return fmt.Errorf("message %q does not name %q clearly", e.Error, c.WantField)
	}
	return nil
}
