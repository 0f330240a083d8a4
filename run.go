package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/statsbridge/statsbridge/config"
	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/prosody"
	"github.com/statsbridge/statsbridge/sinks"
	"github.com/statsbridge/statsbridge/sinks/graphite"
	"github.com/statsbridge/statsbridge/sinks/influx"
	"github.com/statsbridge/statsbridge/sinks/openmetrics"
	"github.com/statsbridge/statsbridge/sinks/remotewrite"
	"github.com/statsbridge/statsbridge/sinks/spool"
	"github.com/statsbridge/statsbridge/throttle"
)

// hooks connect run to its caller.
type hooks struct {
	// started, when set, is told the bound addresses once statsbridge is
	// up; tests use it to find ports picked by the kernel.
	started func(statsdUDP, statsdTCP []net.Addr, httpAddr net.Addr)
	// reloads carries configurations re-read on SIGHUP.
	reloads <-chan config.Config
}

// run wires the configuration to the components and runs until ctx is done.
// Then it stops the listeners (reading what the sockets already hold),
// makes the final flush, and gives the sinks shutdown_timeout to deliver.
// Nothing is started when any part fails to set up.
func run(ctx context.Context, cfg config.Config, logger *slog.Logger, h hooks) error {
	// Every per-event log line (a bad line, a refused connection or sample,
	// a failed delivery) goes through one throttle: a line a second per
	// kind, with a count of the rest.
	events := throttle.New(logger, time.Second)
	prosodyState := prosody.NewState()
	mappers, observers, err := newMappers(cfg, prosodyState)
	if err != nil {
		return err
	}
	m := model.New(model.Options{
		MaxSeries:           cfg.Limits.MaxSeries,
		MaxSeriesPerFamily:  cfg.Limits.MaxSeriesPerFamily,
		MaxLabels:           cfg.Limits.MaxLabels,
		MaxNameLength:       cfg.Limits.MaxNameLength,
		MaxLabelValueLength: cfg.Limits.MaxLabelValueLength,
		SeriesTTL:           cfg.Limits.SeriesTTL.D(),
		Percentiles:         cfg.Statsd.Percentiles,
		ExactTimerValues:    cfg.Statsd.ExactTimerValues,
		ExactSetMembers:     cfg.Statsd.ExactSetMembers,
		Observers:           observers,
		Mappers:             mappers,
		Logger:              logger,
		Events:              events,
	})

	pushes, err := newPushes(cfg, logger, events)
	if err != nil {
		return err
	}
	warnAboutOrphanSpools(pushes, logger)

	// Read Prosody's own page once before any name is bound, so that the
	// families it describes get their help and unit from the start.
	discoverProsody := cfg.Prosody.Prefix != "" && cfg.Prosody.MetricsURL != ""
	if discoverProsody {
		prosody.ReadOnce(ctx, prosodyState, cfg.Prosody.MetricsURL, logger)
	}

	statsd, err := ingest.Listen(ingestConfig(cfg, m, logger, events))
	if err != nil {
		return err
	}
	httpServer, httpListener, err := newHTTP(cfg, m, logger)
	if err != nil {
		statsd.Close()
		return err
	}
	registerSelfMetrics(m, statsd, pushes, prosodyState)

	logStart(logger, cfg, statsd, httpListener, pushes)
	if h.started != nil {
		var httpAddr net.Addr
		if httpListener != nil {
			httpAddr = httpListener.Addr()
		}
		h.started(statsd.UDPAddrs(), statsd.TCPAddrs(), httpAddr)
	}

	// The push sinks deliver until their queues are empty after the final
	// flush, or until shutdown_timeout cuts them off.
	pushCtx, cutOff := context.WithCancel(context.Background())
	defer cutOff()
	var delivering sync.WaitGroup
	for _, p := range pushes {
		delivering.Go(func() { p.push.Run(pushCtx) })
	}
	if httpServer != nil {
		go func() {
			if err := httpServer.Serve(httpListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("http server failed", "err", err)
			}
		}()
	}

	clock := cork.NewClock(cfg.Statsd.FlushInterval.D(), nil)
	flush := &model.Flush{}
	// Each sink encodes the flush at once, in its own goroutine: one that
	// waits for its backend to take batches holds up no other. None waits
	// past until, when the next flush is due (or shutdown gives up).
	uncork := func(iv cork.Interval, until time.Time) {
		flush.Interval = iv
		m.Collect(flush)
		ctx, cancel := context.WithDeadline(context.Background(), until)
		defer cancel()
		var encoding sync.WaitGroup
		for _, p := range pushes {
			encoding.Go(func() { p.push.Flush(ctx, flush) })
		}
		encoding.Wait()
		events.Flush()
	}
	var running sync.WaitGroup
	running.Go(func() { statsd.Serve(ctx) })
	running.Go(func() {
		clock.Run(ctx, func(iv cork.Interval) { uncork(iv, iv.End.Add(cfg.Statsd.FlushInterval.D())) })
	})
	running.Go(func() { applyReloads(ctx, h.reloads, m, prosodyState, logger) })
	if discoverProsody {
		running.Go(func() {
			prosody.Watch(ctx, prosodyState, cfg.Prosody.MetricsURL, cfg.Prosody.MetricsRefresh.D(), logger)
		})
	}
	running.Wait()

	logger.Info("stopping: listeners drained, making the final flush")
	giveUp := time.Now().Add(cfg.ShutdownTimeout.D())
	uncork(clock.Final(), giveUp)
	for _, p := range pushes {
		p.push.Close()
	}
	done := make(chan struct{})
	go func() { delivering.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(giveUp)):
		logger.Warn("shutdown_timeout reached; dropping what was not delivered")
		cutOff()
		<-done
	}
	for _, p := range pushes {
		p.close()
	}
	if httpServer != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = httpServer.Shutdown(shutdownCtx)
	}
	logger.Info("stopped")
	return nil
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
		mappers = append(mappers, fm)
		observers = fm.Observers()
	}
	return mappers, observers, nil
}

