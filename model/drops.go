package model

// DropReason says why a sample did not reach a series.
type DropReason uint8

// The reasons the model drops a sample or refuses a series.
const (
	DropMapping            DropReason = iota // a mapping's action: drop
	DropMaxSeries                            // limits.max_series reached
	DropMaxSeriesPerFamily                   // limits.max_series_per_family reached
	DropTooManyLabels                        // limits.max_labels
	DropNameTooLong                          // limits.max_name_length
	DropLabelValueTooLong                    // limits.max_label_value_length
	// DropNonFinite: applying the sample would have made the series'
	// state infinite or NaN (a huge value, a tiny sample rate).
	DropNonFinite
	// DropMaxBuckets: a bucket line of a histogram that arrives in parts
	// names a bound past the 64 its series may know.
	DropMaxBuckets
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	"mapping_drop", "max_series", "max_series_per_family", "max_labels", "name_too_long", "label_value_too_long",
	"non_finite", "max_buckets",
}

func (r DropReason) String() string { return dropReasonNames[r] }

// SeriesLimit reports whether the reason is a cap on the number of series
// (counted as dropped series) rather than a refused sample.
func (r DropReason) SeriesLimit() bool { return r == DropMaxSeries || r == DropMaxSeriesPerFamily }

// DropReasons lists every reason the model drops a sample.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// countRefused counts a sample that r refuses. A conflict, a mapping's drop
// and a label limit count every sample; a series cap counts the series it
// refused, so a remembered refusal at a cap counts nothing.
func (m *Model) countRefused(r refusal, remembered bool) {
	switch {
	case r.conflict:
		m.conflicts.Add(1)
	case r.reason.SeriesLimit() && remembered:
	default:
		m.dropped[r.reason].Add(1)
	}
}

// logRefused logs a refusal with the family it concerned (the name as sent
// for a mapping's drop), through the throttle.
func (m *Model) logRefused(r refusal, family, name string) {
	switch {
	case r.conflict:
		m.conflictLog.Log("family", family)
	case r.reason == DropMapping:
		m.dropLog.Log("reason", r.reason.String(), "family", name)
	default:
		m.dropLog.Log("reason", r.reason.String(), "family", family)
	}
}

// Dropped returns how many samples were dropped for a reason.
func (m *Model) Dropped(r DropReason) uint64 { return m.dropped[r].Load() }

// LabelFixCount returns how many labels were renamed or dropped for a
// reason to keep their series valid. Labels are settled as a name is mapped,
// so a name is counted when it is first seen (and again should it fall out
// of the name cache), not for each of its samples.
func (m *Model) LabelFixCount(r LabelFix) uint64 { return m.labelFixes[r].Load() }

// Conflicts returns how many samples conflicted with their family's type.
func (m *Model) Conflicts() uint64 { return m.conflicts.Load() }
