package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer up.Close()
	ailing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer ailing.Close()
	_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()

	dir := t.TempDir()
	file := func(listen string) string {
		path := filepath.Join(dir, strings.NewReplacer(":", "_", "[", "", "]", "").Replace(listen)+".toml")
		os.WriteFile(path, []byte("[http]\nlisten = \""+listen+"\"\n"), 0o644)
		return path
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"the listener of the file answers", []string{"--config", file(up.Listener.Addr().String())}, nil, 0},
		{"a listener on every interface is asked on loopback", []string{"--config", file("0.0.0.0:" + upPort)}, nil, 0},
		{"so is one on an empty host", []string{"--config", file(":" + upPort)}, nil, 0},
		{"the flag overrides the file", []string{"--config", file(gone.Listener.Addr().String()), "--http.listen", up.Listener.Addr().String()}, nil, 0},
		{"and so does its environment variable", []string{"--config", file(gone.Listener.Addr().String())},
			map[string]string{"STATSBRIDGE_HTTP_LISTEN": "0.0.0.0:" + upPort}, 0},
		{"the environment names the file", nil, map[string]string{"STATSBRIDGE_CONFIG": file(up.Listener.Addr().String())}, 0},
		{"an answer that is not 200", []string{"--http.listen", ailing.Listener.Addr().String()}, nil, 1},
		{"nothing listening", []string{"--http.listen", gone.Listener.Addr().String()}, nil, 1},
		{"the listener is off", []string{"--http.listen="}, nil, 1},
		{"a configuration that does not load", []string{"--config", filepath.Join(dir, "missing.toml")}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			code := statsbridge(append([]string{"statsbridge", "healthcheck"}, tt.args...), &out, &errOut, nil)
			if code != tt.want {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tt.want, out.String(), errOut.String())
			}
			if code != 0 && errOut.Len() == 0 {
				t.Error("a failed check says nothing")
			}
		})
	}
}
