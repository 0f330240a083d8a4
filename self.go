package main

import (
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/sinks"
)

// selfMetrics makes statsbridge's own counters families of its model, so
// that they reach every sink and /metrics like any other. Some series come
// and go: each sink's (with a reload), and when each source last sent
// something.
type selfMetrics struct {
	m *model.Model

	// The last reload: 1 if it was applied, and when one last was (the
	// start counts as one).
	reloadOK atomic.Int64
	reloadAt atomic.Int64

	mu    sync.Mutex
	sinks map[*pushSink][]series

	// What sync registered of statsbridge_last_received_timestamp_seconds:
	// the Prosody prefix's series, and one per sender under sourceLabel.
	prefix      string
	sourceLabel string
	sources     map[netip.Addr]bool
}

// series names one registered series, to unregister it.
type series struct {
	family string
	labels model.Labels
}

const lastReceived = "statsbridge_last_received_timestamp_seconds"

func registerSelfMetrics(r *relay) *selfMetrics {
	m := r.model
	s := &selfMetrics{m: m, sinks: map[*pushSink][]series{}, sources: map[netip.Addr]bool{}}
	s.reloadOK.Store(1)
	s.reloadAt.Store(time.Now().UnixNano())
	counter := func(name, help string, labels model.Labels, read func() float64) {
		m.Register(model.Family{Name: name, Type: model.Counter, Help: help, LabelNames: labelNames(labels)}, selfKey(name, labels), labels, read)
	}
	gauge := func(name, help string, labels model.Labels, read func() float64) {
		m.Register(model.Family{Name: name, Type: model.Gauge, Help: help, LabelNames: labelNames(labels)}, selfKey(name, labels), labels, read)
	}
	u64 := func(f func() uint64) func() float64 { return func() float64 { return float64(f()) } }

	gauge("statsbridge_build_info", "statsbridge's version and the Go version it was built with; always 1",
		model.Labels{{Name: "version", Value: buildVersion()}, {Name: "goversion", Value: runtime.Version()}},
		func() float64 { return 1 })
	gauge("statsbridge_config_last_reload_successful", "1 if the last reload (SIGHUP, POST /-/reload) was applied, 0 if it was refused", nil,
		func() float64 { return float64(s.reloadOK.Load()) })
	gauge("statsbridge_config_last_reload_success_timestamp_seconds", "When the configuration in force was applied (at the start, or the last reload)", nil,
		func() float64 { return float64(s.reloadAt.Load()) / 1e9 })

	in := r.stats
	counter("statsbridge_ingest_datagrams", "UDP and unixgram datagrams and TCP reads received", nil, u64(in.Datagrams.Load))
	counter("statsbridge_ingest_bytes", "Bytes of StatsD received", nil, u64(in.Bytes.Load))
	counter("statsbridge_ingest_lines", "StatsD lines received, good or bad", nil, u64(in.Lines.Load))
	counter("statsbridge_ingest_udp_reads", "Read system calls on the UDP sockets, those that found nothing included (see read_cork)", nil,
		u64(in.UDPReads.Load))
	for _, reason := range ingest.Reasons() {
		counter("statsbridge_ingest_bad_lines", "StatsD lines rejected, by reason",
			model.Labels{{Name: "reason", Value: reason.String()}}, u64(in.BadLines[reason].Load))
	}
	gauge("statsbridge_ingest_tcp_connections", "Open StatsD TCP connections", nil,
		func() float64 { return float64(in.Connections.Load()) })
	for _, reason := range ingest.TCPRefusals() {
		counter("statsbridge_ingest_tcp_refused", "StatsD TCP connections refused at a connection limit, by reason",
			model.Labels{{Name: "reason", Value: reason.String()}}, u64(in.Refused[reason].Load))
	}
	counter("statsbridge_ingest_tcp_timeouts", "StatsD TCP connections closed by a timeout, by timeout",
		model.Labels{{Name: "timeout", Value: "line"}}, u64(in.LineTimeouts.Load))
	counter("statsbridge_ingest_tcp_timeouts", "StatsD TCP connections closed by a timeout, by timeout",
		model.Labels{{Name: "timeout", Value: "idle"}}, u64(in.IdleTimeouts.Load))
	if _, ok := r.statsd.UDPKernel(); ok {
		kernel := func() ingest.UDPKernelStats {
			r.mu.Lock()
			statsd := r.statsd
			r.mu.Unlock()
			st, _ := statsd.UDPKernel()
			return st
		}
		// A reload that closes a UDP socket takes its drops with it; the
		// counter must not go down.
		counter("statsbridge_ingest_udp_kernel_drops", "Datagrams the kernel dropped because a UDP socket's buffer was full (see read_buffer)", nil,
			monotonic(func() float64 { return float64(kernel().Drops) }))
		gauge("statsbridge_ingest_udp_queued_bytes", "Bytes waiting in the UDP sockets' buffers", nil,
			func() float64 { return float64(kernel().Queued) })
	}
	counter("statsbridge_last_received_forgotten_sources", "Senders no longer in statsbridge_last_received_timestamp_seconds: past 1000, the one silent longest goes", nil,
		u64(r.seen.Forgotten))

	gauge("statsbridge_model_series", "Series held", nil, func() float64 { return float64(m.Series()) })
	counter("statsbridge_model_native_schema_reductions", "Times a series' native histogram passed its bucket cap (native_histogram_max_buckets) and merged its buckets in pairs, halving its resolution",
		nil, u64(m.NativeSchemaReductions))
	counter("statsbridge_model_conflicts", "Samples whose type conflicts with their family's, dropped", nil, u64(m.Conflicts))
	for _, reason := range model.DropReasons() {
		name, help := "statsbridge_model_dropped_samples", "Samples dropped by a mapping, a label limit, as their state would become non-finite, or past the bucket bounds a Prosody histogram series may learn, by reason"
		if reason.SeriesLimit() {
			name, help = "statsbridge_model_dropped_series", "New series refused at a series limit, by reason"
		}
		counter(name, help, model.Labels{{Name: "reason", Value: reason.String()}}, u64(func() uint64 { return m.Dropped(reason) }))
	}
	for _, fix := range model.LabelFixes() {
		name, help := "statsbridge_model_renamed_labels", "Labels renamed as a name was mapped, as they would make its series invalid, by reason"
		if !fix.Renames() {
			name, help = "statsbridge_model_dropped_labels", "Labels dropped as a name was mapped, as another label of their name came first"
		}
		counter(name, help, model.Labels{{Name: "reason", Value: fix.String()}}, u64(func() uint64 { return m.LabelFixCount(fix) }))
	}

	counter("statsbridge_prosody_unknown_names", "Names under the Prosody prefix that match no known family (they still flow)", nil,
		u64(r.prosody.UnknownNames))
	counter("statsbridge_prosody_unknown_buckets", "Prosody histogram bucket lines whose bound is not a number, dropped", nil,
		u64(r.prosody.UnknownBuckets))

	for _, p := range r.pushes {
		s.addSink(p)
	}
	registerRuntimeMetrics(m, r.logger.Warn)
	s.sync(r)
	return s
}

