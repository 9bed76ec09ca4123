package taskstest

import (
	"fmt"
	"net/http"
	"strings"
)

func badJSON() []Case {
	valid := withImages("")
	bodies := map[string]string{
		"empty":                 "",
		"whitespace only":       " \n\t ",
		"open brace":            "{",
		"close brace":           "}",
		"value missing":         `{"images":`,
		"unterminated object":   `{"images":["nginx:1.27"]`,
		"unterminated string":   `{"images":["nginx:1.27`,
		"not JSON":              "not json",
		"single quotes":         `{'images':['nginx:1.27']}`,
		"unquoted key":          `{images:["nginx:1.27"]}`,
		"trailing comma list":   `{"images":["nginx:1.27",]}`,
		"trailing comma object": `{"images":["nginx:1.27"],}`,
		"missing comma":         `{"images":["nginx:1.27"] "batchSize":1}`,
		"missing colon":         `{"images" ["nginx:1.27"]}`,
		"top-level list":        `[]`,
		"list of objects":       `[` + valid + `]`,
		"top-level string":      `"nginx:1.27"`,
		"top-level number":      `42`,
		"top-level null":        `null`,
		"top-level true":        `true`,
		"two objects":           valid + valid,
		"trailing word":         valid + " x",
		"trailing bracket":      valid + "]",
		"trailing NUL":          valid + "\x00",
		"byte order mark":       "\xef\xbb\xbf" + valid,
		"bad escape":            `{"images":["ng\qinx:1.27"]}`,
		"NaN":                   `{"images":["nginx:1.27"],"batchSize":NaN}`,
		"leading zero":          `{"images":["nginx:1.27"],"batchSize":01}`,
		"comment":               "// a comment\n" + valid,
		"raw control character": "{\"images\":[\"nginx\t:1.27\"]}",
	}
	cs := make([]Case, 0, len(bodies))
	for name, body := range bodies {
		cs = append(cs, bad("bad JSON: "+name, body, "body"))
	}
	return cs
}

func unknownFields() []Case {
	cs := []Case{
		bad("unknown field: empty name", withImages(`"":1`), "body"),
		bad("repeated field: images", `{"images":["nginx:1.27"],"images":["nginx:1.27"]}`, "images"),
		bad("repeated field: password", `{"images":["harbor.example.com/a:1"],`+creds("harbor.example.com", "u", "p")+`,"password":"q"}`, "password"),
	}
	for _, name := range []string{"foo", "Images", "IMAGES", "batch_size", "BatchSize", "pullSecret", "registries", "once", "tolerations", "rollout", "user", "pass", "nodeselector", "credentialsSecret", "images "} {
		cs = append(cs, bad("unknown field: "+name, withImages(fmt.Sprintf("%q:1", name)), name))
	}
	return cs
}

func wrongTypes() []Case {
	return []Case{
		bad("images: string", `{"images":"nginx:1.27"}`, "images"),
		bad("images: number", `{"images":1}`, "images"),
		bad("images: object", `{"images":{}}`, "images"),
		bad("images: boolean", `{"images":true}`, "images"),
		bad("images[0]: number", `{"images":[1]}`, "images[0]"),
		bad("images[1]: null", `{"images":["nginx:1.27",null]}`, "images[1]"),
		bad("images[0]: list", `{"images":[["nginx:1.27"]]}`, "images[0]"),
		bad("images[0]: object", `{"images":[{"image":"nginx:1.27"}]}`, "images[0]"),
		bad("artifacts: string", withImages(`"artifacts":"ghcr.io/a/m:1"`), "artifacts"),
		bad("artifacts[1]: number", withImages(`"artifacts":["ghcr.io/a/m:1",2]`), "artifacts[1]"),
		bad("batchSize: word", withImages(`"batchSize":"x"`), "batchSize"),
		bad("batchSize: numeric string", withImages(`"batchSize":"10"`), "batchSize"),
		bad("batchSize: fraction", withImages(`"batchSize":1.5`), "batchSize"),
		bad("batchSize: exponent", withImages(`"batchSize":1e3`), "batchSize"),
		bad("batchSize: overflow", withImages(`"batchSize":99999999999999999999`), "batchSize"),
		bad("batchSize: boolean", withImages(`"batchSize":true`), "batchSize"),
		bad("batchSize: list", withImages(`"batchSize":[]`), "batchSize"),
		bad("batchSize: object", withImages(`"batchSize":{}`), "batchSize"),
		bad("registry: number", withImages(`"registry":1`), "registry"),
		bad("registry: list", withImages(`"registry":["harbor.example.com"]`), "registry"),
		bad("username: object", withImages(`"username":{}`), "username"),
		bad("password: number", withImages(`"password":123`), "password"),
		bad("password: boolean", withImages(`"password":true`), "password"),
		bad("nodeSelector: string", withImages(`"nodeSelector":"a=b"`), "nodeSelector"),
		bad("nodeSelector: list", withImages(`"nodeSelector":["a"]`), "nodeSelector"),
		bad("nodeSelector value: number", withImages(`"nodeSelector":{"a":1}`), `nodeSelector["a"]`),
		bad("nodeSelector value: null", withImages(`"nodeSelector":{"a":null}`), `nodeSelector["a"]`),
		bad("nodeSelector value: object", withImages(`"nodeSelector":{"a":{"b":"c"}}`), `nodeSelector["a"]`),
	}
}

