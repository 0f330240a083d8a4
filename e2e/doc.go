// Package e2e holds statsbridge's end-to-end tests. They build the binary
// with build.sh, start real carbon-cache, influxd, prometheus and prosody
// processes on loopback, send StatsD to the running binary and read the
// results back from each backend. A backend binary that is missing skips its
// tests, except under CI=true, where it fails them.
package e2e
