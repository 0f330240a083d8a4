package openmetrics

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/statsbridge/statsbridge/model"
)

// Access says who may scrape.
type Access struct {
	// Allow lists the prefixes a scraper's address must be in.
	Allow []netip.Prefix
	// TrustedProxies lists the proxies whose X-Forwarded-For is believed:
	// behind one, the address checked is the client it names.
	TrustedProxies []netip.Prefix
}

// Handler serves /metrics.
type Handler struct {
	model  *model.Model
	access Access
	opts   Options
	logger *slog.Logger
}

// NewHandler returns the /metrics handler. opts shape the OpenMetrics text;
// the Prometheus text format (for clients that do not ask for OpenMetrics)
// is written by expfmt, which spells bounds its own way.
func NewHandler(m *model.Model, access Access, opts Options, logger *slog.Logger) *Handler {
	return &Handler{model: m, access: access, opts: opts, logger: logger}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if client, ok := h.access.client(r); !ok {
		h.logger.Debug("refused a scrape", "client", client.String())
		http.Error(w, "forbidden: this address is not in http.allow", http.StatusForbidden)
		return
	}
	// Only the formats served here: a client preferring protobuf gets its
	// next choice, not text by default, unless there are native
	// histograms, which only the protobuf exposition carries.
	formats := []expfmt.Format{expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1, expfmt.FmtText}
	if h.model.NativeHistograms() {
		formats = append(formats, expfmt.FmtProtoDelim)
	}
	format := expfmt.NegotiateAccept(r.Header, formats...)
	switch format.FormatType() {
	case expfmt.TypeOpenMetrics:
		w.Header().Set("Content-Type", ContentType)
		if err := Write(w, h.model, h.opts); err != nil {
			h.logger.Debug("scrape cut short", "err", err)
		}
		return
	case expfmt.TypeProtoDelim:
	default:
		format = expfmt.NewFormat(expfmt.TypeTextPlain)
	}
	w.Header().Set("Content-Type", string(format))
	enc := expfmt.NewEncoder(w, format)
	h.model.Gather(func(f *model.Family, points []model.Point) {
		if err := enc.Encode(toDTO(f, points)); err != nil {
			h.logger.Debug("scrape cut short", "err", err)
		}
	})
}

// Allows reports whether r comes from an allowed address, and which
// address that is (see client): for the admin endpoints, whose Access
// has a list of its own.
func (a Access) Allows(r *http.Request) (netip.Addr, bool) { return a.client(r) }

// client finds the scraper's address and checks it against the allow list.
// Behind a trusted proxy the client is the right-most X-Forwarded-For hop
// that is not itself a trusted proxy. Every line of the header counts, in
// order: a proxy may append a line of its own (HAProxy does) instead of
// extending the one the client sent, and everything left of the address a
// trusted proxy saw is the client's to write. A hop that is not a bare
// address, where the client should be, refuses the scrape.
func (a Access) client(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	addr = addr.Unmap()
	lines := r.Header.Values("X-Forwarded-For")
	if len(lines) == 0 || !contains(a.TrustedProxies, addr) {
		return addr, contains(a.Allow, addr)
	}
	hops := strings.Split(strings.Join(lines, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false
		}
		addr = hop.Unmap()
		if !contains(a.TrustedProxies, addr) {
			break
		}
	}
	return addr, contains(a.Allow, addr)
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// toDTO converts a family for expfmt's Prometheus text and protobuf
// encoders. Counts are written as floats, as sample rates make them
// fractional, except a native histogram's when they are whole (see
// nativeDTO).
func toDTO(f *model.Family, points []model.Point) *dto.MetricFamily {
	mf := &dto.MetricFamily{Name: proto.String(f.Name), Help: proto.String(f.Help)}
	switch f.Type {
	case model.Counter:
		mf.Type = dto.MetricType_COUNTER.Enum()
		mf.Name = proto.String(f.Name + "_total")
	case model.Gauge:
		mf.Type = dto.MetricType_GAUGE.Enum()
	case model.Histogram:
		mf.Type = dto.MetricType_HISTOGRAM.Enum()
	case model.Summary:
		mf.Type = dto.MetricType_SUMMARY.Enum()
	default:
		mf.Type = dto.MetricType_UNTYPED.Enum()
	}
	for i := range points {
		p := &points[i]
		m := &dto.Metric{}
		for _, l := range p.Series.Labels() {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(l.Name), Value: proto.String(l.Value)})
		}
		switch {
		case p.Histogram != nil && p.Histogram.Native != nil:
			m.Histogram = nativeDTO(p.Histogram)
		case p.Histogram != nil:
			h := &dto.Histogram{SampleCountFloat: proto.Float64(p.Histogram.Count), SampleSum: proto.Float64(p.Histogram.Sum)}
			for j, b := range p.Histogram.Layout {
				if j < len(p.Histogram.Layout)-1 { // +Inf is implied by the count
					h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(b.Bound),
						CumulativeCountFloat: proto.Float64(p.Histogram.Buckets[j])})
				}
			}
			m.Histogram = h
		case p.Summary != nil:
			sm := &dto.Summary{SampleCount: proto.Uint64(uint64(p.Summary.Count)), SampleSum: proto.Float64(p.Summary.Sum)}
			for j, q := range f.Summary.Quantiles {
				if j < len(p.Summary.Quantiles) {
					sm.Quantile = append(sm.Quantile, &dto.Quantile{Quantile: proto.Float64(q), Value: proto.Float64(p.Summary.Quantiles[j])})
				}
			}
			m.Summary = sm
		case f.Type == model.Counter:
			m.Counter = &dto.Counter{Value: proto.Float64(p.Value)}
		case f.Type == model.Gauge:
			m.Gauge = &dto.Gauge{Value: proto.Float64(p.Value)}
		default:
			m.Untyped = &dto.Untyped{Value: proto.Float64(p.Value)}
		}
		mf.Metric = append(mf.Metric, m)
	}
	return mf
}