func badValues() []Case {
	many := make([]string, 201)
	for i := range many {
		many[i] = fmt.Sprintf("%q", fmt.Sprintf("nginx:1.%d", i))
	}
	cs := []Case{
		bad("no fields", `{}`, "images"),
		bad("images: empty", `{"images":[]}`, "images"),
		bad("artifacts: unlisted registry", `{"artifacts":["harbor.example.com/m:1"]}`, "artifacts[0]"),
		bad("artifacts: invalid reference", `{"artifacts":["UPPER/m:1"]}`, "artifacts[0]"),
		bad("images: null", `{"images":null}`, "images"),
		bad("images: 201", `{"images":[`+strings.Join(many, ",")+`]}`, "images"),
		bad("images: duplicate", `{"images":["nginx","nginx:latest"]}`, "images[1]"),
		bad("images: duplicate spelled out", `{"images":["docker.io/library/nginx:1.27","nginx:1.27"]}`, "images[1]"),
		bad("images: private registry without credentials", `{"images":["harbor.example.com/ml/a:1"]}`, "images[0]"),
		bad("images: private registry after a public one", `{"images":["nginx:1.27","registry.local:5000/a:1"]}`, "images[1]"),
		bad("batchSize: 0", withImages(`"batchSize":0`), "batchSize"),
		bad("batchSize: -1", withImages(`"batchSize":-1`), "batchSize"),
		bad("batchSize: -0", withImages(`"batchSize":-0`), "batchSize"),
		bad("batchSize: too large", withImages(`"batchSize":10001`), "batchSize"),
		bad("batchSize: very negative", withImages(`"batchSize":-99999`), "batchSize"),
		bad("nodeSelector: bad key", withImages(`"nodeSelector":{"bad key!":"v"}`), `nodeSelector["bad key!"]`),
		bad("nodeSelector: bad value", withImages(`"nodeSelector":{"k":"bad value!"}`), `nodeSelector["k"]`),
		bad("nodeSelector: empty key", withImages(`"nodeSelector":{"":"v"}`), `nodeSelector[""]`),
		bad("nodeSelector: value too long", withImages(`"nodeSelector":{"k":"`+strings.Repeat("x", 64)+`"}`), `nodeSelector["k"]`),
	}
	for name, image := range map[string]string{
		"empty": "", "upper case": "UPPER/Case:1", "empty tag": "nginx:", "short digest": "nginx@sha256:abc",
		"scheme": "http://nginx", "leading dash": "-nginx", "leading space": " nginx", "newline": "nginx\n",
		"too long": strings.Repeat("a", 300), "double slash": "harbor.example.com//a:1", "bad tag": "nginx:bad tag",
	} {
		cs = append(cs, bad("images[0]: "+name, fmt.Sprintf(`{"images":[%q]}`, image), "images[0]"))
	}
	return cs
}

