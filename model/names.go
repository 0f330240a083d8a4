package model

import (
	"strings"
	"unicode/utf8"

	"github.com/prometheus/statsd_exporter/pkg/mapper"
)

// SanitizeMetricName turns any string into a valid OpenMetrics metric name
// exactly as statsd_exporter does, so that names do not change for its
// users: every character outside [a-zA-Z0-9_] becomes one '_' (so
// "api.request-time" is "api_request_time"; ':' is left to recording
// rules), "--" counts as one character, and a leading digit gets a '_' in
// front.
func SanitizeMetricName(s string) string {
	if s == "" {
		return "_"
	}
	if !utf8.ValidString(s) {
		// EscapeMetricName steps over an invalid byte as if it were three
		// and panics; ingest rejects such names, but nothing here may
		// depend on its caller for that.
		s = strings.ToValidUTF8(s, "_")
	}
	return mapper.EscapeMetricName(s)
}

// SanitizeLabelName turns any string into a valid label name by the same
// rules. A name that would start with "__" (reserved for Prometheus) keeps
// a single leading '_'.
func SanitizeLabelName(s string) string {
	n := SanitizeMetricName(s)
	for len(n) > 1 && n[0] == '_' && n[1] == '_' {
		n = n[1:]
	}
	return n
}