// applyReloads applies what can change without a restart: the mapping. A
// configuration whose mapping does not load is refused, and the mapping in
// force stays.
func applyReloads(ctx context.Context, reloads <-chan config.Config, m *model.Model, state *prosody.State, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case cfg := <-reloads:
			mappers, observers, err := newMappers(cfg, state)
			if err != nil {
				logger.Error("reload refused; the mapping in force stays", "err", err)
				continue
			}
			m.SetMappers(mappers, observers)
			logger.Info("reloaded the mapping (mapping file, Prosody hosts and families); other changes take effect at the next start",
				"mapping_file", cfg.Mapping.File)
		}
	}
}

func ingestConfig(cfg config.Config, m *model.Model, logger *slog.Logger, events *throttle.Log) ingest.Config {
	dialect := ingest.Dialect{RelativeGauges: cfg.Statsd.Gauges == config.GaugesRelativeSigns}
	if cfg.Prosody.Prefix != "" {
		dialect.LiteralPrefix = []byte(cfg.Prosody.Prefix + ".")
	}
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
		Dialect:                    dialect,
		SourceLabel:                cfg.Statsd.SourceLabel,
		NewHandler:                 func() ingest.Handler { return m.NewWriter() },
		Logger:                     logger,
		Events:                     events,
	}
}

