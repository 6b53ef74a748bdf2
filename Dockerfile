# atomic-deploy container action image.
#
# Stage 1 compiles a static binary on the build machine's own platform and
# cross-compiles for the target one (no emulation needed for linux/arm64).
# Stage 2 is a small Alpine with /bin/sh (the `build` input runs commands
# with /bin/sh -ec) and the CA certificates (https health checks).
#
# Heavy builds (composer, npm, compilers) do NOT belong in the `build` input:
# this image has no PHP, Node or compilers. Run them in earlier workflow steps
# on the runner and point `source` at the result; see README.md.
#
# Runner contract: the runner mounts the workspace at /github/workspace and
# sets the working directory itself, and the action runs as root, so this
# image sets neither WORKDIR nor USER in its final stage.

# Base images: tags, not yet digests. No digest for golang:1.26 or alpine:3
# could be verified from here (public Dockerfiles pin five different ones
# for golang:1.26.8 alone: the tag is rebuilt), and a wrong
# one breaks the build. Pin them once with the index digest from
#   docker buildx imagetools inspect golang:1.26   (and alpine:3)
# as golang:1.26@sha256:<digest>; Dependabot (.github/dependabot.yml,
# docker) then keeps tag and digest fresh. Until then it bumps tags only.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
# Set by BuildKit from --platform (empty means the build machine's own).
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The release tag (release.yml passes it); empty: --version says "dev".
ARG VERSION=
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/atomic-deploy/atomic-deploy/internal/version.Version=$VERSION" \
    -o /out/atomic-deploy .

FROM alpine:3
# The build stage's Mozilla CA bundle, copied rather than installed with apk,
# so the final stage runs no command (multi-arch builds need no QEMU).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/atomic-deploy /atomic-deploy
ENTRYPOINT ["/atomic-deploy"]
