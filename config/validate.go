package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Validate checks a configuration built in code (flags applied to a file, say).
// Its errors name keys but no lines.
func (c *Config) Validate() error {
	if errs := c.validate(keyIndex{}); len(errs) > 0 {
		return errs
	}
	return nil
}

func (c *Config) validate(keys keyIndex) Errors {
	v := validator{keys: keys}
	v.check("shutdown_timeout", c.ShutdownTimeout > 0, "must be more than 0")
	v.oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error")
	v.oneOf("log_format", c.LogFormat, LogText, LogJSON)

	s := &c.Statsd
	for i, a := range s.UDP {
		v.hostPort(fmt.Sprintf("statsd.udp[%d]", i), "statsd.udp", a, true)
	}
	for i, a := range s.TCP {
		v.hostPort(fmt.Sprintf("statsd.tcp[%d]", i), "statsd.tcp", a, true)
	}
	for _, p := range s.Unixgram {
		v.check("statsd.unixgram", p != "", "a socket path must not be empty")
	}
	if g := s.UnixgramGroup; g != "" {
		_, numErr := strconv.ParseUint(g, 10, 31)
		_, nameErr := user.LookupGroup(g)
		v.check("statsd.unixgram_group", numErr == nil || nameErr == nil, "no group named %q: %v", g, nameErr)
	}
	v.check("statsd.readers", s.Readers >= 0 && s.Readers <= 1024, "must be 0 (one per core) to 1024")
	v.check("statsd.read_buffer", s.ReadBuffer >= 0 && s.ReadBuffer <= 1<<30, "must be 0 to 1GiB")
	v.check("statsd.read_cork", s.ReadCork >= 0 && s.ReadCork.D() <= 100*time.Millisecond,
		"must be 0s (off) to 100ms")
	v.check("statsd.max_line", s.MaxLine >= 512 && s.MaxLine <= 16<<20, "must be 512B to 16MiB")
	v.check("statsd.tcp_max_connections", s.TCPMaxConnections > 0, "must be more than 0")
	v.check("statsd.tcp_max_connections_per_source", s.TCPMaxConnectionsPerSource >= 0, "must not be negative (0: no limit)")
	v.check("statsd.tcp_idle_timeout", s.TCPIdleTimeout >= 0, "must not be negative")
	v.check("statsd.tcp_line_timeout", s.TCPLineTimeout >= 0, "must not be negative (\"0s\": off)")
	v.check("statsd.flush_interval", s.FlushInterval.D() >= 100*time.Millisecond,
		"must be at least 100ms")
	v.check("statsd.flush_interval", s.FlushInterval.D()%time.Millisecond == 0,
		"must be a whole number of milliseconds")
	v.oneOf("statsd.gauges", s.Gauges, GaugesRelativeSigns, GaugesAbsolute)
	for _, p := range s.Percentiles {
		v.check("statsd.percentiles", p != 0 && p >= -100 && p <= 100 && !math.IsNaN(p),
			"%v is not a percentile threshold in [-100, 100] other than 0", p)
	}
	v.increasing("statsd.histogram_buckets", s.HistogramBuckets)
	v.check("statsd.exact_timer_values", s.ExactTimerValues > 0, "must be more than 0")
	v.check("statsd.exact_set_members", s.ExactSetMembers > 0, "must be more than 0")
	if s.SourceLabel != "" {
		v.check("statsd.source_label", labelNameRE.MatchString(s.SourceLabel) && !strings.HasPrefix(s.SourceLabel, "__"),
			"%q is not a valid label name", s.SourceLabel)
		v.check("statsd.source_label", !seriesLabel(s.SourceLabel),
			"%q is the label a histogram or summary sets on its own series", s.SourceLabel)
	}

	v.check("prosody.prefix", !strings.ContainsAny(c.Prosody.Prefix, " \t\n:|"),
		"%q cannot be a StatsD name prefix", c.Prosody.Prefix)
	if c.Prosody.MetricsURL != "" {
		v.httpURL("prosody.metrics_url", c.Prosody.MetricsURL)
	}
	v.check("prosody.metrics_refresh", c.Prosody.MetricsRefresh >= Duration(time.Second), "must be at least 1s")
	for i, f := range c.Prosody.Families {
		key := fmt.Sprintf("prosody.family[%d]", i)
		v.check(key+".name", f.Name != "", "a family needs a name")
		v.check(key+".statsd", f.StatsD != "", "a family needs its StatsD spelling")
		v.oneOf(key+".type", f.Type, "counter", "gauge", "histogram", "summary")
	}

	f := c.Mapping.NativeHistogramBucketFactor
	v.check("mapping.native_histogram_bucket_factor", f == 0 || f > 1 && !math.IsInf(f, 1),
		"must be 0 (no native histograms) or more than 1 (1.1: buckets at most 10%% wider than the one before)")
	v.check("mapping.native_histogram_max_buckets", c.Mapping.NativeHistogramMaxBuckets >= 1 && c.Mapping.NativeHistogramMaxBuckets <= 16384,
		"must be 1 to 16384")

	v.check("limits.max_series", c.Limits.MaxSeries > 0, "must be more than 0")
	v.check("limits.max_series_per_family", c.Limits.MaxSeriesPerFamily > 0, "must be more than 0")
	v.check("limits.series_ttl", c.Limits.SeriesTTL >= 0, "must not be negative")
	v.check("limits.max_labels", c.Limits.MaxLabels >= 0, "must not be negative (0: no limit)")
	v.check("limits.max_name_length", c.Limits.MaxNameLength >= 0, "must not be negative (0: no limit)")
	v.check("limits.max_label_value_length", c.Limits.MaxLabelValueLength >= 0, "must not be negative (0: no limit)")

	if c.HTTP.Listen != "" {
		v.hostPort("http.listen", "http.listen", c.HTTP.Listen, true)
	}
	for _, a := range c.HTTP.Allow {
		v.prefix("http.allow", a)
	}
	for _, a := range c.HTTP.AdminAllow {
		v.prefix("http.admin_allow", a)
	}
	for _, a := range c.HTTP.TrustedProxies {
		v.prefix("http.trusted_proxies", a)
	}
	v.oneOf("http.le_format", c.HTTP.LEFormat, LEFormatProsody, LEFormatFloat)

	for i := range c.Graphite {
		g := &c.Graphite[i]
		p := fmt.Sprintf("graphite[%d].", i)
		v.hostPort(p+"address", p+"address", g.Address, false)
		v.oneOf(p+"layout", g.Layout, LayoutEtsy, LayoutPaths, LayoutTags)
		v.check(p+"prefix", !strings.ContainsAny(g.Prefix, " \t\n;"), "must not contain spaces or ';'")
		v.check(p+"tls", g.TLS.Enabled || g.TLS.TLS == TLS{}, "these settings need tls.enabled = true")
		v.tls(p, g.TLS.TLS)
		v.push(p, &g.Push, CountersDelta, CountersCumulative)
		v.check(p+"concurrency", g.Concurrency == 1, "must be 1: carbon is written over one connection")
	}
	for i := range c.Influx {
		in := &c.Influx[i]
		p := fmt.Sprintf("influx[%d].", i)
		v.influxURL(p+"url", in.URL)
		v.httpClient(p, in.URL, in.HTTPClient)
		v.push(p, &in.Push, CountersDelta, CountersCumulative)
		v.oneOf(p+"shape", in.Shape, "", ShapeTelegraf, ShapeEtsy, ShapePrometheus)
		switch in.Shape {
		case ShapeTelegraf:
			v.check(p+"shape", in.Counters == CountersDelta, `"telegraf" writes per-interval counters: it needs counters = "delta"`)
		case ShapePrometheus:
			v.check(p+"shape", in.Counters == CountersCumulative, `"prometheus" writes totals: it needs counters = "cumulative"`)
		}
	}
	for i := range c.RemoteWrite {
		rw := &c.RemoteWrite[i]
		p := fmt.Sprintf("remote_write[%d].", i)
		v.httpURL(p+"url", rw.URL)
		v.httpClient(p, rw.URL, rw.HTTPClient)
		v.remoteWriteAuth(p, rw)
		v.oneOf(p+"le_format", rw.LEFormat, LEFormatProsody, LEFormatFloat)
		v.push(p, &rw.Push, CountersCumulative)
	}
	return v.errs
}