func (s *selfMetrics) reloadSucceeded() {
	s.reloadOK.Store(1)
	s.reloadAt.Store(time.Now().UnixNano())
}

func (s *selfMetrics) reloadFailed() { s.reloadOK.Store(0) }

// addSink registers a push sink's series.
func (s *selfMetrics) addSink(p *pushSink) {
	st := p.push.Stats()
	sink := model.Labels{{Name: "sink", Value: p.push.Name()}}
	var added []series
	register := func(typ model.Type, name, help string, labels model.Labels, read func() float64) {
		s.m.Register(model.Family{Name: name, Type: typ, Help: help, LabelNames: labelNames(labels)}, selfKey(name, labels), labels, read)
		added = append(added, series{name, labels})
	}
	counter := func(name, help string, labels model.Labels, read func() float64) {
		register(model.Counter, name, help, labels, read)
	}
	gauge := func(name, help string, labels model.Labels, read func() float64) {
		register(model.Gauge, name, help, labels, read)
	}
	u64 := func(f func() uint64) func() float64 { return func() float64 { return float64(f()) } }
	skipped := p.plan.skipped

	counter("statsbridge_sink_batches", "Batches delivered", sink, u64(st.Batches.Load))
	counter("statsbridge_sink_points", "Points delivered", sink, u64(st.Records.Load))
	counter("statsbridge_sink_bytes", "Bytes delivered (before compression)", sink, u64(st.Bytes.Load))
	for _, reason := range sinks.Failures() {
		labels := model.Labels{{Name: "reason", Value: reason.String()}, sink[0]}
		counter("statsbridge_sink_failures", "Failed delivery attempts, by reason", labels, u64(st.Failures[reason].Load))
	}
	gauge("statsbridge_sink_up", "1 while the last delivery attempt reached the backend, 0 in an outage", sink,
		func() float64 { return float64(st.Up.Load()) })
	gauge("statsbridge_sink_last_success_timestamp_seconds", "When a batch was last delivered (0: never)", sink,
		func() float64 { return float64(st.LastDelivered.Load()) / 1e9 })
	counter("statsbridge_sink_flow_wait_seconds", "Time flushes waited for the backend to take batches (flow control)", sink,
		func() float64 { return float64(st.WaitedNs.Load()) / 1e9 })
	counter("statsbridge_sink_spool_syncs", "Times the spool's new data was synced to the disk", sink, u64(st.SpoolSyncs.Load))
	counter("statsbridge_sink_retries", "Delivery attempts retried", sink, u64(st.Retries.Load))
	counter("statsbridge_sink_skipped_values", "Values the backend cannot store (NaN, ±Inf, an integer out of range), not sent", sink, u64(skipped))
	for _, reason := range sinks.DropReasons() {
		labels := model.Labels{{Name: "reason", Value: reason.String()}, sink[0]}
		counter("statsbridge_sink_dropped_points", "Points given up, by reason", labels, u64(st.Dropped[reason].Load))
	}
	gauge("statsbridge_sink_queue_bytes", "Bytes waiting in the outage queue", sink,
		func() float64 { return float64(st.QueueBytes.Load()) })
	gauge("statsbridge_sink_spool_bytes", "Bytes waiting in the disk spool", sink,
		func() float64 { return float64(st.SpoolBytes.Load()) })
	counter("statsbridge_sink_spool_damaged", "Times damage (a bad checksum, a torn write, an unreadable file) cut a spool segment short", sink,
		u64(st.Damaged.Load))
	gauge("statsbridge_sink_last_delivery_seconds", "How long the last delivered batch took", sink,
		func() float64 { return float64(st.LatencyNs.Load()) / 1e9 })
	counter("statsbridge_sink_delivery_seconds", "Time spent delivering batches (divide by batches for the mean)", sink,
		func() float64 { return float64(st.DeliveryNs.Load()) / 1e9 })

	s.mu.Lock()
	s.sinks[p] = added
	s.mu.Unlock()
}

