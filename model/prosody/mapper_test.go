package prosody

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
)

func testMapper() *Mapper {
	return NewMapper("prosody", Builtin(), []string{"localhost", "conference.localhost", "upload.localhost"}, NewState())
}

func labelText(ls model.Labels) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.Name + "=" + l.Value
	}
	return strings.Join(parts, ",")
}

func TestMapKnownFamilies(t *testing.T) {
	m := testMapper()
	tests := []struct {
		name   string
		typ    ingest.Type
		family string
		kind   model.Kind
		labels string
		part   model.Part
		le     string // a bucket line's bound
	}{
		{"prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4", ingest.Gauge, "prosody_mod_c2s__connections", model.KindGauge,
			"host=localhost,type=c2s,ip_family=ipv4", model.PartValue, ""},
		{"prosody.prosody_mod_c2s.encrypted.TLSv1_3.TLS_AES_256_GCM_SHA384", ingest.Counter, "prosody_mod_c2s__encrypted", model.KindCounter,
			"protocol=TLSv1.3,cipher=TLS_AES_256_GCM_SHA384", model.PartValue, ""},
		{"prosody.prosody_mod_muc.live_room.conference_localhost", ingest.Gauge, "prosody_mod_muc__live_room", model.KindGauge,
			"host=conference.localhost", model.PartValue, ""},
		{"prosody.prosody_mod_s2s.closed.:unknown.incoming.not-well-formed", ingest.Counter, "prosody_mod_s2s__closed", model.KindCounter,
			"host=:unknown,direction=incoming,error=not-well-formed", model.PartValue, ""},
		{"prosody.prosody_mod_csi_simple.flushes.localhost.subscription request", ingest.Counter, "prosody_mod_csi_simple__flushes", model.KindCounter,
			"host=localhost,reason=subscription request", model.PartValue, ""},
		{"prosody.prosody_mod_smacks.tx_acked_stanzas.localhost.bucket.1", ingest.Counter, "prosody_mod_smacks__tx_acked_stanzas", model.KindPrebucketed,
			"host=localhost", model.PartBucket, "1"},
		{"prosody.prosody_stats_collection_seconds.bucket.0_001", ingest.Counter, "prosody_stats_collection_seconds", model.KindPrebucketed,
			"", model.PartBucket, "0.001"},
		{"prosody.prosody_stats_collection_seconds.bucket.+Inf", ingest.Counter, "prosody_stats_collection_seconds", model.KindPrebucketed,
			"", model.PartBucket, "+Inf"},
		// A bound the catalog lacks (a larger http_file_share_size_limit)
		// is the sender's all the same.
		{"prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.bucket.268435456", ingest.Counter,
			"prosody_mod_http_file_share__upload_bytes", model.KindPrebucketed, "host=upload.localhost", model.PartBucket, "268435456"},
		{"prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.count", ingest.Counter, "prosody_mod_http_file_share__upload_bytes",
			model.KindPrebucketed, "host=upload.localhost", model.PartCount, ""},
		{"prosody.prosody_mod_csi_simple.buffer_hold_seconds.localhost.sum", ingest.Gauge, "prosody_mod_csi_simple__buffer_hold_seconds",
			model.KindPrebucketed, "host=localhost", model.PartSum, ""},
		{"prosody.prosody_mod_bosh.active_sessions", ingest.Gauge, "prosody_mod_bosh__active_sessions", model.KindGauge, "", model.PartValue, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp, ok := m.Map(tt.name, tt.typ, nil)
			if !ok || mp.Drop {
				t.Fatalf("not mapped: %+v", mp)
			}
			if mp.Family.Name != tt.family || mp.Kind != tt.kind || labelText(mp.Labels) != tt.labels || mp.Part != tt.part || mp.Bucket.LE != tt.le {
				t.Errorf("got %s kind %v labels %q part %v le %q", mp.Family.Name, mp.Kind, labelText(mp.Labels), mp.Part, mp.Bucket.LE)
			}
			// The series' StatsD key is the name without a part's suffix.
			wantKey := tt.name
			switch {
			case tt.part == model.PartBucket:
				wantKey = tt.name[:strings.LastIndex(tt.name, ".bucket.")]
			case tt.part == model.PartCount, tt.part == model.PartSum:
				wantKey = tt.name[:strings.LastIndexByte(tt.name, '.')]
			}
			if mp.Key != wantKey {
				t.Errorf("key %q, want %q", mp.Key, wantKey)
			}
		})
	}
	if m.state.UnknownNames() != 0 {
		t.Errorf("%d names counted as unknown", m.state.UnknownNames())
	}
}

