package model

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// LabelFix says why a label was renamed or dropped to keep its series
// valid for every backend.
type LabelFix uint8

// The reasons a label is renamed or dropped.
const (
	// FixLE renames le on a histogram to exported_le: the exposition adds
	// an le of its own to each bucket.
	FixLE LabelFix = iota
	// FixQuantile renames quantile on a summary to exported_quantile.
	FixQuantile
	// FixReservedPrefix renames a name starting with "__" (reserved for
	// Prometheus) to one with a single leading '_'.
	FixReservedPrefix
	// FixDuplicate drops a label whose name another label already has
	// once both are sanitised.
	FixDuplicate
	numLabelFixes
)

var labelFixNames = [numLabelFixes]string{"le", "quantile", "reserved_prefix", "duplicate"}

func (r LabelFix) String() string { return labelFixNames[r] }

// Renames reports whether the label is renamed (rather than dropped).
func (r LabelFix) Renames() bool { return r != FixDuplicate }

// LabelFixes lists every reason a label is renamed or dropped.
func LabelFixes() []LabelFix {
	rs := make([]LabelFix, numLabelFixes)
	for i := range rs {
		rs[i] = LabelFix(i)
	}
	return rs
}

// exportedPrefix is what Prometheus puts before a label name that collides
// with one it sets itself (honor_labels: false).
const exportedPrefix = "exported_"

// settleLabels is the one rule that makes a label set valid, whatever made
// it (tags, a mapping file, the Prosody dialect, source_label): label names
// are sanitised; of labels whose names are then equal, the first wins;
// labels after the first fixed ones with an empty value are no labels, as
// in Prometheus; a name starting with "__" keeps one '_'; le on a histogram
// and quantile on a summary get Prometheus' exported_ prefix; and a renamed
// label takes exported_ prefixes until its name is free. Labels keep their
// order, so the same labels in give the same series. Label values are made
// valid UTF-8. It never changes ls; fixes counts what it changed.
//
// Mappers put their own labels first and the line's tags after them, so a
// mapping's label wins over a tag; tags of one name come latest first (see
// tagLabels), so the latest wins.
func settleLabels(ls Labels, fixed int, typ Type, fixes *[numLabelFixes]uint64) Labels {
	reserved := ""
	reservedFix := FixLE
	switch typ {
	case Histogram:
		reserved = "le"
	case Summary:
		reserved, reservedFix = "quantile", FixQuantile
	}
	out := make(Labels, 0, len(ls))
	var renames []int  // indexes into out of labels to rename
	var empty []string // names taken by labels with an empty value
	for i, l := range ls {
		name := SanitizeMetricName(l.Name)
		if slices.Contains(empty, name) || slices.ContainsFunc(out, func(o Label) bool { return o.Name == name }) {
			count(fixes, FixDuplicate)
			continue
		}
		if l.Value == "" && i >= fixed {
			empty = append(empty, name)
			continue
		}
		if !utf8.ValidString(l.Value) {
			l.Value = strings.ToValidUTF8(l.Value, "\uFFFD")
		}
		if strings.HasPrefix(name, "__") || name == reserved {
			renames = append(renames, len(out))
		}
		out = append(out, Label{Name: name, Value: l.Value})
	}
	for _, i := range renames {
		name, why := exportedPrefix+out[i].Name, reservedFix
		if strings.HasPrefix(out[i].Name, "__") {
			name, why = "_"+strings.TrimLeft(out[i].Name, "_"), FixReservedPrefix
		}
		for slices.ContainsFunc(out, func(o Label) bool { return o.Name == name }) {
			name = exportedPrefix + name
		}
		out[i].Name = name
		count(fixes, why)
	}
	return out
}

func count(fixes *[numLabelFixes]uint64, r LabelFix) {
	if fixes != nil {
		fixes[r]++
	}
}

// externalLabelOK reports whether a sink may add an external label of the
// name to any series: a valid, unreserved name that no histogram or summary
// sets itself.
func externalLabelOK(name string) bool {
	if name == "" || name == "le" || name == "quantile" || strings.HasPrefix(name, "__") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
