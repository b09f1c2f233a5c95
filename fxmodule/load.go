package fxmodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
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
	path   string // YAML path, "store.bigcache.shards"
	goName string // Go field path from Config, "Store.BigCache.Shards"
	index  []int  // reflect field index path from Config
	typ    reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// configFields lists the leaf fields of Config by YAML path, in declaration
// order. A map[string]string field is one entry whose keys are free-form.
func configFields() []field {
	var out []field
	var walk func(t reflect.Type, prefix, goPrefix string, index []int)
	walk = func(t reflect.Type, prefix, goPrefix string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			idx := append(slices.Clone(index), i)
			if sf.Type.Kind() == reflect.Struct && sf.Type != durationType {
				walk(sf.Type, prefix+name+".", goPrefix+sf.Name+".", idx)
				continue
			}
			out = append(out, field{path: prefix + name, goName: goPrefix + sf.Name, index: idx, typ: sf.Type})
		}
	}
	walk(reflect.TypeFor[Config](), "", "", nil)
	return out
}

// goName returns the Go field path of a YAML path, or the path itself.
func goName(path string) string {
	for _, f := range configFields() {
		if f.path == path {
			return f.goName
		}
	}
	return path
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
// (DefaultEnvPrefix when empty) applied, validated; errors name the
// variables. See Config.ApplyEnv.
func LoadEnv(prefix string) (Config, error) { return LoadEnvOver(DefaultConfig(), prefix) }

// LoadEnvOver returns base with the environment variables of prefix
// (DefaultEnvPrefix when empty) applied, validated; errors name the
// variables. An application whose defaults differ from DefaultConfig (its
// own namespace, a shorter TTL) starts from them.
func LoadEnvOver(base Config, prefix string) (Config, error) {
	c := base
	if err := c.ApplyEnv(prefix, os.Environ()); err != nil {
		return c, err
	}
	if prefix == "" {
		prefix = DefaultEnvPrefix
	}
	return c, c.validate(envLabel(prefix))
}

// toolEnv lists the variables with the default prefix that this module's
// tests and tools read; ApplyEnv does not report them as unknown.
var toolEnv = []string{
	"BACKPLANE_REDIS_URL", "BACKPLANE_NATS_URL", "BACKPLANE_REQUIRE_SERVICES",
	"BACKPLANE_CHAOS_FULL", "BACKPLANE_CHAOS_REPORT",
}

// ApplyEnv sets the fields whose variables appear in environ ("KEY=value"
// entries, as from os.Environ). A field's variable is prefix (default
// DefaultEnvPrefix) followed by its YAML path in upper case with dots as
// underscores: BACKPLANE_TRANSPORT_URL, BACKPLANE_TTL,
// BACKPLANE_STORE_BIGCACHE_SHARDS, BACKPLANE_STORE_PARAMS_<KEY>. A
// variable with the prefix that names no field (a misspelt
// BACKPLANE_TRANSPORTURL, say) is an error that names the closest valid
// one and lists them all, except the variables this module's tests and
// tools read (BACKPLANE_REDIS_URL, BACKPLANE_NATS_URL,
// BACKPLANE_REQUIRE_SERVICES, BACKPLANE_CHAOS_FULL, BACKPLANE_CHAOS_REPORT);
// use another prefix to keep variables of your own beside them. A value that does not
// parse is an error naming the variable; every error is reported.
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
	fields := configFields()
	var valid []string
	for _, f := range fields {
		name := envName(prefix, f.path)
		if f.typ.Kind() == reflect.Map {
			name += "_<KEY>"
		}
		valid = append(valid, name)
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if known(fields, prefix, k) || (prefix == DefaultEnvPrefix && slices.Contains(toolEnv, k)) {
			continue
		}
		hint := ""
		if near := closest(k, valid); near != "" {
			hint = fmt.Sprintf("; did you mean %s?", near)
		}
		errs = append(errs, fmt.Errorf("%w: unknown variable %s%s (valid: %s)", core.ErrInvalidOption, k, hint, strings.Join(valid, ", ")))
	}
	for _, f := range fields {
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

// LoadYAMLFile is LoadYAML of the file at path; errors name the file.
func LoadYAMLFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return DefaultConfig(), fmt.Errorf("fxmodule: %w", err)
	}
	c := DefaultConfig()
	if err := c.ApplyYAML(bytes.NewReader(b)); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, c.validate(yamlLabel(path))
}

// LoadYAML returns DefaultConfig with the YAML document read from r
// applied, validated. See Config.ApplyYAML.
func LoadYAML(r io.Reader) (Config, error) {
	c := DefaultConfig()
	if err := c.ApplyYAML(r); err != nil {
		return c, err
	}
	return c, c.validate(yamlLabel(""))
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

// known reports whether the variable k names a field of prefix.
func known(fields []field, prefix, k string) bool {
	for _, f := range fields {
		name := envName(prefix, f.path)
		if k == name || (f.typ.Kind() == reflect.Map && strings.HasPrefix(k, name+"_")) {
			return true
		}
	}
	return false
}

// closest returns the name of valid nearest to k (ignoring underscores and
// case), if it is near enough to be a likely misspelling, else "".
func closest(k string, valid []string) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	best, bestD := "", 4
	for _, v := range valid {
		if d := distance(norm(k), norm(strings.TrimSuffix(v, "_<KEY>"))); d < bestD {
			best, bestD = v, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
