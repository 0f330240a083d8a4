package model

import "github.com/statsbridge/statsbridge/ingest"

// Decision is what the model makes of a name: the family, labels and kind
// of its series, or why its samples are refused, and what decided.
type Decision struct {
	Family Family
	Kind   Kind
	Labels Labels
	// Rule says what decided (see Mapping.Rule).
	Rule string
	// Refused says why the name's samples are dropped: a DropReason's
	// name, or "conflict" when its type conflicts with its family's. It is
	// "" for a name whose samples are applied.
	Refused string
}

// Explain maps a sample's name as the model would, without applying it,
// creating anything or counting: a dry run of the mapping (check-config,
// statsbridge tap), with the limits and the families the model holds now.
func (m *Model) Explain(smp *ingest.Sample) Decision {
	ms := m.settings.Load()
	mapping := m.mapSample(ms, string(smp.Name), smp.Type, tagLabels(smp.Tags), true)
	d := Decision{Family: mapping.Family, Kind: mapping.Kind, Rule: mapping.Rule}
	if mapping.Drop {
		d.Refused = DropMapping.String()
		return d
	}
	var fixes [numLabelFixes]uint64
	mapping.Labels = settleLabels(mapping.Labels, len(mapping.Family.LabelNames), mapping.Family.Type, &fixes)
	d.Labels = mapping.Labels
	if r, bad := checkLimits(&ms.opts, &mapping); bad {
		d.Refused = r.String()
		return d
	}
	// As register decides, without registering.
	m.mu.RLock()
	defer m.mu.RUnlock()
	fe := m.order.find(mapping.Family.Name)
	var s *Series
	if fe != nil {
		s = fe.lookup(mapping.Labels, m.labelsHash(mapping.Labels))
	}
	switch {
	case s != nil && s.kind != mapping.Kind:
		d.Refused = refusal{conflict: true}.String()
	case s != nil:
	case fe != nil && (fe.kind != mapping.Kind || mapping.Kind != KindPrebucketed && !fe.shape.sameShape(&mapping.Family)):
		d.Refused = refusal{conflict: true}.String()
	case m.nseries.Load() >= int64(ms.opts.MaxSeries):
		d.Refused = DropMaxSeries.String()
	case fe != nil && fe.sent() >= ms.opts.MaxSeriesPerFamily:
		d.Refused = DropMaxSeriesPerFamily.String()
	}
	return d
}
