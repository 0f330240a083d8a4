// Package luascan finds where Prosody's Lua sources (Prosody itself, and
// prosody-modules) define metric families, and works out each family as
// Prosody registers it: its OpenMetrics name, its StatsD spelling, type,
// unit, help, label names and bucket layout. It reads the calls the way
// core/statsmanager.lua and core/moduleapi.lua do, so that the catalog of
// statsbridge's Prosody dialect can be checked against the sources rather
// than typed from them.
package luascan

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Site is one definition of a metric family in the sources.
type Site struct {
	File string `json:"file"`
	Line int    `json:"line"`
	// Family is the name mod_http_openmetrics shows, and StatsD how the
	// statsd backend spells it after "<prefix>."; both "" when the name is
	// made at run time (Dynamic says how).
	Family string `json:"family,omitempty"`
	StatsD string `json:"statsd,omitempty"`
	Type   string `json:"type"`
	Unit   string `json:"unit"`
	Help   string `json:"help"`
	// Labels are the label names in order, host first for a module that
	// is not global.
	Labels []string `json:"labels"`
	// Buckets are a histogram's bounds as Prosody prints them (%.14g),
	// without +Inf; BucketsComputed says they are computed at run time
	// (from the configuration, say).
	Buckets         []string `json:"buckets,omitempty"`
	BucketsComputed bool     `json:"buckets_computed,omitempty"`
	Dynamic         string   `json:"dynamic,omitempty"`
}

// ScanTree scans every .lua file under root, with paths relative to root.
func ScanTree(root string) ([]Site, []error) {
	var sites []Site
	var errs []error
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".lua") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s, e := ScanFile(filepath.ToSlash(rel), string(src))
		sites, errs = append(sites, s...), append(errs, e...)
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	sort.SliceStable(sites, func(i, j int) bool {
		if sites[i].File != sites[j].File {
			return sites[i].File < sites[j].File
		}
		return sites[i].Line < sites[j].Line
	})
	return sites, errs
}

// skipped are files that define the API or only read metrics.
func skipped(rel string) bool {
	base := filepath.Base(rel)
	return strings.HasSuffix(rel, "core/moduleapi.lua") || base == "mod_admin_shell.lua" ||
		strings.HasSuffix(rel, "util/statistics.lua") || strings.HasSuffix(rel, "util/statsd.lua") ||
		strings.HasSuffix(rel, "util/openmetrics.lua")
}

var (
	// module:metric( and module:measure(.
	moduleCall = regexp.MustCompile(`\bmodule\s*:\s*(metric|measure)\s*\(`)
	// statsmanager's own measure("times", "stats.collection").
	bareMeasure = regexp.MustCompile(`(^|[^\w.:])measure\s*\(\s*["']`)
	// require "core.statsmanager".metric( ... called at once.
	requireCall = regexp.MustCompile(`require\s*\(?\s*["'](?:prosody\.)?core\.statsmanager["']\s*\)?\s*\.\s*(metric|measure)\s*\(`)
	// local f = require "core.statsmanager".metric
	funcAlias = regexp.MustCompile(`local\s+(\w+)\s*=\s*require\s*\(?\s*["'](?:prosody\.)?core\.statsmanager["']\s*\)?\s*\.\s*(metric|measure)\b`)
	// local sm = require "core.statsmanager"
	moduleAlias = regexp.MustCompile(`local\s+(\w+)\s*=\s*require\s*\(?\s*["'](?:prosody\.)?core\.statsmanager["']\s*\)?\s*(?:;|\n|$)`)
	setGlobal   = regexp.MustCompile(`\bmodule\s*:\s*set_global\s*\(`)
)