// removeSink unregisters a push sink's series (a reload removed or renamed
// it).
func (s *selfMetrics) removeSink(p *pushSink) {
	s.mu.Lock()
	gone := s.sinks[p]
	delete(s.sinks, p)
	s.mu.Unlock()
	for _, g := range gone {
		s.m.Unregister(g.family, g.labels)
	}
}

// sync registers statsbridge_last_received_timestamp_seconds for the
// Prosody prefix in force and for each sender LastSeen remembers (with a
// source_label), and unregisters what is gone. It runs in the flush loop.
func (s *selfMetrics) sync(r *relay) {
	const help = "When a line last arrived under the Prosody prefix, or from a sender (source_label); 0: never. Every series is re-sent at each flush, so a silent sender shows only here"
	// The family's series have one label, prefix or source_label's.
	family := func(model.Labels) model.Family {
		return model.Family{Name: lastReceived, Type: model.Gauge, Help: help}
	}
	if prefix := r.cfg.Prosody.Prefix; prefix != s.prefix {
		if s.prefix != "" {
			s.m.Unregister(lastReceived, model.Labels{{Name: "prefix", Value: s.prefix}})
		}
		if prefix != "" {
			labels := model.Labels{{Name: "prefix", Value: prefix}}
			s.m.Register(family(labels), selfKey(lastReceived, labels), labels, func() float64 { return seconds(r.seen.Prefix()) })
		}
		s.prefix = prefix
	}
	label := r.cfg.Statsd.SourceLabel
	if label != s.sourceLabel {
		for a := range s.sources {
			s.m.Unregister(lastReceived, model.Labels{{Name: s.sourceLabel, Value: a.String()}})
		}
		clear(s.sources)
		s.sourceLabel = label
	}
	if label == "" {
		return
	}
	now := r.seen.Sources()
	for a := range s.sources {
		if _, ok := now[a]; !ok {
			s.m.Unregister(lastReceived, model.Labels{{Name: label, Value: a.String()}})
			delete(s.sources, a)
		}
	}
	for a := range now {
		if !s.sources[a] {
			labels := model.Labels{{Name: label, Value: a.String()}}
			s.m.Register(family(labels), selfKey(lastReceived, labels), labels, func() float64 { return seconds(r.seen.Source(a)) })
			s.sources[a] = true
		}
	}
}

// seconds is a time as unix seconds, 0 for the zero time.
func seconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// monotonic keeps a counter read from somewhere that may lose part of its
// count (a socket a reload closed) from going down.
func monotonic(read func() float64) func() float64 {
	var mu sync.Mutex
	var base, last float64
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		v := read()
		if v+base < last {
			base = last - v
		}
		last = v + base
		return last
	}
}

