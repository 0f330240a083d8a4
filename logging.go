package main

import (
	"context"
	"encoding"
	"fmt"
	"io"
	"log/slog"
)

// newLogger writes text lines at level and above to w, each passed through
// redact first.
func newLogger(w io.Writer, level string, redact func(string) string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(redactingHandler{next: slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}), redact: redact})
}

// redactingHandler rewrites the message and every value of a record before
// it is written: secrets are kept out of the log whatever code path logs
// them, an error from a library that quotes a URL included.
type redactingHandler struct {
	next   slog.Handler
	redact func(string) string
}

func (h redactingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	redacted := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		redacted[i] = h.attr(a)
	}
	return redactingHandler{next: h.next.WithAttrs(redacted), redact: h.redact}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{next: h.next.WithGroup(name), redact: h.redact}
}

// attr redacts a value as the text the handler would write for it:
// errors, Stringers and anything else formatted become strings.
func (h redactingHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.redact(v.String()))
	case slog.KindGroup:
		group := v.Group()
		redacted := make([]slog.Attr, len(group))
		for i, g := range group {
			redacted[i] = h.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(redacted...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.redact(x.Error()))
		case []byte:
			return slog.String(a.Key, h.redact(string(x)))
		case encoding.TextMarshaler:
			if b, err := x.MarshalText(); err == nil {
				return slog.String(a.Key, h.redact(string(b)))
			}
		}
		return slog.String(a.Key, h.redact(fmt.Sprintf("%+v", v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
