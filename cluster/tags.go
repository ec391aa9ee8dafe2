package cluster

// Worker tags: a worker is started with --tags dc=paris,rack=3 and says so
// in its heartbeat; a sweep or watch pinned with --on dc=paris runs only on
// the live workers whose tags include every pair it names (hosts only some
// workers can reach). Tags come from the bus too (heartbeats, records), so
// they are bounded and checked wherever they are read.

import (
	"fmt"
	"slices"
	"strings"
)

// Tag bounds.
const (
	maxTags   = 16
	maxTagLen = 64
)

// ParseTags reads "k=v,k2=v2" (what --tags and --on take): keys and values
// of letters, digits, '.', '_' and '-', each key once. "" is no tags.
func ParseTags(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	tags := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok || !tagWord(k) || !tagWord(v):
			return nil, fmt.Errorf("tags %q: %q: want KEY=VALUE, each of 1 to %d letters, digits, '.', '_' or '-' (dc=paris,rack=3)", s, kv, maxTagLen)
		case tags[k] != "":
			return nil, fmt.Errorf("tags %q: key %q given twice", s, k)
		}
		tags[k] = v
	}
	if len(tags) > maxTags {
		return nil, fmt.Errorf("tags %q: %d tags, at most %d", s, len(tags), maxTags)
	}
	return tags, nil
}

// CheckTags checks tags read from the bus (a heartbeat, a record) as
// ParseTags would have.
func CheckTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return fmt.Errorf("%d tags, at most %d", len(tags), maxTags)
	}
	for k, v := range tags {
		if !tagWord(k) || !tagWord(v) {
			return fmt.Errorf("tag %q=%q: want letters, digits, '.', '_' or '-', 1 to %d of them", k, v, maxTagLen)
		}
	}
	return nil
}

func tagWord(s string) bool {
	if s == "" || len(s) > maxTagLen {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// FormatTags writes tags as ParseTags reads them, keys sorted ("-" for
// none).
func FormatTags(tags map[string]string) string {
	if len(tags) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + tags[k])
	}
	return b.String()
}

// TagsMatch reports whether a worker tagged have may run what is pinned to
// on: every pair of on is in have (nothing pinned: any worker).
func TagsMatch(have, on map[string]string) bool {
	for k, v := range on {
		if have[k] != v {
			return false
		}
	}
	return true
}

// pinnedError is a worker's refusal of what is pinned to tags it lacks.
func pinnedError(name string, have, on map[string]string) error {
	return fmt.Errorf("is pinned to --on %s, this worker %s has tags %s", FormatTags(on), name, FormatTags(have))
}
