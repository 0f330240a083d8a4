package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/statsbridge/statsbridge/config"
	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/prosody"
	"github.com/statsbridge/statsbridge/tap"
	"github.com/statsbridge/statsbridge/throttle"
)

// hooks connect run to its caller.
type hooks struct {
	// started, when set, is told the bound addresses once statsbridge is
	// up; tests use it to find ports picked by the kernel.
	started func(statsdUDP, statsdTCP []net.Addr, httpAddr net.Addr)
	// reloads asks for the configuration to be read again (SIGHUP).
	reloads <-chan reloadRequest
	// reread reads the configuration again: the file, with the flags laid
	// over it. Without it a reload is refused.
	reread func() (config.Config, error)
	// logs, when set, is the log output: a reload gives it the new level,
	// format and secrets.
	logs *logOutput
}

// reloadRequest asks for a reload; done, when set, is told the outcome.
type reloadRequest struct {
	source string // "SIGHUP", "POST /-/reload from 127.0.0.1"
	done   chan<- error
}

// relay is a running statsbridge. A reload keeps the model (every series'
// state), the counters, the Prosody state, the tap and the flush clock,
// and replaces what the configuration describes: the listeners, the sinks,
// the HTTP server, the mapping and the limits.
type relay struct {
	logger *slog.Logger
	events *throttle.Log
	logs   *logOutput
	reread func() (config.Config, error)

	model   *model.Model
	prosody *prosody.State
	stats   *ingest.Stats
	seen    *ingest.LastSeen
	hub     *tap.Hub
	self    *selfMetrics
	clock   *cork.Clock
	flush   model.Flush

	// adminReloads are the reloads asked for over HTTP.
	adminReloads chan reloadRequest
	adminRefused *throttle.Event
	// deliver is the push sinks' context: shutdown_timeout cuts it.
	deliver context.Context

	// The configuration in force and what it made. The flush loop changes
	// them; mu guards them for the readers on other goroutines (the tap's
	// sink states, the self-metrics).
	mu        sync.Mutex
	cfg       config.Config
	statsd    *ingest.Server
	front     *front
	pushes    []*pushSink
	discovery context.CancelFunc

	listeners sync.WaitGroup // the StatsD listeners' Serve
	serving   sync.WaitGroup // Prosody discovery, the tap
	retiring  sync.WaitGroup // what a reload replaced, finishing
}

