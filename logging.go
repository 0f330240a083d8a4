package main

import (
	"context"
	"encoding"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/statsbridge/statsbridge/config"
)

// logOutput is where statsbridge logs: text or JSON lines on one writer,
// each passed through a redactor first. A reload changes the level, the
// format and the secrets to hide in place, so that every logger handed out
// before follows, those of components that outlive the reload included.
type logOutput struct {
	w     io.Writer
	level slog.LevelVar
	state atomic.Pointer[logState]

	mu      sync.Mutex
	secrets config.Redactor // every secret configured since the start
}

type logState struct {
	handler slog.Handler
	redact  func(string) string
}

func newLogOutput(w io.Writer) *logOutput {
	o := &logOutput{w: w}
	o.set(config.LogText, func(s string) string { return config.Redact(s) })
	return o
}

// apply takes a configuration's level, format and secrets. The secrets of
// earlier configurations stay hidden: a sink removed by a reload may still
// log while it drains, and a rotated credential is still a credential. A
// nil logOutput (a logger of the caller's own) changes nothing.
func (o *logOutput) apply(cfg config.Config) {
	if o == nil {
		return
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated
	o.level.Set(level)
	o.mu.Lock()
	o.secrets = o.secrets.With(cfg.Redactor())
	redactor := o.secrets
	o.mu.Unlock()
	o.set(cfg.LogFormat, redactor.Redact)
}

func (o *logOutput) set(format string, redact func(string) string) {
	opts := &slog.HandlerOptions{Level: &o.level}
	var h slog.Handler = slog.NewTextHandler(o.w, opts)
	if format == config.LogJSON {
		h = slog.NewJSONHandler(o.w, opts)
	}
	o.state.Store(&logState{handler: h, redact: redact})
}

// redact hides what the log hides, for text written elsewhere (the error
// statsbridge exits with).
func (o *logOutput) redact(s string) string { return o.state.Load().redact(s) }

func (o *logOutput) logger() *slog.Logger { return slog.New(redactingHandler{out: o}) }

// newLogger returns a logger of its own on w: text or JSON lines at level
// and above, each passed through redact first.
func newLogger(w io.Writer, level, format string, redact func(string) string) *slog.Logger {
	o := &logOutput{w: w}
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	o.level.Set(l)
	o.set(format, redact)
	return o.logger()
}

// redactingHandler rewrites the message and every value of a record before
// it is written: secrets are kept out of the log whatever code path logs
// them, an error from a library that quotes a URL included. It keeps the
// attributes and groups given beforehand (With, WithGroup) and applies them
// to the output in force when a record is written.
type redactingHandler struct {
	out *logOutput
	ops []handlerOp
}

// handlerOp is one With (attrs) or WithGroup (group) call.
type handlerOp struct {
	attrs []slog.Attr
	group string
}

func (h redactingHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.out.level.Level()
}

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	st := h.out.state.Load()
	next := st.handler
	for _, op := range h.ops {
		if op.attrs == nil {
			next = next.WithGroup(op.group)
			continue
		}
		redacted := make([]slog.Attr, len(op.attrs))
		for i, a := range op.attrs {
			redacted[i] = redactAttr(a, st.redact)
		}
		next = next.WithAttrs(redacted)
	}
	out := slog.NewRecord(r.Time, r.Level, st.redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a, st.redact))
		return true
	})
	return next.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return redactingHandler{out: h.out, ops: append(h.ops[:len(h.ops):len(h.ops)], handlerOp{attrs: attrs})}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return redactingHandler{out: h.out, ops: append(h.ops[:len(h.ops):len(h.ops)], handlerOp{group: name})}
}

// redactAttr redacts a value as the text the handler would write for it:
// errors, Stringers and anything else formatted become strings.
func redactAttr(a slog.Attr, redact func(string) string) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redact(v.String()))
	case slog.KindGroup:
		group := v.Group()
		redacted := make([]slog.Attr, len(group))
		for i, g := range group {
			redacted[i] = redactAttr(g, redact)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(redacted...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, redact(x.Error()))
		case []byte:
			return slog.String(a.Key, redact(string(x)))
		case encoding.TextMarshaler:
			if b, err := x.MarshalText(); err == nil {
				return slog.String(a.Key, redact(string(b)))
			}
		}
		return slog.String(a.Key, redact(fmt.Sprintf("%+v", v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
