package sinks

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// TestRequestsGoThroughTheProxy: with a proxy URL a sink's requests go to
// the proxy, carrying its credentials, whatever the environment says.
func TestRequestsGoThroughTheProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the backend was reached directly: %s", r.URL)
	}))
	defer backend.Close()
	type seen struct{ target, auth string }
	got := make(chan seen, 1)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.String(), r.Header.Get("Proxy-Authorization")}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1") // the configured proxy wins
	u, _ := url.Parse(proxy.URL)
	u.User = url.UserPassword("relay", "proxy-secret")
	client := NewHTTPClient(ClientOptions{Timeout: 5 * time.Second, Proxy: u})
	a, err := Post(context.Background(), client, backend.URL+"/api/v1/write", http.Header{}, []byte("x"))
	if err != nil || a.Status != http.StatusNoContent {
		t.Fatalf("answer %v, %v", a, err)
	}
	s := <-got
	if s.target != backend.URL+"/api/v1/write" {
		t.Errorf("the proxy was asked for %q", s.target)
	}
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("relay:proxy-secret")); s.auth != want {
		t.Errorf("Proxy-Authorization %q, want %q", s.auth, want)
	}
}