type validator struct {
	keys keyIndex
	errs Errors
}

func (v *validator) check(key string, ok bool, format string, args ...any) {
	if !ok {
		v.errs = append(v.errs, v.keys.errorf(key, format, args...))
	}
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.check(key, false, "%q is not one of %s", value, strings.Join(quoteAll(allowed), ", "))
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// hostPort checks an address to listen on (where port 0 picks a free port)
// or connect to. lineKey is the key whose line the error points at (a
// list's elements share the list's line).
func (v *validator) hostPort(key, lineKey, addr string, listen bool) {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		var n uint64
		n, err = strconv.ParseUint(port, 10, 16)
		if err == nil && n == 0 && !listen {
			err = fmt.Errorf("port 0 cannot be connected to")
		}
	}
	if err != nil {
		v.errs = append(v.errs, &FieldError{Key: key, Line: v.keys.line(lineKey),
			Msg: fmt.Sprintf("%q is not a host:port address: %v", addr, err)})
	}
}

func (v *validator) prefix(key, s string) {
	if _, err := ParsePrefix(s); err != nil {
		v.check(key, false, "%v", err)
	}
}

// ParsePrefix reads an IP address or CIDR prefix; a bare address is a
// prefix of one address.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (v *validator) increasing(key string, xs []float64) {
	for i, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			v.check(key, false, "bucket bounds must be finite numbers")
			return
		}
		if i > 0 && x <= xs[i-1] {
			v.check(key, false, "bucket bounds must be strictly increasing")
			return
		}
	}
}