// run wires the configuration to the components and runs until ctx is done.
// Then it stops the listeners (reading what the sockets already hold),
// makes the final flush, and gives the sinks shutdown_timeout to deliver.
// Nothing is started when any part fails to set up.
func run(ctx context.Context, cfg config.Config, logger *slog.Logger, h hooks) error {
	r := &relay{
		logger: logger,
		// Every per-event log line (a bad line, a refused connection or
		// sample, a failed delivery) goes through one throttle: a line a
		// second per kind, with a count of the rest.
		events:       throttle.New(logger, time.Second),
		logs:         h.logs,
		reread:       h.reread,
		prosody:      prosody.NewState(),
		stats:        &ingest.Stats{},
		seen:         ingest.NewLastSeen(maxSources),
		adminReloads: make(chan reloadRequest),
		cfg:          cfg,
	}
	r.adminRefused = r.events.Event(slog.LevelWarn, "refused an admin request: the address is not in http.admin_allow")
	mappers, observers, err := newMappers(cfg, r.prosody)
	if err != nil {
		return err
	}
	var m *model.Model
	r.hub = tap.NewHub(func(s *ingest.Sample) model.Decision { return m.Explain(s) })
	opts := modelOptions(cfg)
	opts.Mappers, opts.Observers = mappers, observers
	opts.Logger, opts.Events, opts.Tap = logger, r.events, r.hub
	m = model.New(opts)
	r.model = m

	plans, err := newPushes(cfg, logger, r.events)
	if err != nil {
		return err
	}
	for _, p := range plans {
		ps, err := openSink(p, logger)
		if err != nil {
			closeAll(r.pushes)
			closePlans(plans)
			return err
		}
		r.pushes = append(r.pushes, ps)
	}
	warnAboutOrphanSpools(r.pushes, logger)

	// Read Prosody's own page once before any name is bound, so that the
	// families it describes get their help and unit from the start.
	if cfg.Prosody.Prefix != "" && cfg.Prosody.MetricsURL != "" {
		prosody.ReadOnce(ctx, r.prosody, cfg.Prosody.MetricsURL, logger)
	}

	r.statsd, err = ingest.Listen(r.ingestConfig(cfg))
	if err != nil {
		closeAll(r.pushes)
		return err
	}
	r.front, err = listenHTTP(cfg)
	if err != nil {
		r.statsd.Close()
		closeAll(r.pushes)
		return err
	}
	if r.front != nil {
		r.front.handler.Store(r.mux(cfg))
	}
	r.self = registerSelfMetrics(r)
	r.hub.SetSinks(r.sinkStates)

	logStart(logger, cfg, r.statsd, r.front, r.pushes)
	if h.started != nil {
		var httpAddr net.Addr
		if r.front != nil {
			httpAddr = r.front.l.Addr()
		}
		h.started(r.statsd.UDPAddrs(), r.statsd.TCPAddrs(), httpAddr)
	}

	// The push sinks deliver until their queues are empty after the final
	// flush, or until shutdown_timeout cuts them off.
	deliver, cutOff := context.WithCancel(context.Background())
	defer cutOff()
	r.deliver = deliver
	for _, p := range r.pushes {
		r.start(p)
	}
	r.front.serve(logger)
	listening, stopListening := context.WithCancel(ctx)
	defer stopListening()
	r.startStatsd(listening, r.statsd)
	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	r.serving.Go(func() { r.hub.Run(hubCtx) })
	r.startDiscovery(ctx, cfg, false)

	r.clock = cork.NewClock(cfg.Statsd.FlushInterval.D(), nil)
	r.loop(ctx, listening, h.reloads)

	logger.Info("stopping: listeners drained, making the final flush")
	stopListening()
	// The listeners read what their sockets hold (at most a few seconds)
	// before the final flush.
	r.listeners.Wait()
	r.mu.Lock()
	giveUp := time.Now().Add(r.cfg.ShutdownTimeout.D())
	r.mu.Unlock()
	r.uncork(r.clock.Final(), giveUp)
	for _, p := range r.pushes {
		p.push.Close()
	}
	done := make(chan struct{})
	go func() {
		for _, p := range r.pushes {
			<-p.done
		}
		r.retiring.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Until(giveUp)):
		logger.Warn("shutdown_timeout reached; dropping what was not delivered")
		cutOff()
		<-done
	}
	for _, p := range r.pushes {
		p.plan.close()
	}
	stopHub()
	r.front.shutdown()
	r.serving.Wait()
	logger.Info("stopped")
	return nil
}

// maxSources bounds the senders statsbridge_last_received_timestamp_seconds
// has a series for (source_label); past it, the one silent longest goes.
const maxSources = 1000

// startStatsd serves a listener Server until ctx is done or a reload retires
// it (then until its last TCP connection ends).
func (r *relay) startStatsd(ctx context.Context, s *ingest.Server) {
	r.listeners.Go(func() { s.Serve(ctx) })
}

// loop flushes at every tick of the clock and applies reloads between
// flushes, until ctx is done.
func (r *relay) loop(ctx, listening context.Context, reloads <-chan reloadRequest) {
	timer := time.NewTimer(time.Until(r.clock.Due()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			iv := r.clock.Advance()
			r.uncork(iv, iv.End.Add(r.cfg.Statsd.FlushInterval.D()))
		case req := <-reloads:
			r.handleReload(ctx, listening, req)
		case req := <-r.adminReloads:
			r.handleReload(ctx, listening, req)
		}
		timer.Reset(time.Until(r.clock.Due()))
	}
}

// uncork ends a flush interval: the model's snapshot goes to every sink at
// once, each encoding it in its own goroutine, so that one that waits for
// its backend to take batches holds up no other. None waits past until,
// when the next flush is due (or shutdown gives up).
func (r *relay) uncork(iv cork.Interval, until time.Time) {
	r.self.sync(r)
	if len(r.pushes) == 0 {
		// Nothing takes a point of every series: the interval ends for
		// the series that changed, at the cost of those alone.
		r.model.EndInterval(iv.End)
		r.events.Flush()
		return
	}
	r.flush.Interval = iv
	r.model.Collect(&r.flush)
	ctx, cancel := context.WithDeadline(context.Background(), until)
	defer cancel()
	var encoding sync.WaitGroup
	for _, p := range r.pushes {
		encoding.Go(func() { p.push.Flush(ctx, &r.flush) })
	}
	encoding.Wait()
	r.events.Flush()
}