func TestMapUnknownNames(t *testing.T) {
	m := testMapper()
	tests := []struct {
		name   string
		typ    ingest.Type
		family string
		ftype  model.Type
		labels string
	}{
		{"prosody.prosody_mod_custom.widgets.localhost.blue", ingest.Counter, "prosody_mod_custom__widgets", model.Counter,
			"unknown_1=localhost,unknown_2=blue"},
		{"prosody.prosody_mod_custom.level.conference_localhost", ingest.Gauge, "prosody_mod_custom__level", model.Gauge,
			"unknown_1=conference.localhost"},
		{"prosody.prosody_mod_custom.wait_seconds.localhost.bucket.0_5", ingest.Counter, "prosody_mod_custom__wait_seconds_bucket", model.Unknown,
			"unknown_1=localhost,le=0.5"},
		{"prosody.prosody_mod_custom.wait_seconds.localhost.sum", ingest.Gauge, "prosody_mod_custom__wait_seconds_sum", model.Unknown,
			"unknown_1=localhost"},
		{"prosody.uptime", ingest.Gauge, "uptime", model.Gauge, ""},
		{"prosody.requests_total", ingest.Counter, "requests", model.Counter, ""},
		// Stripping _total must leave a name.
		{"prosody._total", ingest.Counter, "_total", model.Counter, ""},
		// A known family sent with the wrong shape is not read wrongly.
		{"prosody.prosody_mod_c2s.connections.localhost", ingest.Gauge, "prosody_mod_c2s__connections", model.Gauge, "unknown_1=localhost"},
	}
	for _, tt := range tests {
		mp, ok := m.Map(tt.name, tt.typ, nil)
		if !ok || mp.Family.Name != tt.family || mp.Family.Type != tt.ftype || labelText(mp.Labels) != tt.labels {
			t.Errorf("%s: got %s %v %q (ok %v)", tt.name, mp.Family.Name, mp.Family.Type, labelText(mp.Labels), ok)
		}
	}
	if m.state.UnknownNames() != uint64(len(tests)) {
		t.Errorf("unknown names counted %d, want %d", m.state.UnknownNames(), len(tests))
	}
	if _, ok := m.Map("other.name", ingest.Counter, nil); ok {
		t.Error("a name outside the prefix was mapped")
	}
	// A bound outside the catalog's layout is the sender's own (the model
	// learns it); one that is not a number is dropped and counted.
	if mp, _ := m.Map("prosody.prosody_stats_collection_seconds.bucket.0_002", ingest.Counter, nil); mp.Drop || mp.Bucket.LE != "0.002" {
		t.Errorf("a bound outside the catalog's layout: %+v", mp)
	}
	for _, le := range []string{"x", "nan", "-inf", ""} {
		if mp, _ := m.Map("prosody.prosody_stats_collection_seconds.bucket."+le, ingest.Counter, nil); !mp.Drop {
			t.Errorf("bucket %q: %+v, want it dropped", le, mp)
		}
	}
	if m.state.UnknownBuckets() != 4 {
		t.Errorf("%d bad buckets counted, want 4", m.state.UnknownBuckets())
	}
}

// TestTagsNeverOverrideTheFamilysLabels: tags come after a family's labels;
// one that repeats a family's label name, or an le on a histogram, would
// make the series invalid, so the model drops or renames it and counts it.
func TestTagsNeverOverrideTheFamilysLabels(t *testing.T) {
	tests := []struct {
		line, labels string
		fix          model.LabelFix
	}{
		{"prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:1|g|#host:ignored,instance:10.0.0.5",
			"host=localhost,type=c2s,ip_family=ipv4,instance=10.0.0.5", model.FixDuplicate},
		{"prosody.prosody_mod_smacks.tx_acked_stanzas.localhost.bucket.1:1|c|#le:9",
			"host=localhost,exported_le=9", model.FixLE},
		{"prosody.prosody_mod_smacks.tx_acked_stanzas.localhost.count:1|c|#__host:x",
			"host=localhost,_host=x", model.FixReservedPrefix},
		{"prosody.unknown_thing.x.bucket.1:1|c|#le:2", "unknown_1=x,le=1", model.FixDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			m := model.New(model.Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Mappers: []model.Mapper{testMapper()}})
			p := ingest.Parser{Dialect: ingest.Dialect{LiteralPrefix: []byte("prosody.")}}
			batch := make([]ingest.Sample, 1)
			if r := p.Parse([]byte(tt.line), &batch[0]); r != ingest.ReasonNone {
				t.Fatal(r)
			}
			m.NewWriter().Handle(batch)
			var got []string
			m.Gather(func(_ *model.Family, pts []model.Point) {
				for _, pt := range pts {
					got = append(got, labelText(pt.Series.Labels()))
				}
			})
			if len(got) != 1 || got[0] != tt.labels {
				t.Errorf("labels %q, want %q", got, tt.labels)
			}
			for _, r := range model.LabelFixes() {
				want := uint64(0)
				if r == tt.fix {
					want = 1
				}
				if n := m.LabelFixCount(r); n != want {
					t.Errorf("%s: counted %d, want %d", r, n, want)
				}
			}
		})
	}
}

