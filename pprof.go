package main

import (
	"net/http"
	"net/http/pprof"

	"github.com/statsbridge/statsbridge/sinks/openmetrics"
)

// servePprof serves Go's profiles under /debug/pprof/ ([http] pprof), to
// the addresses /metrics answers only: a profile shows the names that flow
// through the relay.
func servePprof(mux *http.ServeMux, access openmetrics.Access) {
	mux.Handle("/debug/pprof/", access.Guard(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", access.Guard(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", access.Guard(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", access.Guard(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", access.Guard(http.HandlerFunc(pprof.Trace)))
}
