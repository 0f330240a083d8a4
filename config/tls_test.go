package config

import (
	"reflect"
	"testing"
)

// TestSubTableOfAnArrayElement: a table header under an array of tables
// ("[prosody.family.values]", "[graphite.tls]") belongs to the array's
// latest element, as TOML says, and its keys are not lost to defaults.
func TestSubTableOfAnArrayElement(t *testing.T) {
	cfg, err := Parse([]byte(`
[[prosody.family]]
name = "a"
statsd = "a"
type = "gauge"
[[prosody.family]]
name = "b"
statsd = "b"
type = "gauge"
[prosody.family.values]
host = ["x.y"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Prosody.Families[0].Values; len(got) != 0 {
		t.Errorf("family[0].values = %v, want none", got)
	}
	if got, want := cfg.Prosody.Families[1].Values, map[string][]string{"host": {"x.y"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("family[1].values = %v, want %v", got, want)
	}
}
