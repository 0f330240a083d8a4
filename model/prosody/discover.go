package prosody

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	pmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/statsbridge/statsbridge/model"
)

// maxPage bounds what is read of a /metrics page.
const maxPage = 16 << 20

// Discover reads Prosody's own /metrics (mod_http_openmetrics). With the
// statsd backend it lists every registered family's HELP, UNIT and TYPE and
// no samples; Prometheus' OpenMetrics parser reads that, where expfmt's
// returns nothing for a page without samples and ignores units.
func Discover(ctx context.Context, client *http.Client, url string) (map[string]Discovered, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0, text/plain; version=0.0.4; q=0.5")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	page, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return nil, err
	}
	contentType := resp.Header.Get("Content-Type")
	if contentType == "" {
		contentType = "application/openmetrics-text"
	}
	return parsePage(page, contentType)
}

func parsePage(page []byte, contentType string) (map[string]Discovered, error) {
	p, err := textparse.New(page, contentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	if p == nil {
		return nil, fmt.Errorf("cannot parse %q: %w", contentType, err)
	}
	out := map[string]Discovered{}
	layouts := newPageLayouts()
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			layouts.addTo(out)
			return out, nil
		}
		if err != nil {
			return out, err
		}
		switch entry {
		case textparse.EntrySeries:
			var ls labels.Labels
			p.Labels(&ls)
			layouts.add(ls)
		case textparse.EntryType:
			name, typ := p.Type()
			d := out[string(name)]
			d.Type = metricType(typ)
			out[string(name)] = d
		case textparse.EntryHelp:
			name, help := p.Help()
			d := out[string(name)]
			d.Help = string(help)
			out[string(name)] = d
		case textparse.EntryUnit:
			name, unit := p.Unit()
			d := out[string(name)]
			d.Unit = string(unit)
			out[string(name)] = d
		}
	}
}

// pageLayouts collects the bucket layouts a page shows, per histogram
// series, in the order the page has them.
type pageLayouts struct {
	series map[string][]model.Bucket // family and labels but le -> layout
	family map[string]string         // the same key -> family
	order  []string
}

func newPageLayouts() *pageLayouts {
	return &pageLayouts{series: map[string][]model.Bucket{}, family: map[string]string{}}
}

func (pl *pageLayouts) add(ls labels.Labels) {
	name, found := strings.CutSuffix(ls.Get(labels.MetricName), "_bucket")
	le := ls.Get("le")
	if !found || le == "" {
		return
	}
	v, err := strconv.ParseFloat(le, 64)
	if err != nil || math.IsNaN(v) {
		return
	}
	// Prometheus' parser gives le in its own spelling (le="1.0"): spell it
	// again as Prosody does (util/openmetrics.lua, "%.14g").
	le = strconv.FormatFloat(v, 'g', 14, 64)
	if math.IsInf(v, 1) {
		le = "+Inf"
	}
	key := labels.NewBuilder(ls).Del("le").Labels().String()
	if _, ok := pl.series[key]; !ok {
		if len(pl.order) >= maxPageSeries {
			return
		}
		pl.order = append(pl.order, key)
		pl.family[key] = name
	}
	if layout := pl.series[key]; len(layout) < 64 {
		pl.series[key] = append(layout, model.NewBucket(v, le))
	}
}

// addTo gives each histogram family of out the distinct layouts its
// series showed.
func (pl *pageLayouts) addTo(out map[string]Discovered) {
	for _, key := range pl.order {
		name, layout := pl.family[key], pl.series[key]
		slices.SortFunc(layout, func(a, b model.Bucket) int { return cmp.Compare(a.Bound, b.Bound) })
		d, ok := out[name]
		if !ok || d.Type != model.Histogram {
			continue
		}
		if !slices.ContainsFunc(d.Layouts, func(l []model.Bucket) bool { return slices.Equal(l, layout) }) {
			d.Layouts = append(d.Layouts, layout)
			out[name] = d
		}
	}
}

// maxPageSeries bounds the histogram series whose layouts are kept from one
// page.
const maxPageSeries = 10000

func metricType(t pmodel.MetricType) model.Type {
	switch t {
	case pmodel.MetricTypeCounter:
		return model.Counter
	case pmodel.MetricTypeGauge:
		return model.Gauge
	case pmodel.MetricTypeHistogram:
		return model.Histogram
	case pmodel.MetricTypeSummary:
		return model.Summary
	}
	return model.Unknown
}

// discoverTimeout bounds one read of Prosody's page.
const discoverTimeout = 5 * time.Second

// firstRetry is how soon a failed read is tried again; each further failure
// doubles it, up to the refresh interval. statsbridge often starts before
// Prosody, and should not wait a whole refresh interval for it.
const firstRetry = time.Second

// ReadOnce reads url and keeps what it found in state. It reports whether
// the read succeeded; a failure is logged. A success is logged at info when
// it is the first, or follows a failure, and at debug otherwise.
func ReadOnce(ctx context.Context, state *State, url string, logger *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	found, err := Discover(ctx, &http.Client{}, url)
	if err != nil {
		state.readOK.Store(false)
		logger.Warn("could not read Prosody's /metrics; will try again", "url", url, "err", err)
		return false
	}
	state.SetDiscovered(found)
	level := slog.LevelDebug
	if !state.readOK.Swap(true) {
		level = slog.LevelInfo
	}
	logger.Log(ctx, level, "read Prosody's families", "url", url, "families", len(found))
	return true
}

// Watch reads url until ctx is done, and keeps what it found in state: every
// interval while reads succeed, and after a failed read (the caller's
// first one, made with ReadOnce before the first name is bound, included)
// again after a second, then two, four..., never more than every apart. A
// failed read never stops statsbridge.
func Watch(ctx context.Context, state *State, url string, every time.Duration, logger *slog.Logger) {
	watch(ctx, state, url, every, firstRetry, logger)
}

func watch(ctx context.Context, state *State, url string, every, retry time.Duration, logger *slog.Logger) {
	failures := 0
	if !state.readOK.Load() {
		failures = 1
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(nextRead(failures, retry, every)):
			if ReadOnce(ctx, state, url, logger) {
				failures = 0
			} else {
				failures++
			}
		}
	}
}

// nextRead is how long to wait before the next read after that many
// failed reads in a row.
func nextRead(failures int, retry, every time.Duration) time.Duration {
	if failures == 0 {
		return every
	}
	d := retry
	for i := 1; i < failures && d < every; i++ {
		d *= 2
	}
	return min(d, every)
}
