package luascan

import (
	"reflect"
	"testing"
)

// TestScannerReadsEveryCallShape keeps the scanner honest on the shapes
// Prosody's and prosody-modules' sources use.
func TestScannerReadsEveryCallShape(t *testing.T) {
	src := `
local statsmanager = require "prosody.core.statsmanager";
local a = module:metric("gauge", "connections", "", "Established c2s connections", {"host", "type", "ip_family"});
local b =  module:metric(
	"histogram",
	"resumption_age", "seconds", "time the session had been hibernating",
	{},
	{ buckets = { 0, 1, 2 } }
):with_labels();
local c = module:measure("total_storage", "amount", { unit = "bytes" });
	measure_slot = module:measure("slot", "sizes");
local d = module:measure("buffer_hold", "times",
	{ buckets = { 0.1; 1; 5 } });
-- local e = module:measure("commented_out", "rate");
--[[ local e2 = module:measure("in_a_long_comment", "rate"); ]]
--[==[
local e3 = module:measure("in_a_longer_comment", "rate");
]==]
local f = x:with_labels(module:measure)
require "prosody.core.statsmanager".metric("gauge", "prosody_info", "", "Prosody version", { "version" }):with_labels(v):set(1);
local sm = require "core.statsmanager";
local g = sm.metric("gauge", "prosody_module_status", "", "Prosody module status", { "host"; "module" });
local custom_metric = require "core.statsmanager".metric
local h = custom_metric("counter", "process_cpu", "seconds", "CPU time used by Prosody as reported by clock(3).")
local measure = require"core.statsmanager".measure;
local i = measure("counter", "cpu.clock", { units = "seconds" });
local j = measure("amount", "client_identities."..bucket);
local k = module:measure("lines", "distribution");
local l = module:metric("histogram", "upload", "bytes", "", {}, { buckets = buckets });
local m = module:metric("histogram", "dns", "seconds", "DNS", {}, { buckets = { 1 / 1024; 4 } });
function api:metric(type_, name) end
`
	got := map[string]Site{}
	var dynamic []string
	sites, errs := ScanFile("modules/mod_x.lua", src)
	for _, err := range errs {
		t.Error(err)
	}
	for _, s := range sites {
		if s.Dynamic != "" {
			dynamic = append(dynamic, s.Dynamic)
			continue
		}
		s.File, s.Line = "", 0
		got[s.Family] = s
	}
	want := map[string]Site{
		"prosody_mod_x__connections": {Family: "prosody_mod_x__connections", StatsD: "prosody_mod_x.connections", Type: "gauge",
			Help: "Established c2s connections", Labels: []string{"host", "host", "type", "ip_family"}},
		"prosody_mod_x__resumption_age_seconds": {Family: "prosody_mod_x__resumption_age_seconds", StatsD: "prosody_mod_x.resumption_age_seconds",
			Type: "histogram", Unit: "seconds", Help: "time the session had been hibernating", Labels: []string{"host"}, Buckets: []string{"0", "1", "2"}},
		"prosody_mod_x__total_storage_bytes": {Family: "prosody_mod_x__total_storage_bytes", StatsD: "prosody_mod_x.total_storage_bytes",
			Type: "gauge", Unit: "bytes", Help: "mod_x/total_storage amount", Labels: []string{"host"}},
		"prosody_mod_x__slot_bytes": {Family: "prosody_mod_x__slot_bytes", StatsD: "prosody_mod_x.slot_bytes", Type: "histogram", Unit: "bytes",
			Help: "mod_x/slot sizes", Labels: []string{"host"},
			Buckets: []string{"1024", "4096", "32768", "131072", "1048576", "4194304", "33554432", "134217728", "1073741824"}},
		"prosody_mod_x__buffer_hold_seconds": {Family: "prosody_mod_x__buffer_hold_seconds", StatsD: "prosody_mod_x.buffer_hold_seconds",
			Type: "histogram", Unit: "seconds", Help: "mod_x/buffer_hold times", Labels: []string{"host"}, Buckets: []string{"0.1", "1", "5"}},
		"prosody_info": {Family: "prosody_info", StatsD: "prosody_info", Type: "gauge", Help: "Prosody version", Labels: []string{"version"}},
		"prosody_module_status": {Family: "prosody_module_status", StatsD: "prosody_module_status", Type: "gauge",
			Help: "Prosody module status", Labels: []string{"host", "module"}},
		"process_cpu_seconds": {Family: "process_cpu_seconds", StatsD: "process_cpu_seconds", Type: "counter", Unit: "seconds",
			Help: "CPU time used by Prosody as reported by clock(3).", Labels: []string{}},
		// "units" is not "unit": statsmanager ignores it.
		"prosody_cpu_clock": {Family: "prosody_cpu_clock", StatsD: "prosody_cpu_clock", Type: "counter", Help: "cpu.clock counter", Labels: []string{}},
		"prosody_mod_x__lines": {Family: "prosody_mod_x__lines", StatsD: "prosody_mod_x.lines", Type: "summary",
			Help: "mod_x/lines distribution", Labels: []string{"host"}},
		"prosody_mod_x__upload_bytes": {Family: "prosody_mod_x__upload_bytes", StatsD: "prosody_mod_x.upload_bytes", Type: "histogram",
			Unit: "bytes", Labels: []string{"host"}, BucketsComputed: true},
		"prosody_mod_x__dns_seconds": {Family: "prosody_mod_x__dns_seconds", StatsD: "prosody_mod_x.dns_seconds", Type: "histogram",
			Unit: "seconds", Help: "DNS", Labels: []string{"host"}, Buckets: []string{"0.0009765625", "4"}},
	}
	for family, w := range want {
		if !reflect.DeepEqual(got[family], w) {
			t.Errorf("%s:\n got %+v\nwant %+v", family, got[family], w)
		}
	}
	for family := range got {
		if _, ok := want[family]; !ok {
			t.Errorf("found %s, which is not defined", family)
		}
	}
	if !reflect.DeepEqual(dynamic, []string{`name "client_identities."..bucket`}) {
		t.Errorf("dynamic names %q", dynamic)
	}
}

// TestGlobalModulesHaveNoHostLabel: module:set_global() leaves out the
// host label module:metric and module:measure add.
func TestGlobalModulesHaveNoHostLabel(t *testing.T) {
	sites, _ := ScanFile("mod_y/mod_y.lua", "module:set_global();\nlocal a = module:measure(\"log.debug\", \"rate\");\n")
	if len(sites) != 1 || sites[0].Family != "prosody_mod_y__log_debug" || sites[0].StatsD != "prosody_mod_y.log_debug" || len(sites[0].Labels) != 0 {
		t.Errorf("%+v", sites)
	}
}

// TestStatsmanagersOwnMeasures reads core/statsmanager.lua's measure calls.
func TestStatsmanagersOwnMeasures(t *testing.T) {
	sites, _ := ScanFile("core/statsmanager.lua", `function measure(stat_type, name) end
local mark_collection_start = measure("times", "stats.collection");`)
	if len(sites) != 1 || sites[0].Family != "prosody_stats_collection_seconds" || sites[0].Help != "stats.collection times" {
		t.Errorf("%+v", sites)
	}
}
