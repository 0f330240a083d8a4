package prosody

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/statsbridge/statsbridge/model/prosody/luascan"
)

const prosodyRoot = "/usr/lib/prosody"

// dynamicNames are the definitions whose family name is made at run time,
// so that no catalog entry can name every family they make; those names
// still flow, as unknown names. Each lists the catalog families it makes
// that are known all the same. A new one fails the test until it is looked
// at and listed here.
var dynamicNames = map[string][]string{
	// One gauge per client identity category and type.
	`mod_measure_client_identities.lua name "client_identities."..bucket`: nil,
	// k is lua, total or rss (all three in the module's code).
	`mod_measure_memory.lua name "memory."..k`: {"prosody_memory_lua", "prosody_memory_total", "prosody_memory_rss"},
	// One histogram per storage store, type and method.
	`mod_measure_storage.lua name metric_name`: nil,
}

// upstreamCalls reads the definitions scripts/prosody-metric-calls.sh
// extracted from the pinned upstream revisions.
func upstreamCalls(t *testing.T) map[string][]luascan.Site {
	t.Helper()
	files, err := filepath.Glob("testdata/upstream/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no upstream call lists in testdata/upstream (%v)", err)
	}
	out := map[string][]luascan.Site{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var calls struct {
			Source, Revision string
			Sites            []luascan.Site
		}
		if err := json.Unmarshal(data, &calls); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[fmt.Sprintf("%s %s", calls.Source, calls.Revision)] = calls.Sites
	}
	return out
}

// installedCalls scans the Prosody installed here (Debian's prosody and
// prosody-modules).
func installedCalls(t *testing.T) []luascan.Site {
	t.Helper()
	if _, err := os.Stat(prosodyRoot); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing, and CI=true: the test command must install prosody and prosody-modules", prosodyRoot)
		}
		t.Skipf("%s is missing (./test.sh installs prosody and prosody-modules)", prosodyRoot)
	}
	sites, errs := luascan.ScanTree(prosodyRoot)
	for _, err := range errs {
		t.Errorf("scanning %s: %v", prosodyRoot, err)
	}
	if len(sites) == 0 {
		t.Fatal("no metric definitions found: the scanner is broken")
	}
	return sites
}

// checkSites fails for every definition the catalog lacks or has
// otherwise: name, StatsD spelling, type, unit, help, labels, and a
// literal bucket layout among the entry's layouts.
func checkSites(t *testing.T, where string, sites []luascan.Site) {
	t.Helper()
	catalog := map[string]Entry{}
	for _, e := range Builtin() {
		catalog[e.Name] = e
	}
	for _, s := range sites {
		at := fmt.Sprintf("%s: %s:%d", where, s.File, s.Line)
		if s.Dynamic != "" {
			if _, ok := dynamicNames[filepath.Base(s.File)+" "+s.Dynamic]; !ok {
				t.Errorf("%s defines a family named at run time (%s), which no catalog entry can name: look at it, and list it in dynamicNames",
					at, s.Dynamic)
			}
			continue
		}
		e, ok := catalog[s.Family]
		if !ok {
			t.Errorf("%s defines %s (%s, labels %v), which the catalog lacks", at, s.Family, s.Type, s.Labels)
			continue
		}
		var diffs []string
		check := func(what, got, want string) {
			if got != want {
				diffs = append(diffs, fmt.Sprintf("%s %q, the source %q", what, got, want))
			}
		}
		check("statsd", e.StatsD, s.StatsD)
		check("type", e.Type, s.Type)
		check("unit", e.Unit, s.Unit)
		check("help", e.Help, s.Help)
		check("labels", strings.Join(e.Labels, ","), strings.Join(s.Labels, ","))
		if len(s.Buckets) > 0 && !slices.ContainsFunc(append([][]string{e.Buckets}, e.OtherBuckets...),
			func(l []string) bool { return slices.Equal(l, s.Buckets) }) {
			diffs = append(diffs, fmt.Sprintf("buckets %v and others %v, the source %v", e.Buckets, e.OtherBuckets, s.Buckets))
		}
		if s.BucketsComputed && len(e.Buckets) == 0 {
			diffs = append(diffs, "no first guess for a layout computed at run time")
		}
		if len(diffs) > 0 {
			t.Errorf("%s defines %s; the catalog has %s", at, s.Family, strings.Join(diffs, "; "))
		}
	}
}

// TestCatalogCoversUpstream holds the catalog to every metric family that
// the pinned revisions of Prosody trunk, Prosody 13.0 and prosody-modules
// define (testdata/upstream, extracted from their sources by
// scripts/prosody-metric-calls.sh).
func TestCatalogCoversUpstream(t *testing.T) {
	n := 0
	for where, sites := range upstreamCalls(t) {
		checkSites(t, where, sites)
		n += len(sites)
	}
	t.Logf("%d upstream metric definitions checked", n)
}

// TestCatalogCoversInstalledProsody holds the catalog to every metric
// definition in the installed Prosody (Debian's prosody and
// prosody-modules), scanned now.
func TestCatalogCoversInstalledProsody(t *testing.T) {
	sites := installedCalls(t)
	checkSites(t, prosodyRoot, sites)
	t.Logf("%d metric definitions in %s checked", len(sites), prosodyRoot)
}

// TestEveryCatalogEntryHasASource: each entry is defined by the sources
// the tests read (the pinned upstream revisions, the installed Prosody), so
// that none rests on a source nobody can check.
func TestEveryCatalogEntryHasASource(t *testing.T) {
	defined := map[string]bool{}
	for _, families := range dynamicNames {
		for _, f := range families {
			defined[f] = true
		}
	}
	for _, sites := range upstreamCalls(t) {
		for _, s := range sites {
			defined[s.Family] = true
		}
	}
	for _, s := range installedCalls(t) {
		defined[s.Family] = true
	}
	for _, e := range Builtin() {
		if !defined[e.Name] {
			t.Errorf("%s (%s) is defined by none of the sources read", e.Name, e.Source)
		}
	}
}
