package model

// SanitizeMetricName turns any string into a valid OpenMetrics metric name,
// as statsd_exporter does: every byte outside [a-zA-Z0-9_] becomes '_' (so
// "api.request-time" is "api_request_time"; ':' is left to recording rules),
// and a leading digit gets a '_' in front.
func SanitizeMetricName(s string) string { return sanitize(s) }

// SanitizeLabelName turns any string into a valid label name by the same
// rules. A name that would start with "__" (reserved for Prometheus) keeps
// a single leading '_'.
func SanitizeLabelName(s string) string {
	n := sanitize(s)
	for len(n) > 1 && n[0] == '_' && n[1] == '_' {
		n = n[1:]
	}
	return n
}

func sanitize(s string) string {
	if s == "" {
		return "_"
	}
	valid := !isDigit(s[0])
	for i := 0; i < len(s) && valid; i++ {
		valid = isNameByte(s[i])
	}
	if valid {
		return s
	}
	b := make([]byte, 0, len(s)+1)
	if isDigit(s[0]) {
		b = append(b, '_')
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; isNameByte(c) {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isNameByte(c byte) bool {
	return c == '_' || isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}
