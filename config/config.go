// Package config turns a statsbridge TOML file into a typed, validated
// configuration. Every key has a default (see Default and config.example.toml),
// and every error names the key and, where the file has it, the line.
package config

import (
	"time"
)

// Config is the whole statsbridge configuration.
type Config struct {
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	LogLevel        string   `toml:"log_level"`
	LogFormat       string   `toml:"log_format"`

	Statsd  Statsd  `toml:"statsd"`
	Prosody Prosody `toml:"prosody"`
	Mapping Mapping `toml:"mapping"`
	Limits  Limits  `toml:"limits"`
	HTTP    HTTP    `toml:"http"`

	Graphite    []Graphite    `toml:"graphite"`
	Influx      []Influx      `toml:"influx"`
	RemoteWrite []RemoteWrite `toml:"remote_write"`
}

// Statsd configures the StatsD listeners and the flush clock.
type Statsd struct {
	UDP          []string `toml:"udp"`
	TCP          []string `toml:"tcp"`
	Unixgram     []string `toml:"unixgram"`
	UnixgramMode FileMode `toml:"unixgram_mode"`
	// UnixgramGroup owns the socket files: a name or a gid; "" is the
	// process's group.
	UnixgramGroup string   `toml:"unixgram_group"`
	Readers       int      `toml:"readers"`
	ReadBuffer    ByteSize `toml:"read_buffer"`
	// ReadCork is how long a UDP reader waits after a read that drained
	// its socket, so that the next read takes a batch; 0 turns it off.
	ReadCork Duration `toml:"read_cork"`
	MaxLine  ByteSize `toml:"max_line"`

	TCPMaxConnections          int      `toml:"tcp_max_connections"`
	TCPMaxConnectionsPerSource int      `toml:"tcp_max_connections_per_source"`
	TCPIdleTimeout             Duration `toml:"tcp_idle_timeout"`
	TCPLineTimeout             Duration `toml:"tcp_line_timeout"`

	FlushInterval    Duration  `toml:"flush_interval"`
	Gauges           string    `toml:"gauges"`
	Percentiles      []float64 `toml:"percentiles"`
	HistogramBuckets []float64 `toml:"histogram_buckets"`
	ExactTimerValues int       `toml:"exact_timer_values"`
	ExactSetMembers  int       `toml:"exact_set_members"`
	SourceLabel      string    `toml:"source_label"`
}

// Gauge sign handling, the values of Statsd.Gauges.
const (
	GaugesRelativeSigns = "relative-signs"
	GaugesAbsolute      = "absolute"
)

// Prosody configures the Prosody dialect.
type Prosody struct {
	Prefix         string          `toml:"prefix"`
	Hosts          []string        `toml:"hosts"`
	MetricsURL     string          `toml:"metrics_url"`
	MetricsRefresh Duration        `toml:"metrics_refresh"`
	Families       []ProsodyFamily `toml:"family"`
}

// ProsodyFamily adds a family to the Prosody catalog, or replaces the one
// with the same name or StatsD spelling: for third-party modules.
type ProsodyFamily struct {
	Name    string              `toml:"name"`
	StatsD  string              `toml:"statsd"`
	Type    string              `toml:"type"`
	Unit    string              `toml:"unit"`
	Help    string              `toml:"help"`
	Labels  []string            `toml:"labels"`
	Buckets []string            `toml:"buckets"`
	Values  map[string][]string `toml:"values"`
}

// Mapping points at a statsd_exporter mapping file, and says whether
// timers, histograms and distributions keep native histograms where the
// file does not say.
type Mapping struct {
	File                        string  `toml:"file"`
	NativeHistogramBucketFactor float64 `toml:"native_histogram_bucket_factor"`
	NativeHistogramMaxBuckets   int     `toml:"native_histogram_max_buckets"`
}

// Limits bound what the model keeps.
type Limits struct {
	MaxSeries           int      `toml:"max_series"`
	MaxSeriesPerFamily  int      `toml:"max_series_per_family"`
	MaxLabels           int      `toml:"max_labels"`
	MaxNameLength       int      `toml:"max_name_length"`
	MaxLabelValueLength int      `toml:"max_label_value_length"`
	SeriesTTL           Duration `toml:"series_ttl"`
}

// Log formats, the values of Config.LogFormat.
const (
	LogText = "text"
	LogJSON = "json"
)

// HTTP configures the /metrics, /healthz and admin listener.
type HTTP struct {
	Listen         string   `toml:"listen"`
	Allow          []string `toml:"allow"`
	TrustedProxies []string `toml:"trusted_proxies"`
	LEFormat       string   `toml:"le_format"`
	// AdminAllow is who may use the admin endpoints (statsbridge tap,
	// reload), apart from Allow: a container opens /metrics to whole
	// networks.
	AdminAllow []string `toml:"admin_allow"`
	// Pprof serves Go's profiles under /debug/pprof/ to the allowed
	// addresses.
	Pprof bool `toml:"pprof"`
}

