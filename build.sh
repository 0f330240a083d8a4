#!/bin/sh
# build.sh [OUTPUT]: the one way statsbridge is built, by the Dockerfile, by
# the end-to-end tests and by CI. A static binary (no cgo), without local
# paths, with the version stamped in.
set -eu
cd "$(dirname "$0")"
out=${1:-statsbridge}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" .
