package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestPprofIsOffByDefaultAndAllowedAddressesOnly: /debug/pprof/ is not
// served unless [http] pprof is set, and then only to the admin addresses
// (admin_allow), whatever /metrics answers.
func TestPprofIsOffByDefaultAndAllowedAddressesOnly(t *testing.T) {
	tests := []struct {
		name   string
		pprof  bool
		admin  []string
		status int
	}{
		{"off by default", false, []string{"127.0.0.0/8"}, http.StatusNotFound},
		{"on, from an admin address", true, []string{"127.0.0.0/8"}, http.StatusOK},
		{"on, from an address /metrics answers but not admin_allow", true, []string{"192.0.2.0/24"}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.HTTP.Pprof = tt.pprof
			cfg.HTTP.Allow = []string{"127.0.0.0/8"}
			cfg.HTTP.AdminAllow = tt.admin
			a, stop := startRun(t, cfg)
			defer stop()
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
				code, body := get(t, "http://"+a.http+path)
				if code != tt.status {
					t.Errorf("%s: %d, want %d", path, code, tt.status)
				}
				if code == http.StatusOK && path == "/debug/pprof/goroutine?debug=1" && !strings.Contains(body, "goroutine profile") {
					t.Errorf("%s is not a goroutine profile: %.200s", path, body)
				}
			}
		})
	}
}