func badCredentials() []Case {
	harbor := `"images":["harbor.example.com/ml/a:1"],`
	return []Case{
		bad("registry without username and password", `{`+harbor+`"registry":"harbor.example.com"}`, "username"),
		bad("registry without password", `{`+harbor+`"registry":"harbor.example.com","username":"robot"}`, "password"),
		bad("registry without username", `{`+harbor+`"registry":"harbor.example.com","password":"p"}`, "username"),
		bad("username without registry", withImages(`"username":"robot"`), "registry"),
		bad("password without registry", withImages(`"password":"p"`), "registry"),
		bad("username and password without registry", withImages(`"username":"robot","password":"p"`), "registry"),
		bad("empty registry", `{`+harbor+creds("", "robot", "p")+`}`, "registry"),
		bad("empty username", `{`+harbor+creds("harbor.example.com", "", "p")+`}`, "username"),
		bad("empty password", `{`+harbor+creds("harbor.example.com", "robot", "")+`}`, "password"),
		bad("registry with scheme", `{`+harbor+creds("https://harbor.example.com", "robot", "p")+`}`, "registry"),
		bad("registry with path", `{`+harbor+creds("harbor.example.com/ml", "robot", "p")+`}`, "registry"),
		bad("registry with space", `{`+harbor+creds("harbor example", "robot", "p")+`}`, "registry"),
		bad("registry serving no image", `{`+harbor+creds("other.example.com", "robot", "p")+`}`, "registry"),
		bad("registry with a port the images lack", `{`+harbor+creds("harbor.example.com:443", "robot", "p")+`}`, "registry"),
		bad("username with colon", `{`+harbor+creds("harbor.example.com", "ro:bot", "p")+`}`, "username"),
		bad("password too long", `{`+harbor+creds("harbor.example.com", "robot", strings.Repeat("p", 17<<10))+`}`, "password"),
	}
}

func badTransport() []Case {
	valid := withImages("")
	cs := []Case{
		post("body over 1 MiB: whitespace", strings.Repeat(" ", 1<<20)+valid, http.StatusRequestEntityTooLarge, "body"),
		post("body over 1 MiB: images", `{"images":["`+strings.Repeat("a", 1<<20)+`"]}`, http.StatusRequestEntityTooLarge, "body"),
		post("body over 1 MiB: password", `{"password":"`+strings.Repeat("p", 2<<20)+`"}`, http.StatusRequestEntityTooLarge, "body"),
		post("body over 1 MiB: after the object", valid+strings.Repeat(" ", 1<<20), http.StatusRequestEntityTooLarge, "body"),
	}
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx", "json", "application/json; charset", "text/json"} {
		c := post("content type "+quoteOrNone(ct), valid, http.StatusUnsupportedMediaType, "Content-Type")
		c.ContentType = ct
		cs = append(cs, c)
	}
	return cs
}

func quoteOrNone(s string) string {
	if s == "" {
		return "missing"
	}
	return fmt.Sprintf("%q", s)
}

func badRoutes() []Case {
	item := base + "/abcdefghij"
	req := func(name, method, path string, status int, field string) Case {
		return Case{Name: name, Method: method, Path: path, WantStatus: status, WantField: field}
	}
	cs := []Case{
		req("unknown task", http.MethodGet, base+"/"+UnknownID, http.StatusNotFound, "id"),
		req("delete unknown task", http.MethodDelete, base+"/"+UnknownID, http.StatusNotFound, "id"),
	}
	for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace, "BREW"} {
		cs = append(cs, req("collection: method "+m, m, base, http.StatusMethodNotAllowed, "method"))
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodOptions} {
		cs = append(cs, req("item: method "+m, m, item, http.StatusMethodNotAllowed, "method"))
	}
	for name, id := range map[string]string{
		"empty": "", "upper case": "ABCDEFGHIJ", "short": "abc", "long": "abcdefghijk", "digit 1": "abcdefghi1",
		"dot dot": "..%2F..%2Fetc", "sub path": "abcdefghij/extra", "NUL": "%00", "spec name": "task-abcdefghij",
		"huge": strings.Repeat("a", 10000), "space": "abcde%20ghij", "unicode": "%C3%A9bcdefghij",
	} {
		cs = append(cs, req("get: id "+name, http.MethodGet, base+"/"+id, http.StatusBadRequest, "id"))
	}
	cs = append(cs, req("delete: id upper case", http.MethodDelete, base+"/ABCDEFGHIJ", http.StatusBadRequest, "id"))
	for _, p := range []string{"/api/v1/task", "/api/v2/tasks", "/", "/API/V1/TASKS", "/api/v1/tasksx", "/api/v1"} {
		cs = append(cs, req("path "+p, http.MethodGet, p, http.StatusNotFound, "path"))
	}
	return cs
}
