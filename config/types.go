package config

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("10s", "5m").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as \"10s\" or \"5m\", got %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size in bytes written with an optional unit: "512", "64KiB",
// "8MiB", "1GiB" (powers of 1024) or "10MB" (powers of 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000}, {"TB", 1000_000_000_000},
	{"B", 1},
}

// UnmarshalText parses a size such as "8MiB".
func (s *ByteSize) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	factor := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(text, u.suffix) {
			text, factor = strings.TrimSpace(strings.TrimSuffix(text, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseFloat(text, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || n*float64(factor) > math.MaxInt64/2 {
		return fmt.Errorf("want a size such as \"64KiB\" or \"8MiB\", got %q", b)
	}
	*s = ByteSize(n * float64(factor))
	return nil
}

// MarshalText writes the size in the largest binary unit that divides it.
func (s ByteSize) MarshalText() ([]byte, error) {
	for i := 3; i >= 0 && s != 0; i-- {
		if u := byteUnits[i]; int64(s)%u.factor == 0 {
			return []byte(strconv.FormatInt(int64(s)/u.factor, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(s), 10)), nil
}

// FileMode is a Unix permission mode written in octal ("0660").
type FileMode os.FileMode

// UnmarshalText parses an octal mode.
func (m *FileMode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("want an octal permission mode such as \"0660\", got %q", b)
	}
	*m = FileMode(v)
	return nil
}

// Mode returns the mode as an os.FileMode.
func (m FileMode) Mode() os.FileMode { return os.FileMode(m) }

// MarshalText writes the mode in octal.
func (m FileMode) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%04o", uint32(m))), nil }

// Secret is a token or password. A value written "${NAME}" is read from the
// environment variable NAME when the file is loaded. A Secret never prints
// its value: use Reveal where the value is really needed.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// LogValue hides the value from slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
