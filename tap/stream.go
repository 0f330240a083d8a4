package tap

import (
	"encoding/json"
	"net/http"
	"time"
)

// ContentType is the stream's: one JSON Event a line.
const ContentType = "application/x-ndjson"

// ServeHTTP streams events to one tap until it goes away or the Hub stops.
// The query's match (a glob) or regexp filters the names. The caller checks
// that the client may use admin endpoints.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	filter, err := Filter(r.URL.Query().Get("match"), r.URL.Query().Get("regexp"))
	if err != nil {
		http.Error(w, "bad filter: "+err.Error(), http.StatusBadRequest)
		return
	}
	// A stream lasts as long as the tap watches, past the server's write
	// timeout.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	sub := h.subscribe(filter)
	if sub == nil {
		http.Error(w, "too many taps connected", http.StatusServiceUnavailable)
		return
	}
	defer h.unsubscribe(sub)
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	// The first line tells the tap it is connected before anything arrives.
	if enc.Encode(Event{Time: time.Now(), Status: &Status{Kept: float64(h.keep.Load()) / (1 << 32)}}) != nil || rc.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-sub.events:
			if !ok {
				return
			}
			if err := enc.Encode(ev); err != nil {
				return
			}
			if len(sub.events) == 0 {
				if err := rc.Flush(); err != nil {
					return
				}
			}
		}
	}
}