// ScanFile finds the metric definitions in one file; rel names it (its
// module is read from it).
func ScanFile(rel, src string) ([]Site, []error) {
	if skipped(rel) {
		return nil, nil
	}
	code := stripComments(src)
	sc := scanner{rel: rel, code: code, module: moduleName(rel), global: setGlobal.MatchString(code)}
	for _, m := range moduleCall.FindAllStringSubmatchIndex(code, -1) {
		if strings.HasSuffix(strings.TrimSpace(code[max(m[0]-20, 0):m[0]]), "function api") {
			continue
		}
		sc.call(m[0], code[m[2]:m[3]], callArgs(code, m[1]), true)
	}
	for _, m := range requireCall.FindAllStringSubmatchIndex(code, -1) {
		sc.call(m[0], code[m[2]:m[3]], callArgs(code, m[1]), false)
	}
	for _, m := range funcAlias.FindAllStringSubmatch(code, -1) {
		call := regexp.MustCompile(`(^|[^\w.:])` + regexp.QuoteMeta(m[1]) + `\s*\(`)
		for _, c := range call.FindAllStringIndex(code, -1) {
			sc.call(c[0], m[2], callArgs(code, c[1]), false)
		}
	}
	for _, m := range moduleAlias.FindAllStringSubmatch(code, -1) {
		call := regexp.MustCompile(`(^|[^\w.:])` + regexp.QuoteMeta(m[1]) + `\s*\.\s*(metric|measure)\s*\(`)
		for _, c := range call.FindAllStringSubmatchIndex(code, -1) {
			sc.call(c[0], code[c[4]:c[5]], callArgs(code, c[1]), false)
		}
	}
	if strings.HasSuffix(rel, "core/statsmanager.lua") {
		for _, m := range bareMeasure.FindAllStringSubmatchIndex(code, -1) {
			at := m[1] - 1
			open := strings.IndexByte(code[m[0]:], '(') + m[0] + 1
			sc.call(at, "measure", callArgs(code, open), false)
		}
	}
	return sc.sites, sc.errs
}

type scanner struct {
	rel, code, module string
	global            bool
	sites             []Site
	errs              []error
}

// legacyTypes maps the legacy stat types to family types, fixed units and
// the word their default help uses (core/statsmanager.lua).
var legacyTypes = map[string]struct{ typ, unit, word string }{
	"amount": {"gauge", "", "amount"}, "counter": {"counter", "", "counter"}, "rate": {"counter", "", "counter"},
	"times": {"histogram", "seconds", "times"}, "sizes": {"histogram", "bytes", "sizes"},
	"distribution": {"summary", "", "distribution"},
}

// legacyBuckets are the default layouts of times and sizes.
var legacyBuckets = map[string][]string{
	"times": {"0.001", "0.01", "0.1", "1", "10", "100"},
	"sizes": {"1024", "4096", "32768", "131072", "1048576", "4194304", "33554432", "134217728", "1073741824"},
}