// Spellings of le and quantile label values, the values of HTTP.LEFormat
// and RemoteWrite.LEFormat.
const (
	LEFormatProsody = "prosody" // as sent: what Prometheus 2.x stores from a text scrape
	LEFormatFloat   = "float"   // as Prometheus 3 stores every scraped le and quantile
)

// Push holds what every push sink shares.
type Push struct {
	ExternalLabels map[string]string `toml:"external_labels"`
	Counters       string            `toml:"counters"`
	DeleteIdle     bool              `toml:"delete_idle"`
	BatchSize      int               `toml:"batch_size"`
	Concurrency    int               `toml:"concurrency"`
	BatchBytes     ByteSize          `toml:"batch_bytes"`
	QueueSize      ByteSize          `toml:"queue_size"`
	SpoolDir       string            `toml:"spool_dir"`
	SpoolSize      ByteSize          `toml:"spool_size"`
	MaxRetryAge    Duration          `toml:"max_retry_age"`
	MaxRetryAfter  Duration          `toml:"max_retry_after"`
	Timeout        Duration          `toml:"timeout"`
	// SelfMetrics sends statsbridge's own families (statsbridge_*,
	// process_*, go_*) too.
	SelfMetrics bool `toml:"self_metrics"`
}

// Counter renderings, the values of Push.Counters.
const (
	CountersDelta      = "delta"
	CountersCumulative = "cumulative"
)

// Graphite is one carbon plaintext sink.
type Graphite struct {
	Address         string      `toml:"address"`
	Layout          string      `toml:"layout"`
	LegacyNamespace bool        `toml:"legacy_namespace"`
	Prefix          string      `toml:"prefix"`
	TLS             GraphiteTLS `toml:"tls"`
	Push
}

// TLS is how a push sink checks its backend's certificate and shows its own.
// Every field may be left empty: the system's CAs check the backend, and no
// client certificate is shown.
type TLS struct {
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ServerName is the name the backend's certificate must hold, when it
	// is not the host the sink connects to.
	ServerName         string `toml:"server_name"`
	InsecureSkipVerify bool   `toml:"insecure_skip_verify"`
}

// GraphiteTLS is carbon's TLS. Carbon's plaintext protocol has no URL
// scheme to ask for TLS, so it is switched on.
type GraphiteTLS struct {
	Enabled bool `toml:"enabled"`
	TLS
}

// HTTPClient is how an HTTP sink reaches its backend: TLS for an https://
// URL, and a proxy.
type HTTPClient struct {
	TLS TLS `toml:"tls"`
	// ProxyURL is an http://, https:// or socks5:// proxy, with its
	// credentials as user information; "" takes HTTPS_PROXY, HTTP_PROXY and
	// NO_PROXY from the environment.
	ProxyURL string `toml:"proxy_url"`
}

// Graphite layouts, the values of Graphite.Layout.
const (
	LayoutEtsy  = "etsy"
	LayoutPaths = "paths"
	LayoutTags  = "tags"
)

// Influx is one InfluxDB line-protocol sink.
type Influx struct {
	URL          string `toml:"url"`
	Token        Secret `toml:"token"`
	TokenFile    string `toml:"token_file"`
	Username     string `toml:"username"`
	Password     Secret `toml:"password"`
	PasswordFile string `toml:"password_file"`
	Gzip         bool   `toml:"gzip"`
	// CreateDatabase creates a missing InfluxDB 1.x database.
	CreateDatabase bool `toml:"create_database"`
	// Shape is the convention the points follow (see EffectiveShape).
	Shape string `toml:"shape"`
	HTTPClient
	Push
}

// Influx shapes, the values of Influx.Shape.
const (
	ShapeTelegraf   = "telegraf"   // Telegraf's statsd input; delta counters
	ShapeEtsy       = "etsy"       // Etsy statsd's statistics, float fields
	ShapePrometheus = "prometheus" // Telegraf's prometheus input; cumulative
)

// EffectiveShape is the shape the sink writes: the one set, or without one
// Telegraf's statsd shape for delta counters and its prometheus shape for
// cumulative ones.
func (in *Influx) EffectiveShape() string {
	switch {
	case in.Shape != "":
		return in.Shape
	case in.Counters == CountersCumulative:
		return ShapePrometheus
	}
	return ShapeTelegraf
}

