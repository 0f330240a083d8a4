// Command telegraf-oracle runs Telegraf's own plugins and influx
// serializer, so that the end-to-end tests can hold statsbridge's InfluxDB
// shapes to what Telegraf writes from the same input.
//
// "telegraf-oracle prometheus" reads a Prometheus text exposition on
// standard input and prints what Telegraf's prometheus input
// (metric_version 1, its default) makes of it, as line protocol. Without an
// argument it runs the statsd input:
//
// It reads a script on standard input: every line is one StatsD datagram
// (with `\n` standing for a newline inside it, for datagrams of several
// lines), sent over UDP to the plugin's listener, except the line "#gather", which
// waits until the plugin has parsed every datagram sent so far, gathers as
// Telegraf's agent does at the end of an interval, and prints the interval's
// points as line protocol followed by the line "#end". The plugin's
// configuration is statsd.toml, embedded: Telegraf's defaults but for what
// the file says. No agent runs, so no host tag is added (omit_hostname).
package main

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/influxdata/telegraf"
	"github.com/influxdata/telegraf/metric"
	"github.com/influxdata/telegraf/plugins/inputs"
	"github.com/influxdata/telegraf/plugins/inputs/statsd"
	"github.com/influxdata/telegraf/plugins/parsers/prometheus"
	"github.com/influxdata/telegraf/plugins/serializers/influx"
	"github.com/influxdata/toml"
)

//go:embed statsd.toml
var pluginConfig []byte

// sentinel is a counter sent after each interval's datagrams. The plugin
// parses datagrams in the order received (one parser), so once it holds
// the sentinel it has parsed all the others. Its key in the plugin's
// counter cache is the sorted tags followed by the name.
const (
	sentinelName = "telegraf_oracle_sentinel"
	sentinelLine = sentinelName + ":1|c"
	sentinelHash = "metric_type=counter" + sentinelName
)

func main() {
	run := runStatsd
	if len(os.Args) > 1 && os.Args[1] == "prometheus" {
		run = runPrometheus
	}
	if err := run(); err != nil {
		log.Fatalf("telegraf-oracle: %v", err)
	}
}

// runPrometheus parses an exposition as the prometheus input does.
func runPrometheus() error {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	p := &prometheus.Parser{MetricVersion: 1, Log: logger{}}
	metrics, err := p.Parse(data)
	if err != nil {
		return err
	}
	return serialize(os.Stdout, metrics)
}

// serialize writes metrics as Telegraf's influx output does.
func serialize(w io.Writer, metrics []telegraf.Metric) error {
	ser := &influx.Serializer{}
	if err := ser.Init(); err != nil {
		return err
	}
	out := bufio.NewWriter(w)
	for _, m := range metrics {
		b, err := ser.Serialize(m)
		if err != nil {
			fmt.Fprintf(out, "#refused %s: %v\n", m.Name(), err)
			continue
		}
		out.Write(b)
	}
	return out.Flush()
}

func runStatsd() error {
	s, ok := inputs.Inputs["statsd"]().(*statsd.Statsd)
	if !ok {
		return errors.New("the statsd input is not Telegraf's")
	}
	if err := toml.Unmarshal(pluginConfig, s); err != nil {
		return fmt.Errorf("statsd.toml: %w", err)
	}
	s.Log = logger{}
	acc := &accumulator{}
	if err := s.Start(acc); err != nil {
		return err
	}
	defer s.Stop()
	conn, err := net.DialUDP("udp", nil, s.UDPlistener.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return err
	}
	defer conn.Close()

	out := os.Stdout
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<10)
	for in.Scan() {
		line := in.Text()
		if line != "#gather" {
			if _, err := conn.Write([]byte(strings.ReplaceAll(line, `\n`, "\n"))); err != nil {
				return err
			}
			continue
		}
		if _, err := conn.Write([]byte(sentinelLine)); err != nil {
			return err
		}
		if err := waitForSentinel(s); err != nil {
			return err
		}
		if err := s.Gather(acc); err != nil {
			return err
		}
		var metrics []telegraf.Metric
		for _, m := range acc.take() {
			if m.Name() != sentinelName {
				metrics = append(metrics, m)
			}
		}
		if err := serialize(out, metrics); err != nil {
			return err
		}
		fmt.Fprintln(out, "#end")
	}
	return in.Err()
}