// handleReload reads the configuration again and applies it. A file with
// errors, or one whose listeners or sinks cannot be set up, is refused with
// its errors logged, and the configuration in force stays.
func (r *relay) handleReload(ctx, listening context.Context, req reloadRequest) {
	err := r.reload(ctx, listening)
	if err != nil {
		r.self.reloadFailed()
		r.logger.Error("reload refused: nothing reloaded; the configuration in force stays", "source", req.source, "err", err)
	} else {
		r.self.reloadSucceeded()
	}
	if req.done != nil {
		req.done <- err
	}
}

func (r *relay) reload(ctx, listening context.Context) error {
	if r.reread == nil {
		return errors.New("statsbridge was started without a configuration to read again")
	}
	next, err := r.reread()
	if err != nil {
		return err
	}
	return r.apply(ctx, listening, next)
}

// apply makes next the configuration in force. It first builds everything
// that can fail (the mapping, the sinks and their spools, the HTTP
// listener, the StatsD sockets); any failure undoes what it built and
// leaves the configuration in force as it was. Then it swaps, which cannot
// fail.
func (r *relay) apply(ctx, listening context.Context, next config.Config) error {
	prev := r.cfg
	mappers, observers, err := newMappers(next, r.prosody)
	if err != nil {
		return err
	}
	plans, err := newPushes(next, r.logger, r.events)
	if err != nil {
		return err
	}
	change := matchSinks(r.pushes, plans)
	for _, p := range change.added {
		ps, err := openSink(p, r.logger)
		if err != nil {
			closeAll(change.opened)
			closePlans(plans)
			return err
		}
		change.opened = append(change.opened, ps)
	}
	undoSinks := func() {
		closeAll(change.opened)
		for _, p := range change.discard {
			p.close()
		}
		for _, c := range change.changed {
			c.plan.close()
		}
	}

	var newFront *front
	httpMoved := next.HTTP.Listen != prev.HTTP.Listen
	if httpMoved {
		if newFront, err = listenHTTP(next); err != nil {
			undoSinks()
			return err
		}
	}
	var newStatsd *ingest.Server
	if !reflect.DeepEqual(ingestSettings(prev), ingestSettings(next)) {
		if newStatsd, err = ingest.ListenFrom(r.ingestConfig(next), r.statsd); err != nil {
			newFront.close()
			undoSinks()
			return err
		}
	}

	// Nothing fails from here on.
	opts := modelOptions(next)
	opts.Mappers, opts.Observers = mappers, observers
	r.model.Reconfigure(opts)
	r.clock.SetInterval(next.Statsd.FlushInterval.D())
	r.logs.apply(next)

	var pushes []*pushSink
	r.mu.Lock()
	for _, p := range r.pushes {
		switch {
		case change.kept[p]:
			pushes = append(pushes, p)
		case change.changedSink(p) != nil:
			c := change.changedSink(p)
			r.self.removeSink(p)
			p.reconfigure(c.plan)
			r.self.addSink(p)
			pushes = append(pushes, p)
		default:
			r.retire(p, next.ShutdownTimeout.D())
		}
	}
	for _, p := range change.opened {
		r.start(p)
		r.self.addSink(p)
		pushes = append(pushes, p)
	}
	for _, p := range change.discard {
		p.close()
	}
	r.pushes = pushes
	oldStatsd, oldFront := r.statsd, r.front
	if newStatsd != nil {
		r.statsd = newStatsd
	}
	if httpMoved {
		r.front = newFront // nil: http.listen is "" now
	}
	r.cfg = next
	r.mu.Unlock()
	// The spools of the sinks the reload removed are theirs while they
	// drain.
	warnAboutOrphanSpools(append(append([]*pushSink(nil), pushes...), change.removed...), r.logger)

	if newStatsd != nil {
		oldStatsd.Retire()
		r.startStatsd(listening, newStatsd)
	}
	if r.front != nil {
		r.front.handler.Store(r.mux(next))
	}
	if httpMoved {
		newFront.serve(r.logger)
		r.retiring.Go(oldFront.shutdown)
	}
	if prev.Prosody.MetricsURL != next.Prosody.MetricsURL || prev.Prosody.Prefix != next.Prosody.Prefix ||
		prev.Prosody.MetricsRefresh != next.Prosody.MetricsRefresh {
		r.startDiscovery(ctx, next, true)
	}
	r.self.sync(r)
	r.logger.Info("reloaded the mapping, listeners and sinks from the configuration",
		"sinks_added", len(change.opened), "sinks_changed", len(change.changed),
		"sinks_removed", len(change.removed), "sinks_kept", len(change.kept),
		"listeners_changed", newStatsd != nil, "http_moved", httpMoved,
		"mapping_file", next.Mapping.File)
	return nil
}

