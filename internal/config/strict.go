package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// A misspelled key used to be ignored silently, and the default used instead; now every key the
// file or the environment sets must be one of the Config's, or tern refuses to start and names
// the key with the closest one it knows.

// ErrUnknownKey is wrapped by the error for keys the configuration does not have.
var ErrUnknownKey = errors.New("unknown configuration key")

var durationType = reflect.TypeFor[time.Duration]()

// checkKeys reports every key in raw (koanf's nested map) that Config does not have.
func checkKeys(raw map[string]any) error {
	var unknown []string
	walkKeys(raw, reflect.TypeFor[Config](), "", func(path string, known []string) {
		unknown = append(unknown, describeUnknown(path, known))
	})
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("%w: %s", ErrUnknownKey, strings.Join(unknown, "; "))
}

// walkKeys calls bad for each key of m that t (a struct type) has no field for, with the keys it
// does have at that level.
func walkKeys(m map[string]any, t reflect.Type, prefix string, bad func(path string, known []string)) {
	fields := keyFields(t)
	for key, v := range m {
		ft, ok := fields[key]
		if !ok {
			bad(prefix+key, sortedKeys(fields))
			continue
		}
		path := prefix + key
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType:
			if sub, ok := v.(map[string]any); ok {
				walkKeys(sub, ft, path+".", bad)
			}
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			if sub, ok := v.(map[string]any); ok {
				for name, ev := range sub {
					if em, ok := ev.(map[string]any); ok {
						walkKeys(em, ft.Elem(), path+"."+name+".", bad)
					}
				}
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			if list, ok := v.([]any); ok {
				for i, ev := range list {
					if em, ok := ev.(map[string]any); ok {
						walkKeys(em, ft.Elem(), fmt.Sprintf("%s[%d].", path, i), bad)
					}
				}
			}
		}
	}
}

// keyFields maps the koanf keys of a struct to their types; squashed fields lend theirs.
func keyFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		switch {
		case opts == "squash":
			for k, v := range keyFields(f.Type) {
				out[k] = v
			}
		case tag != "" && tag != "-":
			out[tag] = f.Type
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// describeUnknown names an unknown key and the closest known one: at its own level, or, when the
// key exists in another section (max_queued_messages under [mqtt]), that section's.
func describeUnknown(path string, known []string) string {
	last := path[strings.LastIndexAny(path, ".]")+1:]
	section := strings.TrimSuffix(path[:len(path)-len(last)], ".")
	best, dist := "", len(last)/2+1
	for _, k := range known {
		if d := editDistance(last, k); d < dist {
			best, dist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("%s (did you mean %s?)", path, joinKey(section, best))
	}
	if elsewhere := findKey(reflect.TypeFor[Config](), "", last); elsewhere != "" && elsewhere != path {
		return fmt.Sprintf("%s (%s is a key of [%s])", path, last, strings.TrimSuffix(elsewhere[:len(elsewhere)-len(last)], "."))
	}
	if section == "" {
		return fmt.Sprintf("%s (the sections are %s)", path, strings.Join(known, ", "))
	}
	return fmt.Sprintf("%s ([%s] has %s)", path, section, strings.Join(known, ", "))
}

func joinKey(section, key string) string {
	if section == "" {
		return key
	}
	return section + "." + key
}

// findKey returns the path of the first key named name anywhere in t.
func findKey(t reflect.Type, prefix, name string) string {
	fields := keyFields(t)
	for _, k := range sortedKeys(fields) {
		ft := fields[k]
		if k == name {
			return prefix + k
		}
		if ft.Kind() == reflect.Struct && ft != durationType {
			if p := findKey(ft, prefix+k+".", name); p != "" {
				return p
			}
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
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

// syntaxError gives a TOML syntax error its line and column.
func syntaxError(path string, err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("config file %s, line %d, column %d: %w", path, row, col, err)
	}
	return fmt.Errorf("config file %s: %w", path, err)
}

// quotedKey finds the keys mapstructure names in its errors ('session.max_expiry').
var quotedKey = regexp.MustCompile(`'([A-Za-z0-9_.\[\]-]+)'`)

// valueError turns a decoding error into one line per bad key that echoes the value given.
func valueError(err error, get func(string) any) error {
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		m := quotedKey.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (value %v)", line, formatValue(get(m[1]))))
	}
	if len(parts) == 0 {
		return fmt.Errorf("config: %w", err)
	}
	return fmt.Errorf("config: %s", strings.Join(parts, "; "))
}

func formatValue(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

// Dump renders a configuration as TOML, with the keys a file would use (durations as strings).
func Dump(c Config) ([]byte, error) {
	return toml.Marshal(toMap(reflect.ValueOf(c)))
}

func toMap(v reflect.Value) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		fv := v.Field(i)
		if opts == "squash" {
			for k, x := range toMap(fv) {
				out[k] = x
			}
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		out[tag] = toValue(fv)
	}
	return out
}

func toValue(v reflect.Value) any {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Struct:
		return toMap(v)
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return toValue(v.Elem())
	case v.Kind() == reflect.Map:
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			if x := toValue(v.MapIndex(k)); x != nil {
				m[k.String()] = x
			}
		}
		return m
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		list := make([]any, v.Len())
		for i := range list {
			list[i] = toValue(v.Index(i))
		}
		return list
	case v.Kind() == reflect.Slice && v.IsNil():
		return []any{}
	}
	return v.Interface()
}
