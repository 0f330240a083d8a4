package prosody

import (
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
)

// Mapper maps the names under Prosody's prefix. Prosody writes a name as
// the family's registry name and its label values joined by "/", then
// every "." as "_" and every "/" as "." (util/statsd.lua). So the family is
// the longest known StatsD spelling the name starts with, and the dotted
// segments after it are the label values in order; a histogram adds
// ".bucket.<le>", ".count" or ".sum", a summary ".count" or ".sum". It
// keeps no cache of names: the model's name cache stands in front of it.
type Mapper struct {
	prefix   string
	byStatsD map[string]*family
	hosts    map[string]string // a host as Prosody sends it -> the host
	state    *State
}

// State is what outlives one Mapper when the configuration is reloaded:
// what Prosody's /metrics said, and the counts.
type State struct {
	known     atomic.Pointer[map[string]Discovered]
	readOK    atomic.Bool // the last read of Prosody's page succeeded
	unknown   atomic.Uint64
	badBucket atomic.Uint64
}

// NewState returns an empty State.
func NewState() *State {
	s := &State{}
	s.known.Store(&map[string]Discovered{})
	return s
}

// SetDiscovered replaces what Prosody's /metrics said, keyed by family name.
func (s *State) SetDiscovered(d map[string]Discovered) { s.known.Store(&d) }

// UnknownNames counts the names under the prefix that matched no family.
func (s *State) UnknownNames() uint64 { return s.unknown.Load() }

// UnknownBuckets counts histogram bucket lines whose bound is not a
// number; those lines are dropped.
func (s *State) UnknownBuckets() uint64 { return s.badBucket.Load() }

// Discovered is what Prosody's own /metrics tells of a family it has
// registered: type, unit and help, and for a histogram the bucket layouts
// its series show, if the page has samples (the statsd backend's has
// none).
type Discovered struct {
	Type    model.Type
	Unit    string
	Help    string
	Layouts [][]model.Bucket
}

// NewMapper returns the mapper for names under "<prefix>.", knowing the
// given families and restoring the dots of the given hosts (VirtualHosts
// and components) in label values.
func NewMapper(prefix string, entries []Entry, hosts []string, state *State) *Mapper {
	m := &Mapper{prefix: prefix + ".", byStatsD: map[string]*family{}, hosts: map[string]string{}, state: state}
	for _, e := range entries {
		m.byStatsD[e.StatsD] = compile(e)
	}
	for _, h := range hosts {
		m.hosts[strings.ReplaceAll(h, ".", "_")] = h
	}
	return m
}

// Map implements model.Mapper.
func (m *Mapper) Map(name string, typ ingest.Type, tags model.Labels) (model.Mapping, bool) {
	return m.mapName(name, typ, tags, true)
}

// DryMap implements model.DryMapper: it maps as Map does, without counting
// unknown names or bucket bounds.
func (m *Mapper) DryMap(name string, typ ingest.Type, tags model.Labels) (model.Mapping, bool) {
	return m.mapName(name, typ, tags, false)
}

func (m *Mapper) mapName(name string, typ ingest.Type, tags model.Labels, count bool) (model.Mapping, bool) {
	rest, ok := strings.CutPrefix(name, m.prefix)
	if !ok || rest == "" {
		return model.Mapping{}, false
	}
	if f, values := m.lookup(rest); f != nil {
		if mp, ok := m.mapKnown(f, values, typ, tags, count); ok {
			mp.Key = seriesKey(name, mp.Part)
			mp.Rule = "prosody catalog: " + f.fam.Name
			return mp, true
		}
	}
	mp, ok := m.mapUnknown(name, rest, typ, tags, count)
	mp.Rule = "prosody: not in the catalog"
	return mp, ok
}

// lookup finds the family with the longest StatsD spelling that rest starts
// with, and the label segments after it.
func (m *Mapper) lookup(rest string) (*family, []string) {
	for end := len(rest); end > 0; end = strings.LastIndexByte(rest[:end], '.') {
		if f := m.byStatsD[rest[:end]]; f != nil {
			if end == len(rest) {
				return f, nil
			}
			return f, strings.Split(rest[end+1:], ".")
		}
	}
	return nil, nil
}

// mapKnown maps a name of a known family. It reports false when the line
// does not fit the family (wrong type or number of segments): such a line
// is mapped as unknown rather than read wrongly.
func (m *Mapper) mapKnown(f *family, segs []string, typ ingest.Type, tags model.Labels, count bool) (model.Mapping, bool) {
	n := len(f.fam.LabelNames)
	mp := model.Mapping{Family: f.fam, Kind: f.kind, Part: model.PartValue}
	switch f.kind {
	case model.KindCounter, model.KindGauge:
		want := ingest.Counter
		if f.kind == model.KindGauge {
			want = ingest.Gauge
		}
		if typ != want || len(segs) != n {
			return mp, false
		}
	case model.KindPrebucketed:
		switch {
		case len(segs) == n+2 && segs[n] == "bucket" && typ == ingest.Counter:
			b, ok := f.bucket(segs[n+1])
			if !ok {
				if count {
					m.state.badBucket.Add(1)
				}
				return model.Mapping{Drop: true}, true
			}
			mp.Part, mp.Bucket = model.PartBucket, b
			mp.Guesses = m.guesses(f)
		case len(segs) == n+1 && segs[n] == "count" && typ == ingest.Counter:
			mp.Part = model.PartCount
			mp.Guesses = m.guesses(f)
		case len(segs) == n+1 && segs[n] == "sum" && typ == ingest.Gauge:
			mp.Part = model.PartSum
			mp.Guesses = m.guesses(f)
		default:
			return mp, false
		}
	case model.KindPresummed:
		if len(segs) != n+1 || typ != ingest.Counter || (segs[n] != "count" && segs[n] != "sum") {
			return mp, false
		}
		mp.Part = model.PartCount
		if segs[n] == "sum" {
			mp.Part = model.PartSum
		}
	}
	mp.Labels = make(model.Labels, 0, n+len(tags))
	for i, label := range f.fam.LabelNames {
		mp.Labels = append(mp.Labels, model.Label{Name: label, Value: m.restore(f, label, segs[i])})
	}
	mp.Labels = appendTags(mp.Labels, tags)
	return mp, true
}