// RemoteWrite is one Prometheus remote-write sink.
type RemoteWrite struct {
	URL             string            `toml:"url"`
	Headers         map[string]Secret `toml:"headers"`
	BearerToken     Secret            `toml:"bearer_token"`
	BearerTokenFile string            `toml:"bearer_token_file"`
	// Username, with Password, is HTTP basic authentication (Grafana
	// Cloud, a Mimir or Thanos Receive behind a proxy).
	Username      string `toml:"username"`
	Password      Secret `toml:"password"`
	PasswordFile  string `toml:"password_file"`
	CreatedSeries bool   `toml:"created_series"`
	LEFormat      string `toml:"le_format"`
	// NativeHistograms sends the native histograms of the families that
	// keep them (Prometheus 2.40+ with --enable-feature=native-histograms,
	// 3.x, Mimir, Thanos, VictoriaMetrics 1.91+ take them).
	NativeHistograms bool `toml:"native_histograms"`
	HTTPClient
	Push
}

// Default is the embedded configuration: what statsbridge runs with when it is
// given no file and no flags.
func Default() Config {
	return Config{
		ShutdownTimeout: Duration(15 * time.Second),
		LogLevel:        "info",
		LogFormat:       LogText,
		Statsd: Statsd{
			UDP:                        []string{"127.0.0.1:8125"},
			TCP:                        []string{"127.0.0.1:8125"},
			Unixgram:                   []string{},
			UnixgramMode:               0o660,
			UnixgramGroup:              "",
			Readers:                    0,
			ReadBuffer:                 8 << 20,
			ReadCork:                   Duration(time.Millisecond),
			MaxLine:                    64 << 10,
			TCPMaxConnections:          1024,
			TCPMaxConnectionsPerSource: 64,
			TCPIdleTimeout:             Duration(5 * time.Minute),
			TCPLineTimeout:             Duration(10 * time.Second),
			FlushInterval:              Duration(10 * time.Second),
			Gauges:                     GaugesRelativeSigns,
			Percentiles:                []float64{90},
			HistogramBuckets:           []float64{},
			ExactTimerValues:           1000,
			ExactSetMembers:            10000,
			SourceLabel:                "",
		},
		Prosody: Prosody{Prefix: "prosody", Hosts: []string{}, MetricsRefresh: Duration(5 * time.Minute), Families: []ProsodyFamily{}},
		Mapping: Mapping{NativeHistogramMaxBuckets: 256},
		Limits: Limits{
			MaxSeries:           1_000_000,
			MaxSeriesPerFamily:  100_000,
			MaxLabels:           32,
			MaxNameLength:       256,
			MaxLabelValueLength: 1024,
		},
		HTTP: HTTP{
			Listen:         "127.0.0.1:9102",
			Allow:          []string{"127.0.0.0/8", "::1/128"},
			TrustedProxies: []string{},
			LEFormat:       LEFormatProsody,
			AdminAllow:     []string{"127.0.0.0/8", "::1/128"},
			Pprof:          false,
		},
		Graphite:    []Graphite{},
		Influx:      []Influx{},
		RemoteWrite: []RemoteWrite{},
	}
}

// DefaultPush is what a push sink shares when the file says nothing.
func DefaultPush() Push {
	return Push{
		ExternalLabels: map[string]string{},
		Counters:       CountersDelta,
		BatchSize:      1000,
		Concurrency:    1,
		BatchBytes:     1 << 20,
		QueueSize:      64 << 20,
		SpoolSize:      1 << 30,
		MaxRetryAge:    Duration(5 * time.Minute),
		MaxRetryAfter:  Duration(5 * time.Minute),
		Timeout:        Duration(10 * time.Second),
		SelfMetrics:    true,
	}
}

// DefaultGraphite is a graphite sink with nothing set but its address.
func DefaultGraphite() Graphite {
	return Graphite{Address: "127.0.0.1:2003", Layout: LayoutEtsy, LegacyNamespace: true, Push: DefaultPush()}
}

// DefaultInflux is an influx sink with nothing set but its URL.
func DefaultInflux() Influx {
	p := DefaultPush()
	p.Concurrency = 4
	return Influx{URL: "http://127.0.0.1:8086/write?db=statsd", Gzip: true, Push: p}
}

// DefaultRemoteWrite is a remote-write sink with nothing set but its URL.
// Remote-write only has cumulative counters.
func DefaultRemoteWrite() RemoteWrite {
	p := DefaultPush()
	p.Counters = CountersCumulative
	p.Concurrency = 4
	return RemoteWrite{URL: "http://127.0.0.1:9090/api/v1/write", Headers: map[string]Secret{}, CreatedSeries: true,
		LEFormat: LEFormatProsody, Push: p}
}
