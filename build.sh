#!/bin/sh
# The one way statsbridge is built, by the Dockerfile, by the end-to-end
# tests and by CI: a static binary (no cgo), without local paths, with the
# version stamped in (VERSION, or git describe).
#
#   ./build.sh [OUTPUT]          one binary for this machine (or GOOS/GOARCH)
#   ./build.sh release [DIR]     linux/amd64 and linux/arm64 into DIR (dist/),
#                                named statsbridge-VERSION-linux-ARCH, with
#                                their SHA-256 sums in DIR/SHA256SUMS
#                                (check them with: sha256sum -c SHA256SUMS)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=${VERSION:-$(cd "$here" && git describe --tags --always --dirty 2>/dev/null || echo dev)}

# build OUTPUT: an absolute OUTPUT, as go build runs in the source tree.
build() {
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$1" .)
}

absolute() {
	case "$1" in
	/*) echo "$1" ;;
	*) echo "$PWD/$1" ;;
	esac
}

if [ "${1:-}" = release ]; then
	dir=$(absolute "${2:-dist}")
	mkdir -p "$dir"
	names=""
	for arch in ${ARCHS:-amd64 arm64}; do
		name="statsbridge-$version-linux-$arch"
		(
			export GOOS=linux GOARCH="$arch"
			build "$dir/$name"
		)
		names="$names $name"
	done
	# shellcheck disable=SC2086
	(cd "$dir" && sha256sum $names >SHA256SUMS)
	echo "$dir:$names SHA256SUMS"
	exit 0
fi
build "$(absolute "${1:-statsbridge}")"
