package fxmodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/backplane-go/backplane/core"
)

// DefaultEnvPrefix is the prefix of the environment variables LoadEnv reads
// when given an empty prefix.
const DefaultEnvPrefix = "BACKPLANE_"

// field is one settable Config field.
type field struct {
	path  string // YAML path, "store.bigcache.shards"
	index []int  // reflect field index path from Config
	typ   reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// configFields lists the leaf fields of Config by YAML path, in declaration
// order. A map[string]string field is one entry whose keys are free-form.
func configFields() []field {
	var out []field
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			idx := append(slices.Clone(index), i)
			if sf.Type.Kind() == reflect.Struct && sf.Type != durationType {
				walk(sf.Type, prefix+name+".", idx)
				continue
			}
			out = append(out, field{path: prefix + name, index: idx, typ: sf.Type})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// envName is the environment variable of a YAML path.
func envName(prefix, path string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// set parses s into the field of c; label names the field in errors.
func (f field) set(c *Config, label, key, s string) error {
	v := reflect.ValueOf(c).Elem().FieldByIndex(f.index)
	bad := func(what string, err error) error {
		return fmt.Errorf("%w: %s: %q is not %s: %v", core.ErrInvalidOption, label, s, what, err)
	}
	s = strings.TrimSpace(s)
	switch {
	case f.typ == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return bad("a duration (like 500ms, 5s or 10m)", unquote(err))
		}
		v.SetInt(int64(d))
	case f.typ.Kind() == reflect.String:
		v.SetString(s)
	case f.typ.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return bad("an integer", unquote(err))
		}
		v.SetInt(int64(n))
	case f.typ.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad("a number", unquote(err))
		}
		v.SetFloat(x)
	case f.typ.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return bad("a boolean", unquote(err))
		}
		v.SetBool(b)
	case f.typ.Kind() == reflect.Map && f.typ.Elem().Kind() == reflect.String:
		if v.IsNil() {
			v.Set(reflect.MakeMap(f.typ))
		}
		v.SetMapIndex(reflect.ValueOf(key), reflect.ValueOf(s))
	default:
		return fmt.Errorf("fxmodule: field %s has unsupported type %v", f.path, f.typ)
	}
	return nil
}

// unquote strips the repeated input from strconv and time errors.
func unquote(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
}

// LoadEnv returns DefaultConfig with the environment variables of prefix
// (DefaultEnvPrefix when empty) applied, validated. See Config.ApplyEnv.
func LoadEnv(prefix string) (Config, error) {
	c := DefaultConfig()
	if err := c.ApplyEnv(prefix, os.Environ()); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// ApplyEnv sets the fields whose variables appear in environ ("KEY=value"
// entries, as from os.Environ). A field's variable is prefix (default
// DefaultEnvPrefix) followed by its YAML path in upper case with dots as
// underscores: BACKPLANE_TRANSPORT_URL, BACKPLANE_TTL,
// BACKPLANE_STORE_BIGCACHE_SHARDS, BACKPLANE_STORE_PARAMS_<KEY>. Other
// variables with the prefix are ignored (tests and tools share it). A value
// that does not parse is an error naming the variable; every such error is
// reported.
func (c *Config) ApplyEnv(prefix string, environ []string) error {
	if prefix == "" {
		prefix = DefaultEnvPrefix
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, prefix) {
			env[k] = v
		}
	}
	var errs []error
	for _, f := range configFields() {
		name := envName(prefix, f.path)
		if f.typ.Kind() == reflect.Map {
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range env {
					if strings.HasPrefix(k, name+"_") && !yield(k) {
						return
					}
				}
			})
			for _, k := range keys {
				key := strings.ToLower(strings.TrimPrefix(k, name+"_"))
				if err := f.set(c, k, key, env[k]); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if v, ok := env[name]; ok {
			if err := f.set(c, name, "", v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// LoadYAMLFile is LoadYAML of the file at path.
func LoadYAMLFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return DefaultConfig(), fmt.Errorf("fxmodule: %w", err)
	}
	c, err := LoadYAML(bytes.NewReader(b))
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// LoadYAML returns DefaultConfig with the YAML document read from r
// applied, validated. See Config.ApplyYAML.
func LoadYAML(r io.Reader) (Config, error) {
	c := DefaultConfig()
	if err := c.ApplyYAML(r); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// ApplyYAML sets the fields present in the YAML document read from r; the
// keys are those of the yaml tags (namespace, transport_url, ttl,
// store: {name, bigcache: {shards, ...}}, ...). Durations are written like
// 500ms, 5s or 10m. An unknown key, a value of the wrong shape or one that
// does not parse is an error naming the field and its line; every such
// error is reported. An empty document changes nothing.
func (c *Config) ApplyYAML(r io.Reader) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("%w: yaml: %v", core.ErrInvalidOption, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	fields := configFields()
	byPath := map[string]field{}
	for _, f := range fields {
		byPath[f.path] = f
	}
	var errs []error
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		where := strings.TrimSuffix(prefix, ".")
		if where == "" {
			where = "document"
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.MappingNode {
			errs = append(errs, fmt.Errorf("%w: yaml line %d: %s must be a mapping", core.ErrInvalidOption, n.Line, where))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := prefix + k.Value
			if f, ok := byPath[path]; ok {
				if f.typ.Kind() == reflect.Map {
					walkMap(c, f, k, v, &errs)
					continue
				}
				if v.Kind != yaml.ScalarNode {
					errs = append(errs, fmt.Errorf("%w: yaml line %d: %s must be a single value", core.ErrInvalidOption, v.Line, path))
					continue
				}
				if err := f.set(c, fmt.Sprintf("yaml line %d: %s", v.Line, path), "", v.Value); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			if isGroup(fields, path) {
				walk(v, path+".")
				continue
			}
			errs = append(errs, fmt.Errorf("%w: yaml line %d: unknown field %q in %s (valid: %s)",
				core.ErrInvalidOption, k.Line, k.Value, where, strings.Join(children(fields, prefix), ", ")))
		}
	}
	walk(doc.Content[0], "")
	return errors.Join(errs...)
}

func walkMap(c *Config, f field, k, v *yaml.Node, errs *[]error) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return
	}
	if v.Kind != yaml.MappingNode {
		*errs = append(*errs, fmt.Errorf("%w: yaml line %d: %s must be a mapping", core.ErrInvalidOption, k.Line, f.path))
		return
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		mk, mv := v.Content[i], v.Content[i+1]
		if mv.Kind != yaml.ScalarNode {
			*errs = append(*errs, fmt.Errorf("%w: yaml line %d: %s.%s must be a single value", core.ErrInvalidOption, mv.Line, f.path, mk.Value))
			continue
		}
		if err := f.set(c, f.path+"."+mk.Value, mk.Value, mv.Value); err != nil {
			*errs = append(*errs, err)
		}
	}
}

// isGroup reports whether path names a nested section (like "store").
func isGroup(fields []field, path string) bool {
	return slices.ContainsFunc(fields, func(f field) bool { return strings.HasPrefix(f.path, path+".") })
}

// children lists the keys valid directly under prefix.
func children(fields []field, prefix string) []string {
	var out []string
	for _, f := range fields {
		if rest, ok := strings.CutPrefix(f.path, prefix); ok {
			name, _, _ := strings.Cut(rest, ".")
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}