// waitForSentinel waits until the plugin's counter cache holds the sentinel.
// The cache is unexported; reflection reads it under the plugin's lock.
func waitForSentinel(s *statsd.Statsd) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.Lock()
		counters := reflect.ValueOf(s).Elem().FieldByName("counters")
		held := counters.IsValid() && counters.MapIndex(reflect.ValueOf(sentinelHash)).IsValid()
		s.Unlock()
		if held {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("the plugin did not parse the datagrams within 10s")
}

// accumulator collects what Gather adds, as Telegraf's agent makes metrics
// of it (metric.New), without the agent's global tags.
type accumulator struct {
	mu      sync.Mutex
	metrics []telegraf.Metric
}

func (a *accumulator) add(name string, fields map[string]interface{}, tags map[string]string, tp telegraf.ValueType, t []time.Time) {
	tm := time.Now()
	if len(t) > 0 {
		tm = t[0]
	}
	a.AddMetric(metric.New(name, tags, fields, tm, tp))
}

func (a *accumulator) AddFields(n string, f map[string]interface{}, tg map[string]string, t ...time.Time) {
	a.add(n, f, tg, telegraf.Untyped, t)
}

func (a *accumulator) AddGauge(n string, f map[string]interface{}, tg map[string]string, t ...time.Time) {
	a.add(n, f, tg, telegraf.Gauge, t)
}

func (a *accumulator) AddCounter(n string, f map[string]interface{}, tg map[string]string, t ...time.Time) {
	a.add(n, f, tg, telegraf.Counter, t)
}

func (a *accumulator) AddSummary(n string, f map[string]interface{}, tg map[string]string, t ...time.Time) {
	a.add(n, f, tg, telegraf.Summary, t)
}

func (a *accumulator) AddHistogram(n string, f map[string]interface{}, tg map[string]string, t ...time.Time) {
	a.add(n, f, tg, telegraf.Histogram, t)
}

func (a *accumulator) AddMetric(m telegraf.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.metrics = append(a.metrics, m)
}

func (*accumulator) SetPrecision(time.Duration) {}

func (*accumulator) AddError(err error) { log.Printf("telegraf-oracle: plugin error: %v", err) }

func (*accumulator) WithTracking(int) telegraf.TrackingAccumulator {
	panic("telegraf-oracle: tracking is not used by the statsd input")
}

// take returns the metrics added so far, in a stable order, and forgets them.
func (a *accumulator) take() []telegraf.Metric {
	a.mu.Lock()
	defer a.mu.Unlock()
	ms := a.metrics
	a.metrics = nil
	key := func(m telegraf.Metric) string {
		var b strings.Builder
		b.WriteString(m.Name())
		for _, t := range m.TagList() {
			b.WriteString("," + t.Key + "=" + t.Value)
		}
		return b.String()
	}
	sort.SliceStable(ms, func(i, j int) bool { return key(ms[i]) < key(ms[j]) })
	return ms
}

// logger writes the plugin's warnings and errors (such as the lines it
// refuses) to standard error.
type logger struct{}

func (logger) Level() telegraf.LogLevel                  { return telegraf.Warn }
func (logger) AddAttribute(string, interface{})          {}
func (logger) Errorf(format string, args ...interface{}) { log.Printf("E! "+format, args...) }
func (logger) Error(args ...interface{})                 { log.Print(append([]interface{}{"E! "}, args...)...) }
func (logger) Warnf(format string, args ...interface{})  { log.Printf("W! "+format, args...) }
func (logger) Warn(args ...interface{})                  { log.Print(append([]interface{}{"W! "}, args...)...) }
func (logger) Infof(string, ...interface{})              {}
func (logger) Info(...interface{})                       {}
func (logger) Debugf(string, ...interface{})             {}
func (logger) Debug(...interface{})                      {}
func (logger) Tracef(string, ...interface{})             {}
func (logger) Trace(...interface{})                      {}
