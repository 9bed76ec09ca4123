// Package tasks serves the task API: ad hoc, one-shot prewarms over HTTP, optionally
// with one registry's credentials (the original IPS contract).
//
// # Endpoints
//
//	POST   /api/v1/tasks        create a task            RBAC verb create
//	GET    /api/v1/tasks        list tasks (oldest first) RBAC verb list
//	GET    /api/v1/tasks/{id}   one task                 RBAC verb get    (resourceName id)
//	DELETE /api/v1/tasks/{id}   cancel / delete a task   RBAC verb delete (resourceName id)
//
// Every request needs "Authorization: Bearer <token>" with a Kubernetes token (checked
// with a TokenReview) whose user has the verb on the resource tasks in the API group
// image-prewarm.io in the release namespace (checked with a SubjectAccessReview), e.g.
//
//	rules: [{apiGroups: [image-prewarm.io], resources: [tasks], verbs: [create, get, list, delete]}]
//
// # Create
//
// The body is one JSON object (Content-Type: application/json, at most 1 MiB):
//
//	images        list of image references (images and artifacts together 1..200)
//	artifacts     list of OCI artifact references (model weights, datasets): pulled as
//	              image volumes only, on nodes that can mount them
//	batchSize     nodes pulling at once (the rolling window), 1..10000, default 10
//	registry      registry host[:port] the credentials are for, e.g. "harbor.example.com"
//	username      registry user (no ':')
//	password      registry password or token
//	nodeSelector  object of node labels; the task covers the Ready nodes matching all of
//	              them (default: every Ready node)
//
// Credentials are optional; registry requires username and password, username or
// password require registry, and registry must serve at least one of the images. An
// image from a registry that is neither the given one nor a known public registry is
// refused. Field names are case-sensitive; unknown or repeated fields, wrong types and
// data after the object are refused. JSON null means "not given".
//
// 201 {"taskId":"<10 characters a-z2-7>"}, with Location: /api/v1/tasks/<id>.
//
// # Read
//
// GET answers a Task (see the type): state (Pending, Running, Succeeded,
// CompletedWithFailures, Failed, Invalid, Cancelled), progress counts, total, failed
// nodes with kubelet's reason, creation/start/finish times, and the request without
// credentials (images, batchSize, registry, nodeSelector). The collection answers
// {"tasks":[...]}.
//
// # Delete
//
// DELETE stops the task at once: its spec ConfigMap, Jobs, pull Secret and status are
// deleted directly (not left to the controller). It answers 200
// {"taskId":…,"state":"Cancelled"}; a task whose run had already finished keeps its
// result as state. The task stays readable with that state (from a tombstone
// ConfigMap) until the retention period ends; deleting it again answers the same.
//
// # Errors
//
// Every refusal is JSON {"error":"<field>: <message>","field":"<field>"} with, when
// there are several problems, "problems":[{"field":…,"message":…}]. Field is a body
// field ("images[2]", "password", `nodeSelector["k"]`), "body", "id", "path",
// "method", or a header ("Authorization", "Content-Type"):
//
//	400 malformed JSON, unknown field, wrong type, invalid value, invalid task ID
//	401 no, malformed or invalid bearer token (WWW-Authenticate: Bearer)
//	403 the user lacks the verb on tasks.image-prewarm.io (no field)
//	404 no such task, or no such path
//	405 method not allowed on the path (Allow lists the methods)
//	413 body over 1 MiB
//	415 Content-Type is not application/json
//	500 / 503 the API server failed; the body is generic, the log has the detail under
//	    the X-Request-Id every response carries. Never for bad input.
//
// Nothing is read from the body or written to the cluster before the caller is
// authenticated and authorized.
//
// # Storage
//
// A task is a prewarm spec ConfigMap "task-<id>" (labels image-prewarm.io/config=true,
// image-prewarm.io/task=true, image-prewarm.io/task-id=<id>) with once: true, run by
// the controller like any spec; so any replica accepts requests and the leader runs
// them. With credentials, the Secret "image-pull-secret-<id>" (dockerconfigjson) is
// created first, then the ConfigMap naming it in pullSecret, then the ConfigMap is made
// the Secret's owner, so the garbage collector removes the Secret with the task even
// when no controller runs. Credentials are in that Secret only: never in a ConfigMap,
// a status, a log line, an Event or a response.
//
// # Retention
//
// The Janitor removes a task (spec, status, Secret, tombstone) once its run finished
// longer than the retention period ago; a run that cannot proceed (Failed, Invalid)
// counts from the task's creation.
package tasks