// seriesKey is the StatsD name of a series: a histogram's or summary's part
// line without its ".bucket.<le>", ".count" or ".sum".
func seriesKey(name string, p model.Part) string {
	switch {
	case p == model.PartValue:
		return name
	case p == model.PartBucket:
		name = name[:strings.LastIndexByte(name, '.')]
	}
	return name[:strings.LastIndexByte(name, '.')]
}

// guesses are the layouts a histogram's series may have: those Prosody's
// own page showed, then the catalog's.
func (m *Mapper) guesses(f *family) *model.Guesses {
	seen := (*m.state.known.Load())[f.fam.Name].Layouts
	if len(seen) == 0 {
		return f.guesses
	}
	return model.NewGuesses(append(slices.Clone(seen), f.layouts...)...)
}

// restore puts back the dots Prosody turned into "_" in a label value: in
// the configured hosts, and in the values the catalog knows.
func (m *Mapper) restore(f *family, label, v string) string {
	if h, ok := m.hosts[v]; ok {
		return h
	}
	if f != nil {
		if known, ok := f.values[label][v]; ok {
			return known
		}
	}
	return v
}

// appendTags adds the line's tags (source_label, say) after the family's
// labels. A tag never overrides one of them: the model keeps the first
// label of a name, and counts the tag it drops.
func appendTags(ls, tags model.Labels) model.Labels {
	return append(ls, tags...)
}

// mapUnknown maps a name under the prefix that no family matched. It still
// flows: a module metric "prosody_mod_<module>.<name>..." becomes the family
// prosody_mod_<module>__<name>, another name its first segment, and the
// remaining segments become labels unknown_1, unknown_2 ... A histogram's
// parts become the series a histogram exposes (<family>_bucket{le},
// <family>_sum, <family>_count) with type unknown, as their layout is not
// known. What Prosody's /metrics said of the family gives its type, unit
// and help.
func (m *Mapper) mapUnknown(name, rest string, typ ingest.Type, tags model.Labels, count bool) (model.Mapping, bool) {
	if typ != ingest.Counter && typ != ingest.Gauge {
		return model.Mapping{}, false // not something Prosody sends
	}
	if count {
		m.state.unknown.Add(1)
	}
	segs := strings.Split(rest, ".")
	n := 1
	if strings.HasPrefix(segs[0], "prosody_mod_") && len(segs) > 1 {
		n = 2
	}
	base := model.SanitizeMetricName(segs[0])
	if n == 2 {
		base += "__" + model.SanitizeMetricName(segs[1])
	}
	values := segs[n:]
	var extra model.Labels
	suffix := ""
	last := len(values) - 1
	switch {
	case last >= 1 && values[last-1] == "bucket" && typ == ingest.Counter:
		extra = model.Labels{{Name: "le", Value: strings.ReplaceAll(values[last], "_", ".")}}
		suffix, values = "_bucket", values[:last-1]
	case last >= 0 && (values[last] == "count" || values[last] == "sum"):
		suffix, values = "_"+values[last], values[:last]
	}

	known := (*m.state.known.Load())[base]
	mp := model.Mapping{Part: model.PartValue}
	switch {
	case suffix != "":
		mp.Family = model.Family{Name: base + suffix, Type: model.Unknown}
		mp.Kind = model.KindCounter
		if typ == ingest.Gauge {
			mp.Kind = model.KindGauge
		}
	case typ == ingest.Counter:
		mp.Family = model.Family{Name: model.CounterFamilyName(base), Type: model.Counter}
		mp.Kind = model.KindCounter
	default:
		mp.Family = model.Family{Name: base, Type: model.Gauge}
		mp.Kind = model.KindGauge
	}
	mp.Family.Help = known.Help
	if mp.Family.Help == "" {
		mp.Family.Help = "Prosody metric not in statsbridge's catalog: " + rest
	}
	if known.Type == mp.Family.Type && strings.HasSuffix(mp.Family.Name, "_"+known.Unit) {
		mp.Family.Unit = known.Unit
	}
	for i, v := range values {
		mp.Labels = append(mp.Labels, model.Label{Name: "unknown_" + strconv.Itoa(i+1), Value: m.restore(nil, "", v)})
	}
	mp.Labels = append(mp.Labels, extra...)
	mp.Labels = appendTags(mp.Labels, tags)
	mp.Key = name // an unknown name's parts are series of their own
	return mp, true
}