func (v *validator) httpURL(key, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.check(key, false, "%q is not an http:// or https:// URL", RedactURL(raw))
		return nil
	}
	return u
}

func (v *validator) influxURL(key, raw string) {
	u := v.httpURL(key, raw)
	if u == nil {
		return
	}
	q := u.Query()
	switch {
	case strings.HasSuffix(u.Path, "/api/v2/write"):
		v.check(key, q.Get("bucket") != "" && (q.Get("org") != "" || q.Get("orgID") != ""),
			"an InfluxDB 2.x URL needs ?org=...&bucket=... (or orgID=... for org)")
	case strings.HasSuffix(u.Path, "/write"):
		v.check(key, q.Get("db") != "", "an InfluxDB 1.x URL needs ?db=...")
	default:
		v.check(key, false, "the path must end in /write (InfluxDB 1.x) or /api/v2/write (2.x)")
	}
	if pr := q.Get("precision"); pr != "" {
		v.check(key, false, "leave precision out of the URL: statsbridge sets it")
	}
}

func (v *validator) push(prefix string, p *Push, counters ...string) {
	v.oneOf(prefix+"counters", p.Counters, counters...)
	v.check(prefix+"batch_size", p.BatchSize > 0, "must be more than 0")
	v.check(prefix+"concurrency", p.Concurrency >= 1 && p.Concurrency <= 64, "must be from 1 to 64")
	v.check(prefix+"batch_bytes", p.BatchBytes >= 1024, "must be at least 1KiB")
	v.check(prefix+"queue_size", p.QueueSize >= p.BatchBytes, "must be at least batch_bytes")
	v.check(prefix+"spool_size", p.SpoolSize >= 2*p.BatchBytes, "must be at least twice batch_bytes")
	v.check(prefix+"max_retry_age", p.MaxRetryAge >= 0, "must not be negative")
	v.check(prefix+"max_retry_after", p.MaxRetryAfter > 0, "must be more than 0s")
	v.check(prefix+"timeout", p.Timeout > 0, "must be more than 0")
	for name, value := range p.ExternalLabels {
		v.check(prefix+"external_labels", labelNameRE.MatchString(name) && !strings.HasPrefix(name, "__"),
			"%q is not a valid label name", name)
		v.check(prefix+"external_labels", !seriesLabel(name),
			"%q is the label a histogram or summary sets on its own series", name)
		v.check(prefix+"external_labels", value != "", "label %q has an empty value", name)
	}
}

// seriesLabel reports whether a histogram (le) or a summary (quantile) sets
// the label on its own series: a label of that name from elsewhere would
// collide with it.
func seriesLabel(name string) bool { return name == "le" || name == "quantile" }

// tls checks what a sink's TLS reads at start: a key pair that loads and a
// CA file of PEM certificates, so that check-config finds what would fail.
func (v *validator) tls(prefix string, t TLS) {
	p := prefix + "tls."
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.check(p+"cert_file", false, "a client certificate needs its key_file too")
	case t.KeyFile != "" && t.CertFile == "":
		v.check(p+"key_file", false, "a client key needs its cert_file too")
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			v.check(p+"cert_file", false, "%s and %s: %v", t.CertFile, t.KeyFile, err)
		}
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			v.check(p+"ca_file", false, "%v", err)
		} else {
			v.check(p+"ca_file", x509.NewCertPool().AppendCertsFromPEM(pem), "%s holds no PEM certificate", t.CAFile)
		}
	}
}

// httpClient checks how an HTTP sink reaches its backend.
func (v *validator) httpClient(prefix, rawURL string, c HTTPClient) {
	if c.TLS != (TLS{}) {
		u, err := url.Parse(rawURL)
		v.check(prefix+"tls", err != nil || u.Scheme != "http", "TLS needs an https:// url")
	}
	v.tls(prefix, c.TLS)
	if c.ProxyURL != "" {
		u, err := url.Parse(c.ProxyURL)
		ok := err == nil && u.Host != ""
		if ok {
			switch u.Scheme {
			case "http", "https", "socks5", "socks5h":
			default:
				ok = false
			}
		}
		v.check(prefix+"proxy_url", ok, "%q is not an http://, https:// or socks5:// proxy URL", RedactURL(c.ProxyURL))
	}
}

// remoteWriteAuth checks that a remote-write sink sends one Authorization
// header at most.
func (v *validator) remoteWriteAuth(prefix string, rw *RemoteWrite) {
	v.check(prefix+"password", rw.Password == "" || rw.Username != "", "a password needs its username")
	v.check(prefix+"username", rw.Username == "" || rw.BearerToken == "",
		"set either username and password (basic authentication) or bearer_token, not both")
	for name := range rw.Headers {
		if strings.EqualFold(name, "Authorization") {
			v.check(prefix+"headers", rw.Username == "" && rw.BearerToken == "",
				"an Authorization header and bearer_token or username: set only one")
		}
	}
}
