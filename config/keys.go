package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// keyIndex maps every key a file sets, as a path such as "statsd.udp" or
// "graphite[1].address", to the line it is written on. go-toml reports lines
// for decode errors only; the index gives validation errors lines too, and
// tells defaults from values the file set.
type keyIndex struct {
	lines  map[string]int
	byLine map[int]string
}

func indexKeys(data []byte) (keyIndex, error) {
	idx := keyIndex{lines: map[string]int{}, byLine: map[int]string{}}
	var p unstable.Parser
	p.Reset(data)
	arrays := map[string]int{}
	prefix := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts := partsOf(e.Key())
			name := resolveArrays(parts, arrays)
			if e.Kind == unstable.ArrayTable {
				// A new element of this array, in the latest element of
				// the arrays around it.
				name = joinKey(resolveArrays(parts[:len(parts)-1], arrays), parts[len(parts)-1])
				n := arrays[name]
				arrays[name] = n + 1
				name = fmt.Sprintf("%s[%d]", name, n)
			}
			prefix = name
			idx.add(prefix, lineOf(&p, e.Key()))
		case unstable.KeyValue:
			idx.addKeyValue(&p, prefix, e)
		}
	}
	if err := p.Error(); err != nil {
		var perr *unstable.ParserError
		msg := err.Error()
		line := 0
		if errors.As(err, &perr) {
			line = p.Shape(p.Range(perr.Highlight)).Start.Line
			msg = perr.Message
		}
		return idx, Errors{{Line: line, Msg: "TOML syntax: " + msg}}
	}
	return idx, nil
}

func (idx keyIndex) addKeyValue(p *unstable.Parser, prefix string, kv *unstable.Node) {
	path := joinKey(prefix, joinParts(kv.Key()))
	idx.add(path, lineOf(p, kv.Key()))
	if v := kv.Value(); v.Kind == unstable.InlineTable {
		for it := v.Children(); it.Next(); {
			if child := it.Node(); child.Kind == unstable.KeyValue {
				idx.addKeyValue(p, path, child)
			}
		}
	}
}

func (idx keyIndex) add(path string, line int) {
	// A dotted key ("statsd.udp = ...") and an array element
	// ("graphite[0]") also set their parents.
	for i := range path {
		if path[i] == '.' || path[i] == '[' {
			if _, ok := idx.lines[path[:i]]; !ok {
				idx.lines[path[:i]] = line
			}
		}
	}
	idx.lines[path] = line
	if _, ok := idx.byLine[line]; !ok {
		idx.byLine[line] = path
	}
}

func joinParts(it unstable.Iterator) string { return strings.Join(partsOf(it), ".") }

func partsOf(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// resolveArrays names a table header's key as a path: a part that names an
// array of tables stands for its latest element, so "[graphite.tls]" after
// the second "[[graphite]]" is "graphite[1].tls", as TOML reads it.
func resolveArrays(parts []string, arrays map[string]int) string {
	path := ""
	for _, part := range parts {
		path = joinKey(path, part)
		if n := arrays[path]; n > 0 {
			path = fmt.Sprintf("%s[%d]", path, n-1)
		}
	}
	return path
}

func lineOf(p *unstable.Parser, it unstable.Iterator) int {
	if it.Next() {
		return p.Shape(it.Node().Raw).Start.Line
	}
	return 0
}

// has reports whether the file sets path, or anything below it.
func (idx keyIndex) has(path string) bool {
	_, ok := idx.lines[path]
	return ok
}

func (idx keyIndex) line(path string) int { return idx.lines[path] }

// displayAt names a key go-toml reported, with array indexes restored from
// the index when the key is written on that line.
func (idx keyIndex) displayAt(key toml.Key, line int) string {
	plain := strings.Join(key, ".")
	if path, ok := idx.byLine[line]; ok && stripIndexes(path) == plain {
		return path
	}
	return plain
}

func stripIndexes(path string) string {
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// errorf makes a FieldError for key, at the line the file sets it on.
func (idx keyIndex) errorf(key, format string, args ...any) *FieldError {
	return &FieldError{Key: key, Line: idx.line(key), Msg: fmt.Sprintf(format, args...)}
}
