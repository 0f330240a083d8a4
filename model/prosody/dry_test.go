package prosody

import (
	"testing"

	"github.com/statsbridge/statsbridge/ingest"
)

// TestDryMapCountsNothing: a dry run of the mapping (check-config --names,
// statsbridge tap) maps as Map does, with what decided, and counts no
// unknown name or bucket bound.
func TestDryMapCountsNothing(t *testing.T) {
	state := NewState()
	m := NewMapper("prosody", Builtin(), []string{"localhost"}, state)
	for _, tt := range []struct {
		name string
		typ  ingest.Type
		rule string
		drop bool
	}{
		{"prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4", ingest.Gauge, "prosody catalog: prosody_mod_c2s__connections", false},
		{"prosody.prosody_mod_thirdparty.things.localhost", ingest.Counter, "prosody: not in the catalog", false},
		// A bound the catalog lacks is learned from the wire; one that is
		// not a number is dropped.
		{"prosody.prosody_mod_smacks.tx_acked_stanzas.localhost.bucket.3", ingest.Counter, "prosody catalog: prosody_mod_smacks__tx_acked_stanzas", false},
		{"prosody.prosody_mod_smacks.tx_acked_stanzas.localhost.bucket.x", ingest.Counter, "prosody catalog: prosody_mod_smacks__tx_acked_stanzas", true},
	} {
		dry, ok := m.DryMap(tt.name, tt.typ, nil)
		if !ok || dry.Rule != tt.rule || dry.Drop != tt.drop {
			t.Errorf("%s: ok %v rule %q drop %v; want %q drop %v", tt.name, ok, dry.Rule, dry.Drop, tt.rule, tt.drop)
		}
	}
	if state.UnknownNames() != 0 || state.UnknownBuckets() != 0 {
		t.Errorf("a dry run counted %d unknown names and %d unknown buckets", state.UnknownNames(), state.UnknownBuckets())
	}
	m.Map("prosody.prosody_mod_thirdparty.things.localhost", ingest.Counter, nil)
	if state.UnknownNames() != 1 {
		t.Errorf("Map counts unknown names: %d", state.UnknownNames())
	}
}
