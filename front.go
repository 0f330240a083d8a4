package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/config"
	"github.com/statsbridge/statsbridge/sinks/openmetrics"
)

// front is the HTTP listener: /metrics, /healthz and the admin endpoints.
// A reload gives it a new handler (the allow lists); a new listener only
// when http.listen changed.
type front struct {
	srv     *http.Server
	l       net.Listener
	handler atomic.Pointer[http.Handler]
	serving bool
}

// listenHTTP binds http.listen; nil when it is "".
func listenHTTP(cfg config.Config) (*front, error) {
	if cfg.HTTP.Listen == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", cfg.HTTP.Listen, err)
	}
	f := &front{l: l}
	f.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*f.handler.Load()).ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	return f, nil
}

// serve serves until shutdown.
func (f *front) serve(logger *slog.Logger) {
	if f == nil {
		return
	}
	f.srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	f.serving = true
	go func() {
		if err := f.srv.Serve(f.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server failed", "err", err)
		}
	}()
}

// shutdown lets requests in progress finish for a second, then closes
// what is left (a tap's stream never finishes on its own).
func (f *front) shutdown() {
	if f == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if f.srv.Shutdown(ctx) != nil {
		f.srv.Close()
	}
}

// close closes the listener of a front that never served.
func (f *front) close() {
	if f != nil && !f.serving {
		f.l.Close()
	}
}

// mux routes the HTTP endpoints for a configuration. The admin endpoints
// (the tap, reload) answer only http.admin_allow.
func (r *relay) mux(cfg config.Config) *http.Handler {
	access := openmetrics.Access{}
	admin := openmetrics.Access{}
	for _, s := range cfg.HTTP.Allow {
		p, _ := config.ParsePrefix(s) // validated
		access.Allow = append(access.Allow, p)
	}
	for _, s := range cfg.HTTP.AdminAllow {
		p, _ := config.ParsePrefix(s)
		admin.Allow = append(admin.Allow, p)
	}
	for _, s := range cfg.HTTP.TrustedProxies {
		p, _ := config.ParsePrefix(s)
		access.TrustedProxies = append(access.TrustedProxies, p)
	}
	admin.TrustedProxies = access.TrustedProxies
	adminOnly := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if client, ok := admin.Allows(req); !ok {
				r.adminRefused.Log("client", client.String(), "path", req.URL.Path)
				http.Error(w, "forbidden: this address is not in http.admin_allow", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, req)
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", openmetrics.NewHandler(r.model, access, openmetrics.Options{LEFormat: leFormat(cfg.HTTP.LEFormat)}, r.logger))
	if cfg.HTTP.Pprof {
		servePprof(mux, adminOnly)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/-/tap", adminOnly(r.hub))
	mux.Handle("/-/reload", adminOnly(http.HandlerFunc(r.serveReload)))
	var h http.Handler = mux
	return &h
}

// serveReload is POST /-/reload: a reload, as SIGHUP, answered with its
// outcome.
func (r *relay) serveReload(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed: POST to reload", http.StatusMethodNotAllowed)
		return
	}
	done := make(chan error, 1)
	select {
	case r.adminReloads <- reloadRequest{source: "POST /-/reload from " + req.RemoteAddr, done: done}:
	case <-req.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := <-done; err != nil {
		http.Error(w, "reload refused; the configuration in force stays:\n"+r.redact(err.Error()), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "reloaded")
}

// redact hides secrets as the log does.
func (r *relay) redact(s string) string {
	if r.logs != nil {
		return r.logs.redact(s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg.Redactor().Redact(s)
}
