package metrics

// TaskRequests counts task API responses by HTTP status code
// (image_prewarm_task_api_requests_total{code}); the code is bounded by what the API
// answers (201, 200, 400, 401, 403, 404, 405, 413, 415, 500, 503).
var TaskRequests = counter("task_api_requests_total", "Task API requests by HTTP status code of the response.", "code")
