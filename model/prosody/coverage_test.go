package prosody

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const prosodyRoot = "/usr/lib/prosody"

// callSite is one definition of a metric family in Prosody's Lua sources.
type callSite struct {
	file   string
	line   int
	family string // the OpenMetrics name it registers
	typ    string
}

var (
	// module:metric( and module:measure(, on any receiver.
	moduleCall = regexp.MustCompile(`[:]\s*(metric|measure)\s*\(`)
	// statsmanager's own measure("times", "stats.collection").
	bareMeasure = regexp.MustCompile(`(^|[^\w.:])(measure|metric)\s*\(\s*["']`)
	// require "core.statsmanager".metric( ... and statsmanager.measure( ...
	managerCall = regexp.MustCompile(`(require\s*\(?\s*["'](prosody\.)?core\.statsmanager["']\s*\)?|\bstatsmanager)\s*\.\s*(metric|measure)\s*\(`)
	unitInConf  = regexp.MustCompile(`\bunit\s*=\s*["']([^"']*)["']`)
	notNameChar = regexp.MustCompile(`[^A-Za-z0-9_]`)
)

// legacyTypes maps module:measure()'s stat types to family types and the
// unit they add (util/statsmanager's legacy wrappers).
var legacyTypes = map[string]struct{ typ, unit string }{
	"amount": {"gauge", ""}, "counter": {"counter", ""}, "rate": {"counter", ""},
	"times": {"histogram", "seconds"}, "sizes": {"histogram", "bytes"}, "distribution": {"summary", ""},
}

// scanProsody finds every metric definition in the installed sources.
func scanProsody(t *testing.T) []callSite {
	t.Helper()
	var sites []callSite
	err := filepath.WalkDir(prosodyRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".lua") {
			return err
		}
		rel, _ := filepath.Rel(prosodyRoot, path)
		// The API itself, and the admin shell that only reads metrics.
		if rel == "core/moduleapi.lua" || strings.HasSuffix(rel, "mod_admin_shell.lua") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sites = append(sites, scanFile(t, rel, string(src))...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sites
}

func scanFile(t *testing.T, rel, src string) []callSite {
	code := stripComments(src)
	var sites []callSite
	add := func(at int, kind string, args []string, fromModule bool) {
		line := strings.Count(code[:at], "\n") + 1
		site := callSite{file: rel, line: line}
		if len(args) < 2 || !isString(args[0]) || !isString(args[1]) {
			t.Errorf("%s:%d: a %s call with names statsbridge cannot read: %v", rel, line, kind, args)
			return
		}
		var registry string
		if kind == "metric" {
			site.typ = unquote(args[0])
			registry = unquote(args[1])
			if len(args) > 2 && isString(args[2]) && unquote(args[2]) != "" {
				registry += "_" + unquote(args[2])
			}
			if fromModule {
				registry = "prosody_mod_" + moduleName(rel) + "/" + registry
			}
		} else {
			name, statType := unquote(args[0]), unquote(args[1])
			if !fromModule {
				statType, name = name, statType // statsmanager.measure(stat_type, name)
			}
			legacy, ok := legacyTypes[statType]
			if !ok {
				t.Errorf("%s:%d: unknown legacy type %q", rel, line, statType)
				return
			}
			site.typ = legacy.typ
			unit := legacy.unit
			if len(args) > 2 && unit == "" {
				if m := unitInConf.FindStringSubmatch(args[2]); m != nil {
					unit = m[1]
				}
			}
			registry = "prosody_" + name
			if fromModule {
				registry = "prosody_mod_" + moduleName(rel) + "/" + name
			}
			if unit != "" {
				registry += "_" + unit
			}
		}
		site.family = notNameChar.ReplaceAllString(strings.ReplaceAll(registry, "/", "__"), "_")
		sites = append(sites, site)
	}
	for _, m := range moduleCall.FindAllStringSubmatchIndex(code, -1) {
		before := code[max(m[0]-20, 0):m[0]]
		if strings.HasSuffix(strings.TrimSpace(before), "function api") || !strings.HasSuffix(before, "module") {
			continue // the definitions, and calls on metric families
		}
		add(m[0], code[m[2]:m[3]], callArgs(code, m[1]), true)
	}
	if rel == "core/statsmanager.lua" {
		for _, m := range bareMeasure.FindAllStringSubmatchIndex(code, -1) {
			add(m[4], code[m[4]:m[5]], callArgs(code, strings.IndexByte(code[m[4]:], '(')+m[4]+1), false)
		}
	}
	for _, m := range managerCall.FindAllStringSubmatchIndex(code, -1) {
		add(m[0], code[m[6]:m[7]], callArgs(code, m[1]), false)
	}
	return sites
}

// moduleName names a module by its file: modules/mod_x.lua and
// modules/mod_x/mod_x.lua are "x", and so is modules/muc/mod_muc.lua.
func moduleName(rel string) string {
	base := filepath.Base(rel)
	if strings.HasPrefix(base, "mod_") && !strings.HasSuffix(base, ".lib.lua") {
		return strings.TrimSuffix(strings.TrimPrefix(base, "mod_"), ".lua")
	}
	return strings.TrimPrefix(filepath.Base(filepath.Dir(rel)), "mod_")
}

// stripComments blanks Lua "--" comments, keeping offsets and lines.
func stripComments(src string) string {
	b := []byte(src)
	var quote byte
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote || c == '\n' {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '-' && i+1 < len(b) && b[i+1] == '-':
			for ; i < len(b) && b[i] != '\n'; i++ {
				b[i] = ' '
			}
		}
	}
	return string(b)
}

