# Multi-stage build: static, CGO-free binaries in an image of their own. The same
# image runs the controller (/image-prewarm) and carries /prewarm-noop, which prewarm
# Jobs copy into an emptyDir and run inside each target image (no shell needed there).
#
# The build stage runs on the builder's platform and cross-compiles for the target,
# as `make image` does (test/images, without Docker); test/image_test.go checks that
# the runtime stage below and `make image` give the same files, user and entrypoint.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd cmd
COPY pkg pkg
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN export CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
 && go build -trimpath \
      -ldflags "-s -w -X github.com/image-prewarm/image-prewarm/pkg/metrics.Version=${VERSION}" \
      -o /out/image-prewarm ./cmd/image-prewarm \
 && go build -trimpath -ldflags "-s -w" -o /out/prewarm-noop ./cmd/prewarm-noop

# scratch: the binaries are static and need nothing else. The user is numeric (no
# /etc/passwd; kubelet can check runAsNonRoot), the controller trusts only the
# in-cluster CA it is given (no CA bundle), logs in UTC (no tzdata), and writes no
# file (the chart mounts the root file system read-only; no /tmp needed).
FROM scratch
COPY --from=build /out/image-prewarm /image-prewarm
COPY --from=build /out/prewarm-noop /prewarm-noop
USER 65532:65532
ENTRYPOINT ["/image-prewarm"]