func newHTTP(cfg config.Config, m *model.Model, logger *slog.Logger) (*http.Server, net.Listener, error) {
	if cfg.HTTP.Listen == "" {
		return nil, nil, nil
	}
	access := openmetrics.Access{}
	for _, s := range cfg.HTTP.Allow {
		p, _ := config.ParsePrefix(s) // validated
		access.Allow = append(access.Allow, p)
	}
	for _, s := range cfg.HTTP.TrustedProxies {
		p, _ := config.ParsePrefix(s)
		access.TrustedProxies = append(access.TrustedProxies, p)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", openmetrics.NewHandler(m, access, openmetrics.Options{LEFormat: leFormat(cfg.HTTP.LEFormat)}, logger))
	if cfg.HTTP.Pprof {
		servePprof(mux, access)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	l, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("http listen %s: %w", cfg.HTTP.Listen, err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return srv, l, nil
}

// pushSink is a configured push sink with what it was built from.
type pushSink struct {
	push     *sinks.Push
	target   string
	spoolDir string // "" without a spool
	skipped  func() uint64
	close    func()
}

func newPushes(cfg config.Config, logger *slog.Logger, events *throttle.Log) ([]pushSink, error) {
	var out []pushSink
	for i, g := range cfg.Graphite {
		enc := graphite.NewEncoder(graphite.Options{
			Layout:          graphiteLayouts[g.Layout],
			LegacyNamespace: g.LegacyNamespace,
			Prefix:          g.Prefix,
			Cumulative:      g.Counters == config.CountersCumulative,
			DeleteIdle:      g.DeleteIdle,
			ExternalLabels:  externalLabels(g.ExternalLabels),
		})
		t := graphite.NewTransport(g.Address, g.Timeout.D())
		opts, err := pushOptions(fmt.Sprintf("graphite[%d]", i), "graphite "+g.Address, graphiteShape(g), g.Push, logger, events)
		if err != nil {
			return nil, err
		}
		out = append(out, pushSink{push: sinks.NewPush(opts, enc, t), target: "graphite " + g.Address, spoolDir: spoolDir(opts),
			skipped: enc.Skipped.Load, close: t.Close})
	}
	for i, in := range cfg.Influx {
		enc := influx.NewEncoder(influx.Options{
			Shape:          influx.Shape(in.EffectiveShape()),
			Cumulative:     in.Counters == config.CountersCumulative,
			DeleteIdle:     in.DeleteIdle,
			ExternalLabels: externalLabels(in.ExternalLabels),
			Percentiles:    cfg.Statsd.Percentiles,
			ProsodyPrefix:  cfg.Prosody.Prefix,
		})
		t, err := influx.NewTransport(influx.TransportOptions{
			URL: in.URL, Token: in.Token.Reveal(), Username: in.Username, Password: in.Password.Reveal(),
			Gzip: in.Gzip, Timeout: in.Timeout.D(), CreateDatabase: in.CreateDatabase,
		})
		if err != nil {
			return nil, fmt.Errorf("influx[%d]: %w", i, err)
		}
		opts, err := pushOptions(fmt.Sprintf("influx[%d]", i), "influx "+in.URL, influxShape(in), in.Push, logger, events)
		if err != nil {
			return nil, err
		}
		out = append(out, pushSink{push: sinks.NewPush(opts, enc, t), target: "influx " + config.RedactURL(in.URL), spoolDir: spoolDir(opts),
			skipped: enc.Skipped.Load, close: func() {}})
	}
	for i, rw := range cfg.RemoteWrite {
		enc := remotewrite.NewEncoder(remotewrite.Options{
			ExternalLabels: externalLabels(rw.ExternalLabels),
			DeleteIdle:     rw.DeleteIdle,
			CreatedSeries:  rw.CreatedSeries,
			LEFormat:       leFormat(rw.LEFormat),
		})
		headers := map[string]string{}
		for k, v := range rw.Headers {
			headers[k] = v.Reveal()
		}
		if rw.BearerToken != "" {
			headers["Authorization"] = "Bearer " + rw.BearerToken.Reveal()
		}
		t := remotewrite.NewTransport(rw.URL, headers, rw.Timeout.D())
		opts, err := pushOptions(fmt.Sprintf("remote_write[%d]", i), "remote_write "+rw.URL, "", rw.Push, logger, events)
		if err != nil {
			return nil, err
		}
		out = append(out, pushSink{push: sinks.NewPush(opts, enc, t), target: "remote_write " + config.RedactURL(rw.URL), spoolDir: spoolDir(opts),
			skipped: func() uint64 { return 0 }, close: func() {}})
	}
	return out, nil
}

var graphiteLayouts = map[string]graphite.Layout{
	config.LayoutEtsy:  graphite.Etsy,
	config.LayoutPaths: graphite.Paths,
	config.LayoutTags:  graphite.Tags,
}

// pushOptions builds a push sink's delivery options, opening its spool.
// A sink's spool lives in a subdirectory named after its target and what it
// writes there (shape: a graphite layout, say), not its place in the file.
func pushOptions(name, target, shape string, p config.Push, logger *slog.Logger, events *throttle.Log) (sinks.Options, error) {
	o := sinks.Options{
		Name:       name,
		Batch:      cork.Limits{Records: p.BatchSize, Bytes: int(p.BatchBytes)},
		QueueBytes: int(p.QueueSize),
		Policy:     sinks.Policy{MaxRetryAge: p.MaxRetryAge.D(), MaxRetryAfter: p.MaxRetryAfter.D()},
		Logger:     logger,
		Events:     events,
	}
	if p.SpoolDir != "" {
		dir := filepath.Join(p.SpoolDir, spool.DirName(target, shape))
		sp, err := spool.Open(dir, spool.Options{Sink: config.Redact(target), MaxBytes: int64(p.SpoolSize)})
		if err != nil {
			return o, fmt.Errorf("%s: spool_dir (is another sink the same as this one?): %w", name, err)
		}
		if !sp.Empty() {
			logger.Info("delivering what an earlier run spooled", "sink", name, "bytes", sp.Bytes(), "dir", dir)
		}
		o.Spool = sp
	}
	return o, nil
}

// graphiteShape is what a graphite sink writes, beside where: two sinks to
// one carbon with other layouts keep separate spools.
func graphiteShape(g config.Graphite) string {
	return fmt.Sprintf("%s|%s|%v|%s", g.Layout, g.Prefix, g.LegacyNamespace, g.Counters)
}

// influxShape is what an influx sink writes, beside where. The etsy shape
// keeps the spool its sinks had before there were shapes; a spool of
// another shape is never delivered by a sink of another.
func influxShape(in config.Influx) string {
	if shape := in.EffectiveShape(); shape != config.ShapeEtsy {
		return in.Counters + "|" + shape
	}
	return in.Counters
}

func spoolDir(o sinks.Options) string {
	if o.Spool == nil {
		return ""
	}
	return o.Spool.Dir()
}

// warnAboutOrphanSpools logs spools under a spool_dir that no sink opened:
// what a sink whose target or layout changed left behind. It is not
// delivered, and not deleted.
func warnAboutOrphanSpools(pushes []pushSink, logger *slog.Logger) {
	var used, roots []string
	seen := map[string]bool{}
	for _, p := range pushes {
		if p.spoolDir != "" {
			used = append(used, p.spoolDir)
			if root := filepath.Dir(p.spoolDir); !seen[root] {
				seen[root] = true
				roots = append(roots, root)
			}
		}
	}
	for _, o := range spool.Orphans(roots, used) {
		logger.Warn("a spool no configured sink uses: its data is not delivered (a sink's target or layout changed?)",
			"dir", o.Dir, "sink", o.Sink, "bytes", o.Bytes)
	}
}

func externalLabels(m map[string]string) model.Labels {
	ls := make(model.Labels, 0, len(m))
	for k, v := range m {
		ls = append(ls, model.Label{Name: k, Value: v})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	return ls
}

func logStart(logger *slog.Logger, cfg config.Config, statsd *ingest.Server, httpListener net.Listener, pushes []pushSink) {
	var listens []string
	for _, a := range statsd.UDPAddrs() {
		listens = append(listens, "udp "+a.String())
	}
	for _, a := range statsd.TCPAddrs() {
		listens = append(listens, "tcp "+a.String())
	}
	for _, p := range cfg.Statsd.Unixgram {
		listens = append(listens, "unixgram "+p)
	}
	httpAddr := "off"
	if httpListener != nil {
		httpAddr = httpListener.Addr().String()
	}
	targets := []string{"/metrics"}
	for _, p := range pushes {
		targets = append(targets, p.target)
	}
	logger.Info("statsbridge started", "version", version,
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
