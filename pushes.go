package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"time"

	"github.com/statsbridge/statsbridge/config"
	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/sinks"
	"github.com/statsbridge/statsbridge/sinks/graphite"
	"github.com/statsbridge/statsbridge/sinks/influx"
	"github.com/statsbridge/statsbridge/sinks/remotewrite"
	"github.com/statsbridge/statsbridge/sinks/spool"
	"github.com/statsbridge/statsbridge/throttle"
)

// sinkPlan is a push sink as the configuration describes it: its encoder
// and transport are built, its spool not yet opened and nothing runs.
type sinkPlan struct {
	name   string // "graphite[0]"
	target string // its kind and address: "graphite 127.0.0.1:2003"
	// identity is what makes two sinks the same sink across a reload: its
	// kind, target and layout (its spool's name, spool.DirName), and its
	// spool_dir.
	identity  string
	spoolDir  string // "" without a spool
	spoolSize int64
	conf      any // the sink's table: an identical one is an unchanged sink
	opts      sinks.Options
	enc       sinks.Encoder
	t         sinks.Transport
	skipped   func() uint64
	close     func()
}

// pushSink is a running push sink.
type pushSink struct {
	plan   sinkPlan
	push   *sinks.Push
	cancel context.CancelFunc // cuts Run off
	done   chan struct{}      // closed when Run returned
}