// selfKey is a self-metric's StatsD name, its Graphite path in the etsy and
// paths layouts: under the namespace "statsbridge.", as Etsy statsd's own
// metrics are under "statsd.", the family's name, then its label values
// (statsbridge.ingest_bad_lines.bad_type), so that every series of a
// family has a path of its own. A value's dots (a sender's address) are
// written as '_', so that it stays one node of the path.
func selfKey(family string, labels model.Labels) string {
	key := "statsbridge." + strings.TrimPrefix(family, "statsbridge_")
	for _, l := range labels {
		key += "." + strings.ReplaceAll(l.Value, ".", "_")
	}
	return key
}

func labelNames(ls model.Labels) []string {
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.Name
	}
	return names
}

// runtimeMetrics reads client_golang's process_* and go_* collectors, at
// most once per refreshEvery however many series a flush or scrape reads.
type runtimeMetrics struct {
	gatherer prometheus.Gatherer
	warn     func(msg string, args ...any)

	mu      sync.Mutex
	at      time.Time
	metrics map[string]*dto.Metric // by family name and labels
}

const refreshEvery = 100 * time.Millisecond

// registerRuntimeMetrics registers the series of client_golang's Go and
// process collectors as they are at the start (their set does not
// change): counters and gauges, and summaries (go_gc_duration_seconds).
func registerRuntimeMetrics(m *model.Model, warn func(msg string, args ...any)) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rm := &runtimeMetrics{gatherer: reg, warn: warn}
	families, err := reg.Gather()
	if err != nil {
		warn("reading the Go and process metrics", "err", err)
	}
	rm.store(families)
	for _, mf := range families {
		for _, metric := range mf.GetMetric() {
			labels := make(model.Labels, 0, len(metric.GetLabel()))
			for _, lp := range metric.GetLabel() {
				labels = append(labels, model.Label{Name: lp.GetName(), Value: lp.GetValue()})
			}
			key := metricKey(mf.GetName(), metric.GetLabel())
			fam := model.Family{Name: mf.GetName(), Help: mf.GetHelp(), LabelNames: labelNames(labels)}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				fam.Type, fam.Name = model.Counter, model.CounterFamilyName(fam.Name)
				m.Register(fam, selfKey(fam.Name, labels), labels, func() float64 { return rm.get(key).GetCounter().GetValue() })
			case dto.MetricType_GAUGE:
				fam.Type = model.Gauge
				m.Register(fam, selfKey(fam.Name, labels), labels, func() float64 { return rm.get(key).GetGauge().GetValue() })
			case dto.MetricType_UNTYPED:
				fam.Type = model.Gauge
				m.Register(fam, selfKey(fam.Name, labels), labels, func() float64 { return rm.get(key).GetUntyped().GetValue() })
			case dto.MetricType_SUMMARY:
				for _, q := range metric.GetSummary().GetQuantile() {
					fam.Summary.Quantiles = append(fam.Summary.Quantiles, q.GetQuantile())
				}
				m.RegisterSummary(fam, selfKey(fam.Name, labels), labels, func(p *model.SummaryPoint) {
					sm := rm.get(key).GetSummary()
					p.Count, p.Sum = float64(sm.GetSampleCount()), sm.GetSampleSum()
					for _, q := range sm.GetQuantile() {
						p.Quantiles = append(p.Quantiles, q.GetValue())
					}
				})
			}
		}
	}
}

func metricKey(name string, labels []*dto.LabelPair) string {
	key := name
	for _, lp := range labels {
		key += "\x1e" + lp.GetName() + "\x1f" + lp.GetValue()
	}
	return key
}

func (rm *runtimeMetrics) store(families []*dto.MetricFamily) {
	rm.metrics = map[string]*dto.Metric{}
	for _, mf := range families {
		for _, metric := range mf.GetMetric() {
			rm.metrics[metricKey(mf.GetName(), metric.GetLabel())] = metric
		}
	}
	rm.at = time.Now()
}

// get returns a series as last gathered, gathering again when that is
// older than refreshEvery. A series gone since the start reads as nil
// (its getters give 0).
func (rm *runtimeMetrics) get(key string) *dto.Metric {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if time.Since(rm.at) > refreshEvery {
		// A collector that fails gives what it could; the others are whole.
		families, _ := rm.gatherer.Gather()
		rm.store(families)
	}
	return rm.metrics[key]
}
