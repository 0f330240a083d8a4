package main

import (
	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/prosody"
	"github.com/statsbridge/statsbridge/sinks"
)

// registerSelfMetrics makes statsbridge's own counters families of its model,
// so that they reach every sink and /metrics like any other.
func registerSelfMetrics(m *model.Model, statsd *ingest.Server, pushes []pushSink, pros *prosody.State) {
	in := statsd.Stats()
	counter := func(name, help string, labels model.Labels, read func() float64) {
		m.Register(model.Family{Name: name, Type: model.Counter, Help: help, LabelNames: labelNames(labels)}, labels, read)
	}
	gauge := func(name, help string, labels model.Labels, read func() float64) {
		m.Register(model.Family{Name: name, Type: model.Gauge, Help: help, LabelNames: labelNames(labels)}, labels, read)
	}
	u64 := func(f func() uint64) func() float64 { return func() float64 { return float64(f()) } }

	counter("statsbridge_ingest_datagrams", "UDP and unixgram datagrams and TCP reads received", nil, u64(in.Datagrams.Load))
	counter("statsbridge_ingest_bytes", "Bytes of StatsD received", nil, u64(in.Bytes.Load))
	counter("statsbridge_ingest_lines", "StatsD lines received, good or bad", nil, u64(in.Lines.Load))
	counter("statsbridge_ingest_udp_reads", "Read system calls on the UDP sockets, those that found nothing included (see read_cork)", nil,
		u64(in.UDPReads.Load))
	for _, r := range ingest.Reasons() {
		counter("statsbridge_ingest_bad_lines", "StatsD lines rejected, by reason",
			model.Labels{{Name: "reason", Value: r.String()}}, u64(in.BadLines[r].Load))
	}
	gauge("statsbridge_ingest_tcp_connections", "Open StatsD TCP connections", nil,
		func() float64 { return float64(in.Connections.Load()) })
	for _, r := range ingest.TCPRefusals() {
		counter("statsbridge_ingest_tcp_refused", "StatsD TCP connections refused at a connection limit, by reason",
			model.Labels{{Name: "reason", Value: r.String()}}, u64(in.Refused[r].Load))
	}
	counter("statsbridge_ingest_tcp_timeouts", "StatsD TCP connections closed by a timeout, by timeout",
		model.Labels{{Name: "timeout", Value: "line"}}, u64(in.LineTimeouts.Load))
	counter("statsbridge_ingest_tcp_timeouts", "StatsD TCP connections closed by a timeout, by timeout",
		model.Labels{{Name: "timeout", Value: "idle"}}, u64(in.IdleTimeouts.Load))
	if _, ok := statsd.UDPKernel(); ok {
		counter("statsbridge_ingest_udp_kernel_drops", "Datagrams the kernel dropped because a UDP socket's buffer was full (see read_buffer)", nil,
			func() float64 { st, _ := statsd.UDPKernel(); return float64(st.Drops) })
		gauge("statsbridge_ingest_udp_queued_bytes", "Bytes waiting in the UDP sockets' buffers", nil,
			func() float64 { st, _ := statsd.UDPKernel(); return float64(st.Queued) })
	}

	gauge("statsbridge_model_series", "Series held", nil, func() float64 { return float64(m.Series()) })
	counter("statsbridge_model_conflicts", "Samples whose type conflicts with their family's, dropped", nil, u64(m.Conflicts))
	for _, r := range model.DropReasons() {
		name, help := "statsbridge_model_dropped_samples", "Samples dropped by a mapping, a label limit, as their state would become non-finite, or past the bucket bounds a Prosody histogram series may learn, by reason"
		if r.SeriesLimit() {
			name, help = "statsbridge_model_dropped_series", "New series refused at a series limit, by reason"
		}
		counter(name, help, model.Labels{{Name: "reason", Value: r.String()}}, u64(func() uint64 { return m.Dropped(r) }))
	}
	for _, r := range model.LabelFixes() {
		name, help := "statsbridge_model_renamed_labels", "Labels renamed as a name was mapped, as they would make its series invalid, by reason"
		if !r.Renames() {
			name, help = "statsbridge_model_dropped_labels", "Labels dropped as a name was mapped, as another label of their name came first"
		}
		counter(name, help, model.Labels{{Name: "reason", Value: r.String()}}, u64(func() uint64 { return m.LabelFixCount(r) }))
	}

	counter("statsbridge_prosody_unknown_names", "Names under the Prosody prefix that match no known family (they still flow)", nil,
		u64(pros.UnknownNames))
	counter("statsbridge_prosody_unknown_buckets", "Prosody histogram bucket lines whose bound is not a number, dropped", nil,
		u64(pros.UnknownBuckets))

	for _, p := range pushes {
		st := p.push.Stats()
		sink := model.Labels{{Name: "sink", Value: p.push.Name()}}
		counter("statsbridge_sink_batches", "Batches delivered", sink, u64(st.Batches.Load))
		counter("statsbridge_sink_points", "Points delivered", sink, u64(st.Records.Load))
		counter("statsbridge_sink_bytes", "Bytes delivered (before compression)", sink, u64(st.Bytes.Load))
		for _, r := range sinks.Failures() {
			labels := model.Labels{{Name: "reason", Value: r.String()}, sink[0]}
			counter("statsbridge_sink_failures", "Failed delivery attempts, by reason", labels, u64(st.Failures[r].Load))
		}
		gauge("statsbridge_sink_up", "1 while the last delivery attempt reached the backend, 0 in an outage", sink,
			func() float64 { return float64(st.Up.Load()) })
		counter("statsbridge_sink_flow_wait_seconds", "Time flushes waited for the backend to take batches (flow control)", sink,
			func() float64 { return float64(st.WaitedNs.Load()) / 1e9 })
		counter("statsbridge_sink_spool_syncs", "Times the spool's new data was synced to the disk", sink, u64(st.SpoolSyncs.Load))
		counter("statsbridge_sink_retries", "Delivery attempts retried", sink, u64(st.Retries.Load))
		counter("statsbridge_sink_skipped_values", "Values the backend cannot store (NaN, ±Inf, an integer out of range), not sent", sink, u64(p.skipped))
		for _, r := range sinks.DropReasons() {
			labels := model.Labels{{Name: "reason", Value: r.String()}, sink[0]}
			counter("statsbridge_sink_dropped_points", "Points given up, by reason", labels, u64(st.Dropped[r].Load))
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
	}
}

func labelNames(ls model.Labels) []string {
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.Name
	}
	return names
}
