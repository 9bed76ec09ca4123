# Multi-stage build: static, CGO-free binaries in a minimal non-root image. The same
# image runs the controller (/image-prewarm) and carries /prewarm-noop, which prewarm
# Jobs copy into an emptyDir and run inside each target image (no shell needed there).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd cmd
COPY pkg pkg
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/image-prewarm/image-prewarm/pkg/metrics.Version=${VERSION}" \
      -o /out/image-prewarm ./cmd/image-prewarm \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/prewarm-noop ./cmd/prewarm-noop

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/image-prewarm /image-prewarm
COPY --from=build /out/prewarm-noop /prewarm-noop
USER 65532:65532
ENTRYPOINT ["/image-prewarm"]
