module github.com/statsbridge/statsbridge

go 1.26.8

require (
	github.com/golang/snappy v1.0.0 // remote-write bodies are snappy block format
	github.com/influxdata/line-protocol/v2 v2.2.1 // InfluxDB line-protocol encoder (product card)
	github.com/pelletier/go-toml/v2 v2.4.3 // TOML config: strict decoding with line numbers, and an AST for the lines of every key
	github.com/prometheus/client_model v0.6.3 // the metric families expfmt encodes
	github.com/prometheus/common v0.73.1 // expfmt: content negotiation and the Prometheus text format
	github.com/prometheus/prometheus v0.316.0 // prompb for remote-write (product card); textparse reads Prosody's /metrics
	github.com/urfave/cli/v2 v2.27.7 // the command line (product card)
	golang.org/x/sys v0.49.0 // recvmmsg and socket options: SO_REUSEPORT, SO_RCVBUF(FORCE), SO_MEMINFO
	google.golang.org/protobuf v1.36.12 // builds client_model messages for expfmt
)

require (
	github.com/DataDog/sketches-go v1.4.8 // DDSketch: timer percentiles past the exact limit, summary quantiles
	github.com/axiomhq/hyperloglog v0.3.0 // set cardinality past the exact limit
	github.com/prometheus/client_golang v1.25.0 // the process_* and go_* collectors, as self-metrics
	github.com/prometheus/statsd_exporter v0.31.0 // pkg/mapper: mapping files and names exactly as statsd_exporter has them
	github.com/xrash/smetrics v0.0.0-20240521201337-686a1a2994c1 // Jaro-Winkler: "did you mean" for a mistyped flag or command (urfave/cli's own)
	go.yaml.in/yaml/v2 v2.4.4 // whether a mapping file sets native histogram options (statsd_exporter's YAML); e2e: the example alert rules and their promtool tests
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/cpuguy83/go-md2man/v2 v2.0.7 // indirect
	github.com/dgryski/go-metro v0.0.0-20250106013310-edb8663e5e33 // indirect
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/grafana/regexp v0.0.0-20250905093917-f7b3be9d1853 // indirect
	github.com/kamstrup/intmap v0.5.2 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pandatix/go-abnf v0.5.3 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/russross/blackfriday/v2 v2.1.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