// callArgs splits the arguments of the call whose "(" ends at open, at the
// top level: strings, tables and nested calls stay whole.
func callArgs(code string, open int) []string {
	var args []string
	depth, start := 0, open
	var quote byte
	for i := open; i < len(code); i++ {
		c := code[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(' || c == '{' || c == '[':
			depth++
		case (c == ')' || c == '}' || c == ']') && depth > 0:
			depth--
		case c == ')':
			if arg := strings.TrimSpace(code[start:i]); arg != "" {
				args = append(args, arg)
			}
			return args
		case (c == ',' || c == ';') && depth == 0:
			args = append(args, strings.TrimSpace(code[start:i]))
			start = i + 1
		}
	}
	return args
}

func isString(arg string) bool {
	return len(arg) >= 2 && (arg[0] == '"' || arg[0] == '\'') && arg[len(arg)-1] == arg[0]
}

func unquote(arg string) string { return arg[1 : len(arg)-1] }

// TestCatalogCoversInstalledProsody scans every metric definition in the
// installed Prosody (Debian's prosody and prosody-modules) and fails for
// any family the catalog lacks, so the catalog cannot fall behind the
// Prosody it is tested with.
func TestCatalogCoversInstalledProsody(t *testing.T) {
	if _, err := os.Stat(prosodyRoot); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing, and CI=true: the test command must install prosody and prosody-modules", prosodyRoot)
		}
		t.Skipf("%s is missing (./test.sh installs prosody and prosody-modules)", prosodyRoot)
	}
	catalog := map[string]Entry{}
	for _, e := range Builtin() {
		catalog[e.Name] = e
	}
	sites := scanProsody(t)
	if len(sites) == 0 {
		t.Fatal("no metric definitions found: the scanner is broken")
	}
	for _, s := range sites {
		e, ok := catalog[s.family]
		switch {
		case !ok:
			t.Errorf("%s:%d defines %s (%s), which the catalog lacks", s.file, s.line, s.family, s.typ)
		case e.Type != s.typ:
			t.Errorf("%s:%d defines %s as a %s; the catalog has a %s", s.file, s.line, s.family, s.typ, e.Type)
		}
	}
	t.Logf("%d metric definitions in %s, all in the catalog", len(sites), prosodyRoot)
}

// TestScannerReadsEveryCallShape keeps the scanner honest on the shapes
// Prosody's sources use.
func TestScannerReadsEveryCallShape(t *testing.T) {
	src := `
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
local f = x:with_labels(module:measure)
require "prosody.core.statsmanager".metric("gauge", "prosody_info", "", "Prosody version", { "version" });
function api:metric(type_, name) end
`
	got := map[string]string{}
	for _, s := range scanFile(t, "modules/mod_x.lua", src) {
		got[s.family] = s.typ
	}
	want := map[string]string{
		"prosody_mod_x__connections": "gauge", "prosody_mod_x__resumption_age_seconds": "histogram",
		"prosody_mod_x__total_storage_bytes": "gauge", "prosody_mod_x__slot_bytes": "histogram",
		"prosody_mod_x__buffer_hold_seconds": "histogram", "prosody_info": "gauge",
	}
	if len(got) != len(want) {
		t.Errorf("found %v, want %v", got, want)
	}
	for family, typ := range want {
		if got[family] != typ {
			t.Errorf("%s: %q, want %q", family, got[family], typ)
		}
	}
	core := scanFile(t, "core/statsmanager.lua", `local mark_collection_start = measure("times", "stats.collection");`)
	if len(core) != 1 || core[0].family != "prosody_stats_collection_seconds" {
		t.Errorf("core: %+v", core)
	}
}
