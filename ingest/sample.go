// Package ingest is statsbridge's StatsD front end: the line parser with its
// dialects (Etsy, DogStatsD, Influx- and Graphite-style tags, Prosody), and
// the UDP, TCP and unixgram listeners that feed parsed samples to a Handler
// in batches.
package ingest

// Type is a StatsD metric type, as written after the first '|'.
type Type uint8

// The StatsD types.
const (
	Counter      Type = iota + 1 // c
	Gauge                        // g
	Timer                        // ms
	Histogram                    // h
	Distribution                 // d
	Set                          // s
)

var typeNames = [...]string{"", "c", "g", "ms", "h", "d", "s"}

// observes reports whether the type takes observations (several values
// per line).
func (t Type) observes() bool { return t == Timer || t == Histogram || t == Distribution }

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "?"
}

// Tag is one label a line carries, in any of the tag styles.
type Tag struct {
	Key, Value []byte
}

// Sample is one parsed StatsD line, or one field of a line of Etsy's
// multi-value form. Its byte slices point into the buffer the line was read
// into, and its slices are reused: a Sample is valid until that buffer is
// reused or the next line is parsed into it.
type Sample struct {
	Name []byte // without any tags written into the name
	Type Type

	// Values holds the numbers of c, g, ms, h and d lines: one, or several
	// for "t:1:2:3|ms", as written: whoever aggregates applies the rate (a
	// counter adds value/Rate).
	Values []float64
	// Member is a set's member (the value of an s line).
	Member []byte
	// Relative is set for a gauge written "+N" or "-N" where the dialect
	// makes that an adjustment.
	Relative bool
	// Rate is the sample rate (1 when the line has none). Observations of
	// ms, h and d lines have weight 1/Rate.
	Rate float64
	Tags []Tag
	// Timestamp is a DogStatsD "|T<unix seconds>", or 0.
	Timestamp int64
	// Container is a DogStatsD "|c:<id>", or empty.
	Container []byte

	// The rest of a multi-value line, for Parser.Next: its further fields
	// from the ':' on, how many of Tags the line carries (a reader may add
	// its own after them), and whether its name is taken literally.
	more     []byte
	lineTags int
	literal  bool
}

// Weight is how many observations one value of a timer, histogram or
// distribution stands for.
func (s *Sample) Weight() float64 { return 1 / s.Rate }

// Handler receives parsed samples. Each reader goroutine gets its own Handler
// (see Listeners.NewHandler), so a Handler needs no locking of its own for
// what it keeps per reader.
type Handler interface {
	// Handle takes a batch of samples. The samples and their bytes are
	// valid only during the call.
	Handle(batch []Sample)
}
