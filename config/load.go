package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// FieldError is one thing wrong with a configuration: the key it concerns
// (as "statsd.udp" or "graphite[0].address"), the line of the file where
// that key is written (0 when the key is not in the file), and what is wrong.
type FieldError struct {
	File string
	Key  string
	Line int
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every FieldError found in one file.
type Errors []*FieldError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Load reads, decodes and validates the TOML file at path. Keys the file does
// not set take their defaults, and relative paths in it are read from its
// directory. The error, if any, is an Errors listing every problem found, or
// the reason the file could not be read.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config file: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("reading config file: %w", err)
	}
	cfg, err := parse(data, dir)
	var es Errors
	if errors.As(err, &es) {
		for _, e := range es {
			e.File = path
		}
	}
	return cfg, err
}

// Parse decodes and validates a TOML document, as Load does; relative paths
// in it stay relative to the working directory.
func Parse(data []byte) (Config, error) { return parse(data, "") }

func parse(data []byte, dir string) (Config, error) {
	keys, err := indexKeys(data)
	if err != nil {
		return Config{}, err
	}
	var cfg Config
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var errs Errors
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		if !errors.As(err, &strict) {
			return Config{}, decodeErrors(err, keys)
		}
		// Unknown keys do not stop the rest of the file being checked.
		errs = decodeErrors(err, keys).(Errors)
		cfg = Config{}
		if err := toml.Unmarshal(data, &cfg); err != nil {
			return Config{}, append(errs, decodeErrors(err, keys).(Errors)...)
		}
	}
	fillDefaults(reflect.ValueOf(&cfg).Elem(), reflect.ValueOf(Default()), "", keys)
	if dir != "" {
		resolvePaths(&cfg, dir)
	}
	errs = append(errs, resolveSecrets(&cfg, keys)...)
	errs = append(errs, cfg.validate(keys)...)
	if len(errs) > 0 {
		return Config{}, errs
	}
	return cfg, nil
}

// decodeErrors turns go-toml's errors into FieldErrors.
func decodeErrors(err error, keys keyIndex) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var es Errors
		for _, de := range strict.Errors {
			line, _ := de.Position()
			es = append(es, &FieldError{Key: keys.displayAt(de.Key(), line), Line: line, Msg: "unknown key"})
		}
		return es
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := de.Error()
		// go-toml names Go types; an operator wants the TOML-level reason.
		if inner := errors.Unwrap(err); inner != nil {
			msg = inner.Error()
		}
		return Errors{{Key: keys.displayAt(de.Key(), line), Line: line, Msg: msg}}
	}
	return Errors{{Msg: err.Error()}}
}

// sinkDefaults gives the element every array-of-tables entry starts from.
var sinkDefaults = map[string]func() reflect.Value{
	"graphite":     func() reflect.Value { return reflect.ValueOf(DefaultGraphite()) },
	"influx":       func() reflect.Value { return reflect.ValueOf(DefaultInflux()) },
	"remote_write": func() reflect.Value { return reflect.ValueOf(DefaultRemoteWrite()) },
	"family":       func() reflect.Value { return reflect.ValueOf(ProsodyFamily{}) },
}

// fillDefaults copies def into every field of dst whose key the file did not
// set. Arrays of tables start each element from its own default.
func fillDefaults(dst, def reflect.Value, prefix string, keys keyIndex) {
	t := dst.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			fillDefaults(dst.Field(i), def.Field(i), prefix, keys)
			continue
		}
		name := tomlName(f)
		path := joinKey(prefix, name)
		fv, dv := dst.Field(i), def.Field(i)
		switch {
		case !keys.has(path):
			fv.Set(deepCopy(dv))
		case f.Type.Kind() == reflect.Struct && f.Type.NumMethod() == 0 && reflect.PointerTo(f.Type).NumMethod() == 0:
			fillDefaults(fv, dv, path, keys)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			mk := sinkDefaults[name]
			for j := 0; j < fv.Len(); j++ {
				fillDefaults(fv.Index(j), mk(), fmt.Sprintf("%s[%d]", path, j), keys)
			}
		}
	}
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// deepCopy keeps defaults' slices and maps from being shared between configs.
func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Slice:
		if v.IsNil() {
			return reflect.MakeSlice(v.Type(), 0, 0)
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(out, v)
		return out
	case reflect.Map:
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out.SetMapIndex(iter.Key(), iter.Value())
		}
		return out
	}
	return v
}

// resolvePaths makes the file's relative paths relative to dir, its
// directory: they mean the same wherever statsbridge is started from.
func resolvePaths(cfg *Config, dir string) {
	resolve := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range cfg.Statsd.Unixgram {
		resolve(&cfg.Statsd.Unixgram[i])
	}
	resolve(&cfg.Mapping.File)
	tls := func(t *TLS) {
		resolve(&t.CAFile)
		resolve(&t.CertFile)
		resolve(&t.KeyFile)
	}
	for i := range cfg.Graphite {
		g := &cfg.Graphite[i]
		resolve(&g.SpoolDir)
		tls(&g.TLS.TLS)
	}
	for i := range cfg.Influx {
		in := &cfg.Influx[i]
		resolve(&in.SpoolDir)
		resolve(&in.TokenFile)
		resolve(&in.PasswordFile)
		tls(&in.HTTPClient.TLS)
	}
	for i := range cfg.RemoteWrite {
		rw := &cfg.RemoteWrite[i]
		resolve(&rw.SpoolDir)
		resolve(&rw.BearerTokenFile)
		resolve(&rw.PasswordFile)
		tls(&rw.HTTPClient.TLS)
	}
}

// resolveSecrets expands "${NAME}" secrets from the environment and reads
// the *_file secrets, so that a missing variable or file is a load error
// rather than a failure at the first write.
func resolveSecrets(cfg *Config, keys keyIndex) Errors {
	var errs Errors
	expand := func(key string, s *Secret) {
		v := string(*s)
		if strings.HasPrefix(v, "${") && strings.HasSuffix(v, "}") {
			name := v[2 : len(v)-1]
			env, ok := os.LookupEnv(name)
			if !ok {
				errs = append(errs, keys.errorf(key, "environment variable %s is not set", name))
				return
			}
			*s = Secret(env)
		}
	}
	fromFile := func(prefix, name, path string, s *Secret) {
		if path == "" {
			return
		}
		key := prefix + name + "_file"
		if *s != "" {
			errs = append(errs, keys.errorf(key, "set either %s or %s_file, not both", name, name))
			return
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, keys.errorf(key, "%v", err))
			return
		}
		*s = Secret(strings.TrimSpace(string(b)))
	}
	for i := range cfg.Influx {
		in := &cfg.Influx[i]
		p := fmt.Sprintf("influx[%d].", i)
		expand(p+"token", &in.Token)
		expand(p+"password", &in.Password)
		fromFile(p, "token", in.TokenFile, &in.Token)
		fromFile(p, "password", in.PasswordFile, &in.Password)
	}
	for i := range cfg.RemoteWrite {
		rw := &cfg.RemoteWrite[i]
		p := fmt.Sprintf("remote_write[%d].", i)
		expand(p+"bearer_token", &rw.BearerToken)
		fromFile(p, "bearer_token", rw.BearerTokenFile, &rw.BearerToken)
		expand(p+"password", &rw.Password)
		fromFile(p, "password", rw.PasswordFile, &rw.Password)
		for name, v := range rw.Headers {
			expand(p+"headers."+name, &v)
			rw.Headers[name] = v
		}
	}
	return errs
}
