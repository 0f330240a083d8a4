#!/bin/sh
# test.sh: statsbridge's whole test suite, on a fresh Debian machine with Go.
#
# It installs what the tests need and is missing (the Debian packages of the
# servers the end-to-end tests start, and the Go modules), checks formatting
# and vet, runs every test with the race detector (the end-to-end tests
# against real carbon-cache, influxd and prometheus included), fuzzes each
# parser briefly, and builds the release binary as the Dockerfile does.
#
# CI runs it (.ci/run) with CI=true: there a missing server fails the
# end-to-end tests instead of skipping them.
set -eu
cd "$(dirname "$0")"

FUZZTIME=${FUZZTIME:-15s}

step() { printf '\n== %s\n' "$*"; }

step "servers for the end-to-end tests"
missing=""
for pair in carbon-cache:graphite-carbon influxd:influxdb prometheus:prometheus; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "installing:$missing"
	# Without systemd nothing would start them anyway; where invoke-rc.d
	# could, forbid it: the tests start their own on loopback.
	if [ ! -e /usr/sbin/policy-rc.d ] && [ ! -d /run/systemd/system ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
		$sudo chmod +x /usr/sbin/policy-rc.d
	fi
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
	# shellcheck disable=SC2086
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
else
	echo "all installed"
fi

step "go modules"
go mod download
go mod verify

step "gofmt and go vet"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...

step "tests (race detector on; end-to-end tests against real servers)"
go test -race -count=1 ./...

step "fuzzing each parser for $FUZZTIME"
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$FUZZTIME" ./ingest/

step "release build (as the Dockerfile runs it)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
./build.sh "$out/statsbridge"
"$out/statsbridge" version

step "all passed"