func newPushes(cfg config.Config, logger *slog.Logger, events *throttle.Log) ([]sinkPlan, error) {
	var out []sinkPlan
	for i, g := range cfg.Graphite {
		enc := graphite.NewEncoder(graphite.Options{
			Layout:          graphiteLayouts[g.Layout],
			LegacyNamespace: g.LegacyNamespace,
			Prefix:          g.Prefix,
			Cumulative:      g.Counters == config.CountersCumulative,
			DeleteIdle:      g.DeleteIdle,
			ExternalLabels:  externalLabels(g.ExternalLabels),
		})
		tlsConfig, err := graphiteTLS(fmt.Sprintf("graphite[%d]", i), g.TLS, logger)
		if err != nil {
			closePlans(out)
			return nil, err
		}
		t := graphite.NewTransport(g.Address, g.Timeout.D(), tlsConfig)
		plan := pushOptions(fmt.Sprintf("graphite[%d]", i), "graphite "+g.Address, graphiteShape(g), g.Push, logger, events)
		plan.conf, plan.enc, plan.t, plan.skipped, plan.close = g, enc, t, enc.Skipped.Load, t.Close
		out = append(out, plan)
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
		client, err := httpClientOptions(fmt.Sprintf("influx[%d]", i), in.Timeout.D(), in.HTTPClient, logger)
		if err != nil {
			closePlans(out)
			return nil, err
		}
		t, err := influx.NewTransport(influx.TransportOptions{
			URL: in.URL, Token: in.Token.Reveal(), Username: in.Username, Password: in.Password.Reveal(),
			Gzip: in.Gzip, Timeout: in.Timeout.D(), TLS: client.TLS, Proxy: client.Proxy, CreateDatabase: in.CreateDatabase,
		})
		if err != nil {
			closePlans(out)
			return nil, fmt.Errorf("influx[%d]: %w", i, err)
		}
		plan := pushOptions(fmt.Sprintf("influx[%d]", i), "influx "+in.URL, influxShape(in), in.Push, logger, events)
		plan.target = "influx " + config.RedactURL(in.URL)
		plan.conf, plan.enc, plan.t, plan.skipped, plan.close = in, enc, t, enc.Skipped.Load, func() {}
		out = append(out, plan)
	}
	for i, rw := range cfg.RemoteWrite {
		enc := remotewrite.NewEncoder(remotewrite.Options{
			ExternalLabels:   externalLabels(rw.ExternalLabels),
			DeleteIdle:       rw.DeleteIdle,
			CreatedSeries:    rw.CreatedSeries,
			LEFormat:         leFormat(rw.LEFormat),
			NativeHistograms: rw.NativeHistograms,
		})
		client, err := httpClientOptions(fmt.Sprintf("remote_write[%d]", i), rw.Timeout.D(), rw.HTTPClient, logger)
		if err != nil {
			closePlans(out)
			return nil, err
		}
		t := remotewrite.NewTransport(rw.URL, remoteWriteHeaders(rw), client)
		t.Tell(enc)
		plan := pushOptions(fmt.Sprintf("remote_write[%d]", i), "remote_write "+rw.URL, "", rw.Push, logger, events)
		plan.target = "remote_write " + config.RedactURL(rw.URL)
		plan.conf, plan.enc, plan.t, plan.skipped, plan.close = rw, enc, t, enc.Skipped.Load, func() {}
		out = append(out, plan)
	}
	return out, nil
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

var graphiteLayouts = map[string]graphite.Layout{
	config.LayoutEtsy:  graphite.Etsy,
	config.LayoutPaths: graphite.Paths,
	config.LayoutTags:  graphite.Tags,
}

// pushOptions plans a push sink's delivery. A sink's spool lives in a
// subdirectory named after its target and what it writes there (shape: a
// graphite layout, say), not its place in the file; that name, with the
// spool_dir, is the sink's identity across a reload.
func pushOptions(name, target, shape string, p config.Push, logger *slog.Logger, events *throttle.Log) sinkPlan {
	o := sinks.Options{
		Name:        name,
		Batch:       cork.Limits{Records: p.BatchSize, Bytes: int(p.BatchBytes)},
		Concurrency: p.Concurrency,
		QueueBytes:  int(p.QueueSize),
		Policy:      sinks.Policy{MaxRetryAge: p.MaxRetryAge.D(), MaxRetryAfter: p.MaxRetryAfter.D()},
		LeaveOutOwn: !p.SelfMetrics,
		Logger:      logger,
		Events:      events,
	}
	plan := sinkPlan{name: name, target: target, opts: o, spoolSize: int64(p.SpoolSize),
		identity: spool.DirName(target, shape) + "\x00" + p.SpoolDir}
	if p.SpoolDir != "" {
		plan.spoolDir = filepath.Join(p.SpoolDir, spool.DirName(target, shape))
	}
	return plan
}

// graphiteShape is what a graphite sink writes, beside where: two sinks to
// one carbon with other layouts keep separate spools.
func graphiteShape(g config.Graphite) string {
	return fmt.Sprintf("%s|%s|%v|%s", g.Layout, g.Prefix, g.LegacyNamespace, g.Counters)
}

// openSink opens a planned sink's spool and makes its Push. It does not
// start it.
func openSink(p sinkPlan, logger *slog.Logger) (*pushSink, error) {
	if p.spoolDir != "" {
		sp, err := spool.Open(p.spoolDir, spool.Options{Sink: config.Redact(p.target), MaxBytes: p.spoolSize})
		if err != nil {
			return nil, fmt.Errorf("%s: spool_dir (is another sink the same as this one?): %w", p.name, err)
		}
		if !sp.Empty() {
			logger.Info("delivering what an earlier run spooled", "sink", p.name, "bytes", sp.Bytes(), "dir", p.spoolDir)
		}
		p.opts.Spool = sp
	}
	return &pushSink{plan: p, push: sinks.NewPush(p.opts, p.enc, p.t), done: make(chan struct{})}, nil
}

// start delivers a sink's batches until it is closed and empty, or cut off
// (shutdown_timeout).
func (r *relay) start(p *pushSink) {
	ctx, cancel := context.WithCancel(r.deliver)
	p.cancel = cancel
	go func() {
		defer close(p.done)
		p.push.Run(ctx)
	}()
}

// retire ends a sink a reload removed (or whose identity changed): it
// delivers what waits for up to timeout, then what is left goes to its
// spool (or is counted as dropped without one), and its transport closes.
func (r *relay) retire(p *pushSink, timeout time.Duration) {
	r.self.removeSink(p)
	p.push.Close()
	r.retiring.Go(func() {
		select {
		case <-p.done:
		case <-time.After(timeout):
			r.logger.Warn("a sink the reload removed did not deliver everything within shutdown_timeout; the rest is spooled or dropped",
				"sink", p.push.Name(), "target", p.plan.target)
			p.cancel()
			<-p.done
		}
		p.cancel()
		p.plan.close()
		if n := p.push.Stats().SpoolBytes.Load(); n > 0 {
			r.logger.Warn("a sink the reload removed left data in its spool; no configured sink delivers it",
				"sink", p.push.Name(), "target", p.plan.target, "dir", p.plan.spoolDir, "bytes", n)
		}
	})
}

// reconfigure gives a running sink whose identity a reload kept its new
// settings; it keeps its queue and spool.
func (p *pushSink) reconfigure(plan sinkPlan) {
	p.push.Reconfigure(plan.opts, plan.enc, plan.t, plan.spoolSize)
	plan.spoolDir = p.plan.spoolDir
	p.plan = plan
}

// sinkChange is how a reload changes the sinks, matched by identity.
type sinkChange struct {
	kept    map[*pushSink]bool // unchanged: they go on as they are
	changed []changedSink      // the same sink with other settings
	added   []sinkPlan         // new sinks (identity changed, or new)
	opened  []*pushSink        // added, with their spools open
	removed []*pushSink
	discard []sinkPlan // plans of kept sinks: built, not used
}

type changedSink struct {
	sink *pushSink
	plan sinkPlan
}

func (c *sinkChange) changedSink(p *pushSink) *changedSink {
	for i := range c.changed {
		if c.changed[i].sink == p {
			return &c.changed[i]
		}
	}
	return nil
}

// matchSinks pairs the running sinks with the plans of a reloaded
// configuration by identity, in order.
func matchSinks(running []*pushSink, plans []sinkPlan) *sinkChange {
	c := &sinkChange{kept: map[*pushSink]bool{}}
	byIdentity := map[string][]*pushSink{}
	for _, p := range running {
		byIdentity[p.plan.identity] = append(byIdentity[p.plan.identity], p)
	}
	for _, plan := range plans {
		same := byIdentity[plan.identity]
		if len(same) == 0 {
			c.added = append(c.added, plan)
			continue
		}
		p := same[0]
		byIdentity[plan.identity] = same[1:]
		if p.plan.name == plan.name && reflect.DeepEqual(p.plan.conf, plan.conf) {
			c.kept[p] = true
			c.discard = append(c.discard, plan)
		} else {
			c.changed = append(c.changed, changedSink{sink: p, plan: plan})
		}
	}
	for _, left := range byIdentity {
		c.removed = append(c.removed, left...)
	}
	return c
}

// closeAll closes sinks that never started: their spools and transports.
func closeAll(ps []*pushSink) {
	for _, p := range ps {
		if p.plan.opts.Spool != nil {
			p.plan.opts.Spool.Close()
		}
		p.plan.close()
	}
}

func closePlans(plans []sinkPlan) {
	for _, p := range plans {
		p.close()
	}
}

// warnAboutOrphanSpools logs spools under a spool_dir that no sink opened:
// what a sink whose target or layout changed left behind. It is not
// delivered, and not deleted.
func warnAboutOrphanSpools(pushes []*pushSink, logger *slog.Logger) {
	var used, roots []string
	seen := map[string]bool{}
	for _, p := range pushes {
		if p.plan.spoolDir != "" {
			used = append(used, p.plan.spoolDir)
			if root := filepath.Dir(p.plan.spoolDir); !seen[root] {
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