func (sc *scanner) call(at int, kind string, args []string, fromModule bool) {
	line := strings.Count(sc.code[:at], "\n") + 1
	site := Site{File: sc.rel, Line: line, Labels: []string{}}
	fail := func(format string, a ...any) {
		sc.errs = append(sc.errs, fmt.Errorf("%s:%d: %s", sc.rel, line, fmt.Sprintf(format, a...)))
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	hostScoped := fromModule && !sc.global
	var registry string // the name the registry gets, before the unit
	var conf string
	if kind == "metric" {
		typ, ok := literal(arg(0))
		if !ok {
			fail("a metric call whose type is not a string: %v", args)
			return
		}
		site.Type = typ
		name, ok := literal(arg(1))
		if !ok {
			site.Dynamic = "name " + arg(1)
		}
		registry = name
		if fromModule {
			registry = "prosody_mod_" + sc.module + "/" + name
		}
		site.Unit, _ = literal(arg(2))
		site.Help, _ = literal(arg(3))
		labels, ok := stringList(arg(4))
		if !ok {
			fail("labels that are not a table of strings: %s", arg(4))
			return
		}
		if hostScoped {
			labels = append([]string{"host"}, labels...)
		}
		site.Labels = labels
		conf = arg(5)
	} else {
		nameArg, typeArg := arg(0), arg(1)
		if !fromModule {
			nameArg, typeArg = typeArg, nameArg // statsmanager.measure(stat_type, name)
		}
		statType, ok := literal(typeArg)
		legacy, known := legacyTypes[statType]
		if !ok || !known {
			fail("a measure call with an unknown stat type %s", typeArg)
			return
		}
		site.Type, site.Unit = legacy.typ, legacy.unit
		name, ok := literal(nameArg)
		if !ok {
			site.Dynamic = "name " + nameArg
		}
		registry = name
		if fromModule {
			registry = "mod_" + sc.module + "/" + name
		}
		site.Help = registry + " " + legacy.word
		registry = "prosody_" + registry
		conf = arg(2)
		if d, ok := field(conf, "description"); ok {
			site.Help = d
		}
		switch {
		case statType == "distribution" && isString(conf):
			site.Unit, _ = literal(conf)
		case legacy.unit == "":
			site.Unit, _ = field(conf, "unit")
		}
		if hostScoped {
			site.Labels = []string{"host"}
		}
		if site.Type == "histogram" {
			site.Buckets = legacyBuckets[statType]
		}
	}
	if site.Type == "histogram" {
		if raw, ok := rawField(conf, "buckets"); ok {
			bounds, ok := numberList(raw)
			site.Buckets, site.BucketsComputed = bounds, !ok
			if !ok {
				site.Buckets = nil
			}
		} else if kind == "metric" {
			site.BucketsComputed = true // passed in a variable, or made elsewhere
		}
	}
	if site.Dynamic == "" {
		full := registry
		if site.Unit != "" {
			full += "_" + site.Unit
		}
		site.Family = escapeName(full)
		site.StatsD = strings.ReplaceAll(strings.ReplaceAll(full, ".", "_"), "/", ".")
	}
	sc.sites = append(sc.sites, site)
}

// moduleName names a module by its file: modules/mod_x.lua,
// plugins/mod_x.lua and mod_x/mod_x.lua are "x", and so is
// modules/muc/mod_muc.lua.
func moduleName(rel string) string {
	base := filepath.Base(rel)
	if strings.HasPrefix(base, "mod_") && !strings.HasSuffix(base, ".lib.lua") {
		return strings.TrimSuffix(strings.TrimPrefix(base, "mod_"), ".lua")
	}
	return strings.TrimPrefix(filepath.Base(filepath.Dir(rel)), "mod_")
}

var notNameChar = regexp.MustCompile(`[^A-Za-z0-9_]`)

// escapeName is util/openmetrics.lua's escape_name.
func escapeName(name string) string {
	name = notNameChar.ReplaceAllString(strings.ReplaceAll(name, "/", "__"), "_")
	if name != "" && !(name[0] == '_' || name[0] >= 'A' && name[0] <= 'Z' || name[0] >= 'a' && name[0] <= 'z') {
		name = "_" + name[1:]
	}
	return name
}

// stripComments blanks Lua comments ("--" to the end of the line, and
// long comments "--[[ ... ]]", "--[==[ ... ]==]"), keeping offsets and
// lines. Strings, long strings included, are left alone.
func stripComments(src string) string {
	b := []byte(src)
	blank := func(from, to int) {
		for j := from; j < to && j < len(b); j++ {
			if b[j] != '\n' {
				b[j] = ' '
			}
		}
	}
	var quote byte
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote || c == '\n' {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '[' && longOpen(b[i:]) > 0:
			n := longOpen(b[i:])
			end := longClose(b, i+n, n-2)
			i = end - 1
		case c == '-' && i+1 < len(b) && b[i+1] == '-':
			if n := longOpen(b[i+2:]); n > 0 {
				end := longClose(b, i+2+n, n-2)
				blank(i, end)
				i = end - 1
				continue
			}
			j := i
			for ; j < len(b) && b[j] != '\n'; j++ {
			}
			blank(i, j)
			i = j - 1
		}
	}
	return string(b)
}