// TestDiscoverReadsAPageWithoutSamples reads the /metrics of the Prosody
// that sent the capture: HELP, UNIT and TYPE of every family, no samples.
func TestDiscoverReadsAPageWithoutSamples(t *testing.T) {
	page, err := os.ReadFile("../../testdata/prosody/openmetrics-statsd-instance.txt")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/openmetrics-text; version=0.0.4") // as Prosody sends it
		w.Write(page)
	}))
	defer srv.Close()
	found, err := Discover(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Discovered{
		"prosody_mod_http_file_share__summary_seconds":     {Type: model.Histogram, Unit: "seconds", Help: "mod_http_file_share/summary times"},
		"prosody_mod_bosh__bad_host":                       {Type: model.Counter, Help: "mod_bosh/bad_host counter"},
		"prosody_mod_s2s__connections_inbound":             {Type: model.Gauge, Help: "Established incoming s2s connections"},
		"prosody_mod_http_file_share__total_storage_bytes": {Type: model.Gauge, Unit: "bytes", Help: "mod_http_file_share/total_storage amount"},
	}
	for name, w := range want {
		if !reflect.DeepEqual(found[name], w) {
			t.Errorf("%s: %+v, want %+v", name, found[name], w)
		}
	}
	if len(found) < 30 {
		t.Errorf("found %d families", len(found))
	}

	// What is discovered names an unknown family's type, unit and help.
	m := NewMapper("prosody", nil, nil, NewState())
	m.state.SetDiscovered(found)
	mp, _ := m.Map("prosody.prosody_mod_s2s.connections_inbound", ingest.Gauge, nil)
	if mp.Family.Help != "Established incoming s2s connections" || mp.Family.Type != model.Gauge {
		t.Errorf("discovered family mapped as %+v", mp.Family)
	}
}

func TestDiscoverFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	if _, err := Discover(context.Background(), srv.Client(), srv.URL); err == nil {
		t.Error("a 403 was taken for a page")
	}
	if _, err := parsePage([]byte("# TYPE x counter\nthis is not OpenMetrics {\n"), "application/openmetrics-text"); err == nil {
		t.Error("garbage was taken for a page")
	}
}

// TestAnOverrideReplacesABuiltInLayout: a layout given in the
// configuration is the first guess of its family's series.
func TestAnOverrideReplacesABuiltInLayout(t *testing.T) {
	line := "prosody.prosody_mod_smacks.resumption_age_seconds.localhost.count"
	override := Entry{Name: "prosody_mod_smacks__resumption_age_seconds", StatsD: "prosody_mod_smacks.resumption_age_seconds",
		Type: "histogram", Unit: "seconds", Labels: []string{"host"}, Buckets: []string{"0", "1", "7"}}
	if err := override.Check(); err != nil {
		t.Fatal(err)
	}
	m := NewMapper("prosody", Merge(Builtin(), []Entry{override}), []string{"localhost"}, NewState())
	mp, ok := m.Map(line, ingest.Counter, nil)
	if !ok || mp.Drop || mp.Part != model.PartCount || len(mp.Family.Buckets) != 4 || mp.Family.Buckets[2].LE != "7" {
		t.Errorf("with the override: %+v", mp)
	}
}

// TestCheckRefusesLabelsThatMakeInvalidSeries: a catalog entry (the
// configuration can add them) may not give a label twice, le to a
// histogram or quantile to a summary.
func TestCheckRefusesLabelsThatMakeInvalidSeries(t *testing.T) {
	tests := []struct {
		typ    string
		labels []string
		ok     bool
	}{
		{"histogram", []string{"host", "le"}, false},
		{"summary", []string{"quantile"}, false},
		{"gauge", []string{"host", "host"}, false},
		{"gauge", []string{"__host"}, false},
		{"gauge", []string{"le", "quantile"}, true},
		{"histogram", []string{"quantile"}, true},
	}
	for _, tt := range tests {
		e := Entry{Name: "x", StatsD: "x", Type: tt.typ, Labels: tt.labels}
		if err := e.Check(); (err == nil) != tt.ok {
			t.Errorf("%s with %v: %v", tt.typ, tt.labels, err)
		}
	}
}

// TestModuleStatusArrivesWithHostAndModule: mod_measure_modules' gauge,
// whose host is often ":global", so the StatsD name holds a ":" that the
// parser must leave in the name.
func TestModuleStatusArrivesWithHostAndModule(t *testing.T) {
	m := testMapper()
	p := ingest.Parser{Dialect: ingest.Dialect{LiteralPrefix: []byte("prosody.")}}
	for _, tt := range []struct{ line, labels string }{
		{"prosody.prosody_module_status.:global.admin_shell:2|g", "host=:global,module=admin_shell"},
		{"prosody.prosody_module_status.conference_localhost.muc:0|g", "host=conference.localhost,module=muc"},
	} {
		var smp ingest.Sample
		if r := p.Parse([]byte(tt.line), &smp); r != ingest.ReasonNone {
			t.Fatalf("%q: %v", tt.line, r)
		}
		mp, ok := m.Map(string(smp.Name), smp.Type, nil)
		if !ok || mp.Family.Name != "prosody_module_status" || mp.Family.Type != model.Gauge || labelText(mp.Labels) != tt.labels ||
			mp.Family.Help != "Prosody module status" {
			t.Errorf("%q: %s %v %q %q", tt.line, mp.Family.Name, mp.Family.Type, labelText(mp.Labels), mp.Family.Help)
		}
	}
	if m.state.UnknownNames() != 0 {
		t.Errorf("%d unknown names", m.state.UnknownNames())
	}
}
