package main

import (
	"net/http"
	"net/http/pprof"
)

// servePprof serves Go's profiles under /debug/pprof/ ([http] pprof), to
// the admin addresses only (admin_allow): a profile shows the names that
// flow through the relay.
func servePprof(mux *http.ServeMux, adminOnly func(http.Handler) http.Handler) {
	mux.Handle("/debug/pprof/", adminOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", adminOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", adminOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", adminOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", adminOnly(http.HandlerFunc(pprof.Trace)))
}