// longOpen returns the length of a long bracket "[[" or "[==[" at the
// start of b, or 0.
func longOpen(b []byte) int {
	if len(b) < 2 || b[0] != '[' {
		return 0
	}
	j := 1
	for j < len(b) && b[j] == '=' {
		j++
	}
	if j < len(b) && b[j] == '[' {
		return j + 1
	}
	return 0
}

// longClose returns the offset just past the "]=*]" with level equal signs
// from from on, or len(b).
func longClose(b []byte, from, level int) int {
	closing := "]" + strings.Repeat("=", level) + "]"
	if k := strings.Index(string(b[from:]), closing); k >= 0 {
		return from + k + len(closing)
	}
	return len(b)
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
			if arg := strings.TrimSpace(code[start:i]); arg != "" || len(args) > 0 {
				args = append(args, arg)
			}
			return args
		case c == ',' && depth == 0:
			args = append(args, strings.TrimSpace(code[start:i]))
			start = i + 1
		}
	}
	return args
}

func isString(arg string) bool {
	return len(arg) >= 2 && (arg[0] == '"' || arg[0] == '\'') && arg[len(arg)-1] == arg[0] &&
		!strings.ContainsRune(arg[1:len(arg)-1], rune(arg[0]))
}

// literal reads a string literal, or literals joined with "..".
func literal(arg string) (string, bool) {
	var out strings.Builder
	for _, part := range strings.Split(arg, "..") {
		part = strings.TrimSpace(part)
		if !isString(part) {
			return "", false
		}
		s := part[1 : len(part)-1]
		if strings.ContainsRune(s, '\\') {
			u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`)
			if err != nil {
				return "", false
			}
			s = u
		}
		out.WriteString(s)
	}
	return out.String(), true
}

// tableItems splits a table constructor's items at the top level, or
// reports false when arg is not one.
func tableItems(arg string) ([]string, bool) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 2 || arg[0] != '{' || arg[len(arg)-1] != '}' {
		return nil, false
	}
	inner := strings.ReplaceAll(arg[1:len(arg)-1], ";", ",") // ";" never inside the strings used here
	items := callArgs("("+inner+")", 1)
	out := items[:0]
	for _, it := range items {
		if it != "" {
			out = append(out, it)
		}
	}
	return out, true
}

// stringList reads a table of string literals; an empty or missing
// argument is no labels.
func stringList(arg string) ([]string, bool) {
	if strings.TrimSpace(arg) == "" || strings.TrimSpace(arg) == "nil" {
		return []string{}, true
	}
	items, ok := tableItems(arg)
	if !ok {
		return nil, false
	}
	out := []string{}
	for _, it := range items {
		s, ok := literal(it)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// rawField returns the value of "key = value" in a table constructor.
func rawField(table, key string) (string, bool) {
	items, ok := tableItems(table)
	if !ok {
		return "", false
	}
	for _, it := range items {
		k, v, found := strings.Cut(it, "=")
		if found && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// field returns a string field of a table constructor.
func field(table, key string) (string, bool) {
	raw, ok := rawField(table, key)
	if !ok {
		return "", false
	}
	return literal(raw)
}

// numberList reads a table of numbers (literals, or a/b and a*b of
// literals) and prints them as Prosody does.
func numberList(arg string) ([]string, bool) {
	items, ok := tableItems(arg)
	if !ok {
		return nil, false
	}
	out := []string{}
	for _, it := range items {
		v, ok := number(it)
		if !ok {
			return nil, false
		}
		out = append(out, strconv.FormatFloat(v, 'g', 14, 64))
	}
	return out, true
}

func number(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	for _, op := range []string{"/", "*"} {
		if a, b, found := strings.Cut(s, op); found {
			x, ok1 := number(a)
			y, ok2 := number(b)
			if !ok1 || !ok2 {
				return 0, false
			}
			if op == "/" {
				return x / y, true
			}
			return x * y, true
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}