// startDiscovery reads Prosody's own /metrics every metrics_refresh, in
// place of the reading before, if any. After a reload it reads at once.
func (r *relay) startDiscovery(ctx context.Context, cfg config.Config, now bool) {
	if r.discovery != nil {
		r.discovery()
		r.discovery = nil
	}
	if cfg.Prosody.Prefix == "" || cfg.Prosody.MetricsURL == "" {
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	r.discovery = cancel
	r.serving.Go(func() {
		if now {
			prosody.ReadOnce(dctx, r.prosody, cfg.Prosody.MetricsURL, r.logger)
		}
		prosody.Watch(dctx, r.prosody, cfg.Prosody.MetricsURL, cfg.Prosody.MetricsRefresh.D(), r.logger)
	})
}

// newMappers builds the mapping chain: the Prosody dialect, the
// statsd_exporter mapping file when one is configured, then the default
// mapping with the observer defaults (the file's, or the histogram_buckets
// of [statsd]).
func newMappers(cfg config.Config, state *prosody.State) ([]model.Mapper, model.ObserverDefaults, error) {
	observers := model.DefaultObservers
	if len(cfg.Statsd.HistogramBuckets) > 0 {
		observers.Buckets = cfg.Statsd.HistogramBuckets
	}
	observers.Native = model.NativeOptions{BucketFactor: cfg.Mapping.NativeHistogramBucketFactor,
		MaxBuckets: uint32(cfg.Mapping.NativeHistogramMaxBuckets)}
	var mappers []model.Mapper
	if cfg.Prosody.Prefix != "" {
		own := make([]prosody.Entry, len(cfg.Prosody.Families))
		for i, f := range cfg.Prosody.Families {
			own[i] = prosody.Entry{Name: f.Name, StatsD: f.StatsD, Type: f.Type, Unit: f.Unit, Help: f.Help,
				Labels: f.Labels, Buckets: f.Buckets, Values: f.Values}
			if err := own[i].Check(); err != nil {
				return nil, observers, fmt.Errorf("prosody.family[%d] (%s): %w", i, f.Name, err)
			}
		}
		entries := prosody.Merge(prosody.Builtin(), own)
		mappers = append(mappers, prosody.NewMapper(cfg.Prosody.Prefix, entries, cfg.Prosody.Hosts, state))
	}
	if cfg.Mapping.File != "" {
		fm, err := model.LoadMappingFile(cfg.Mapping.File)
		if err != nil {
			return nil, observers, err
		}
		fm.NativeDefaults(observers.Native)
		mappers = append(mappers, fm)
		observers = fm.Observers()
	}
	return mappers, observers, nil
}

// modelOptions are the model's limits and statistics (the mappers, logger
// and tap aside).
func modelOptions(cfg config.Config) model.Options {
	return model.Options{
		MaxSeries:           cfg.Limits.MaxSeries,
		MaxSeriesPerFamily:  cfg.Limits.MaxSeriesPerFamily,
		MaxLabels:           cfg.Limits.MaxLabels,
		MaxNameLength:       cfg.Limits.MaxNameLength,
		MaxLabelValueLength: cfg.Limits.MaxLabelValueLength,
		SeriesTTL:           cfg.Limits.SeriesTTL.D(),
		Percentiles:         cfg.Statsd.Percentiles,
		ExactTimerValues:    cfg.Statsd.ExactTimerValues,
		ExactSetMembers:     cfg.Statsd.ExactSetMembers,
	}
}

// dialect is how the configuration reads StatsD lines.
func dialect(cfg config.Config) ingest.Dialect {
	d := ingest.Dialect{RelativeGauges: cfg.Statsd.Gauges == config.GaugesRelativeSigns}
	if cfg.Prosody.Prefix != "" {
		d.LiteralPrefix = []byte(cfg.Prosody.Prefix + ".")
	}
	return d
}

// ingestSettings is what the configuration says of the listeners: when it
// is unchanged, a reload keeps them as they are.
func ingestSettings(cfg config.Config) ingest.Config {
	return ingest.Config{
		UDP:                        cfg.Statsd.UDP,
		TCP:                        cfg.Statsd.TCP,
		Unixgram:                   cfg.Statsd.Unixgram,
		UnixgramMode:               cfg.Statsd.UnixgramMode.Mode(),
		UnixgramGroup:              cfg.Statsd.UnixgramGroup,
		Readers:                    cfg.Statsd.Readers,
		ReadBuffer:                 int(cfg.Statsd.ReadBuffer),
		ReadCork:                   cfg.Statsd.ReadCork.D(),
		MaxLine:                    int(cfg.Statsd.MaxLine),
		TCPMaxConnections:          cfg.Statsd.TCPMaxConnections,
		TCPMaxConnectionsPerSource: cfg.Statsd.TCPMaxConnectionsPerSource,
		TCPIdleTimeout:             cfg.Statsd.TCPIdleTimeout.D(),
		TCPLineTimeout:             cfg.Statsd.TCPLineTimeout.D(),
		Dialect:                    dialect(cfg),
		SourceLabel:                cfg.Statsd.SourceLabel,
	}
}

// ingestConfig is ingestSettings wired to this relay: its model, counters,
// tap and log.
func (r *relay) ingestConfig(cfg config.Config) ingest.Config {
	c := ingestSettings(cfg)
	c.NewHandler = func() ingest.Handler { return r.model.NewWriter() }
	c.Logger = r.logger
	c.Events = r.events
	c.Stats = r.stats
	c.Seen = r.seen
	c.BadLines = r.hub
	return c
}

func logStart(logger *slog.Logger, cfg config.Config, statsd *ingest.Server, f *front, pushes []*pushSink) {
	var listens []string
	for _, a := range statsd.UDPAddrs() {
		listens = append(listens, "udp "+a.String())
	}
	for _, a := range statsd.TCPAddrs() {
		listens = append(listens, "tcp "+a.String())
	}
	for _, p := range statsd.Unixgram() {
		listens = append(listens, "unixgram "+p)
	}
	httpAddr := "off"
	if f != nil {
		httpAddr = f.l.Addr().String()
	}
	targets := []string{"/metrics"}
	for _, p := range pushes {
		targets = append(targets, p.plan.target)
	}
	logger.Info("statsbridge started", "version", buildVersion(),
		"statsd", strings.Join(listens, ", "), "http", httpAddr,
		"flush_interval", cfg.Statsd.FlushInterval.D().String(),
		"sends_to", strings.Join(targets, ", "))
}

// leFormat is the model's spelling for a validated le_format.
func leFormat(s string) model.LEFormat {
	if s == config.LEFormatFloat {
		return model.LEFloat
	}
	return model.LEAsSent
}

// sinkStates is what the tap shows of the push sinks.
func (r *relay) sinkStates() []tap.SinkState {
	r.mu.Lock()
	pushes := append([]*pushSink(nil), r.pushes...)
	r.mu.Unlock()
	out := make([]tap.SinkState, 0, len(pushes))
	for _, p := range pushes {
		st := p.push.Stats()
		s := tap.SinkState{Name: p.push.Name(), Target: config.Redact(p.plan.target), Up: st.Up.Load() == 1,
			QueueBytes: st.QueueBytes.Load(), SpoolBytes: st.SpoolBytes.Load()}
		if ns := st.LastDelivered.Load(); ns != 0 {
			s.LastSuccess = time.Unix(0, ns)
		}
		for i := range st.Failures {
			s.Failures += st.Failures[i].Load()
		}
		for i := range st.Dropped {
			s.Dropped += st.Dropped[i].Load()
		}
		out = append(out, s)
	}
	return out
}
