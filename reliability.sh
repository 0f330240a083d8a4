#!/bin/sh
# reliability.sh: statsbridge's reliability suite at full length, against
# the real backends: each backend down for 60 s with and without a spool, a
# SIGKILL 60 s into an outage, a flush of a million series at the default
# queue_size, backends that fail, throttle, refuse everything, hang or read
# at 1 KB/s for 60 s, 80,000 refused 8 KB names, and the hostile-client
# tests (generated-label tags, tiny rates, invalid UTF-8, TCP slot
# exhaustion, a second relay on the port, planted secrets, X-Forwarded-For
# across header lines). CI runs the same tests shortened (./test.sh).
#
# It prints the figures RELIABILITY.md gives: sent, delivered, lost and the
# relay's peak RSS for each scenario. It takes about 25 minutes and needs
# the servers ./test.sh installs. Run it on a quiet machine: a loaded one
# makes the kernel drop datagrams, and the tests say so rather than guess.
set -eu
cd "$(dirname "$0")"
report=$(mktemp)
log=${RELIABILITY_LOG:-reliability.log}
trap 'rm -f "$report"' EXIT
status=0
STATSBRIDGE_RELIABILITY=long STATSBRIDGE_RELIABILITY_REPORT=$report \
	go test -count=1 -timeout 3h -v -parallel 1 \
	-run 'TestBackendOutageLosesNothing|TestSIGKILLInAnOutage|TestAFlushOfManySeries|TestFailingBackends|TestRefusedLongNames|TestHostile|TestSecretsNeverReachTheLogs|TestForwardedForAcrossHeaderLines' \
	./e2e/ >"$log" 2>&1 || status=$?
grep -E '^\s*--- (PASS|FAIL)|^(ok|FAIL)' "$log"
[ "$status" -eq 0 ] || echo "the suite failed; its whole output is in $log" >&2
echo
echo '| scenario | scale | sent | delivered | lost | peak RSS | notes |'
echo '| --- | --- | --- | --- | --- | --- | --- |'
sort "$report"
exit "$status"
