package e2e

import (
	"net/http"
	"testing"
)

// TestForwardedForAcrossHeaderLines: behind a trusted proxy that appends
// its own X-Forwarded-For line (as HAProxy does), a client cannot claim an
// allowed address by sending a line of its own first.
func TestForwardedForAcrossHeaderLines(t *testing.T) {
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[http]
listen = "127.0.0.1:0"
allow = ["192.0.2.0/24"]
trusted_proxies = ["127.0.0.1"]
`)
	tests := []struct {
		name  string
		lines []string // X-Forwarded-For header lines, in order
		want  int
	}{
		{"an allowed client via the proxy", []string{"192.0.2.7"}, http.StatusOK},
		{"a client claiming an allowed address on a line of its own", []string{"192.0.2.7", "203.0.113.9"}, http.StatusForbidden},
		{"a client claiming an allowed address left of its own", []string{"192.0.2.7, 203.0.113.9"}, http.StatusForbidden},
		{"an allowed client with a spoofed line of its own", []string{"203.0.113.9", "192.0.2.7"}, http.StatusOK},
		{"the proxy could not name the client", []string{"192.0.2.7", "unknown"}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+r.HTTP+"/metrics", nil)
			for _, line := range tt.lines {
				req.Header.Add("X-Forwarded-For", line)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("X-Forwarded-For lines %q: status %d, want %d", tt.lines, resp.StatusCode, tt.want)
			}
		})
	}
	r.stop(t)
}
