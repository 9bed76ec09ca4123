package tasks

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Error is a request the API refuses: an HTTP status, the request field at fault and a
// message for the caller. Every 4xx response body is an Error; 5xx bodies are generic.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	// Field names the request part at fault: a body field ("images[2]", "password"),
	// "body", "id", or a header ("Authorization", "Content-Type"). Empty for 403.
	Field string `json:"field,omitempty"`
	// Problems lists every problem when there is more than one, so a caller fixes
	// them all in one round trip. Message then joins them.
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one thing wrong with a request.
type Problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// fail builds an Error whose message starts with the field, so the message reads
// on its own ("password: is required when registry is given").
func fail(status int, field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &Error{Status: status, Field: field, Message: msg}
}

func badRequest(field, format string, args ...any) *Error {
	return fail(http.StatusBadRequest, field, format, args...)
}

// problemsError turns problems into one 400 naming the first problem's field.
func problemsError(ps []Problem) *Error {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Field + ": " + p.Message
	}
	e := &Error{Status: http.StatusBadRequest, Field: ps[0].Field, Message: strings.Join(parts, "; ")}
	if len(ps) > 1 {
		e.Problems = ps
	}
	return e
}

// quote quotes a caller's value for a message, cut short so that one huge value
// cannot swamp the response.
func quote(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}

// writeJSON writes v with status. Encoding cannot fail for the types used here (plain
// structs, strings, maps of strings), so an error only means the client went away.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
