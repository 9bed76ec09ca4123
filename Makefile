# image-prewarm — `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/image-prewarm/image-prewarm/pkg/metrics.Version=$(VERSION)
NODES ?= 20
# Real nodes (kubelet + containerd): cluster-up defaults to none, demo to one.
REAL_NODES ?=
BENCH ?= .
# Parsers fuzzed by `make fuzz`: package:target.
FUZZ_TARGETS := ./pkg/config:FuzzParse ./pkg/pullsecret:FuzzFromSecret ./pkg/jobs:FuzzJobName ./pkg/tasks:FuzzDecodeTaskRequest ./pkg/webhook:FuzzDecodeReview
FUZZTIME ?= 3m

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build image-prewarm and prewarm-noop (static, CGO-free) into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/image-prewarm ./cmd/prewarm-noop

.PHONY: image
image: ## Build the image-prewarm image without Docker: an OCI index (linux/amd64, linux/arm64) in bin/image
	$(GO) run ./test/images/imagebuild -o bin/image -version $(VERSION)

.PHONY: cluster-binaries
cluster-binaries: ## Build (or find cached) etcd, kube-*, kubelet, kubectl, kwok, containerd, registry, helm; install runc and CNI plugins
	@bash test/cluster/build.sh >/dev/null

.PHONY: lint
lint: ## gofmt and go vet
	@unformatted=$$(gofmt -l cmd pkg test certs); if [ -n "$$unformatted" ]; then echo "not gofmt-formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd test/keyring && $(GO) vet ./...

.PHONY: unit
unit: ## Unit tests (no cluster, race detector on): cmd, pkg, certs
	$(GO) test -race -count=1 ./cmd/... ./pkg/... ./certs/...

.PHONY: keyring
keyring: ## kubelet's own credential lookup (k8s.io/kubernetes v1.37.2) on the pull Secrets we build (module test/keyring)
	cd test/keyring && $(GO) test -count=1 ./...

.PHONY: integration
integration: cluster-binaries ## Tests against the real local control plane (test/cluster, test/e2e)
	$(GO) test -count=1 -p 1 -timeout 40m ./test/...

.PHONY: test
test: lint build unit keyring integration ## Everything CI runs: lint, build, unit, keyring and integration tests

.PHONY: bench
bench: cluster-binaries ## Every benchmark and fuzz target (FUZZTIME each, default 3m) → test/perf/RESULTS.md; BENCH=regexp reruns some
	cd test/perf && IMAGE_PREWARM_BENCH=1 FUZZTIME=$(FUZZTIME) $(GO) test -count=1 -v -timeout 120m -run '$(BENCH)' .

.PHONY: fault
fault: cluster-binaries ## Fault scenarios in full (200 nodes, 5 kills); make test runs the short form
	IMAGE_PREWARM_FAULT=full $(GO) test -count=1 -v -timeout 30m ./test/fault/

.PHONY: fuzz
fuzz: ## Fuzz the parsers for FUZZTIME each (default 3m)
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; echo "fuzz $$pkg $$fn"; $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; done

.PHONY: demo
demo: cluster-binaries ## Local cluster with 30 fake nodes and a real one (REAL_NODES=0: none) + controller + sample prewarms, live progress
	$(GO) run ./test/demo --real-nodes $(or $(REAL_NODES),1)

.PHONY: cluster-up
cluster-up: cluster-binaries ## Start the local cluster with NODES fake nodes (default 20) and REAL_NODES real ones (default 0; ≥ 1 adds the private registry); it keeps running
	$(GO) run ./test/cluster/localcluster up --nodes $(NODES) --real-nodes $(or $(REAL_NODES),0)

.PHONY: cluster-down
cluster-down: ## Stop the local cluster started by cluster-up; no process is left behind
	$(GO) run ./test/cluster/localcluster down

.PHONY: clean
clean: ## Remove build outputs (the control-plane cache outside the repo is kept)
	rm -rf bin
