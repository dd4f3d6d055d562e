package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Summary prints the scalar top-level fields of a JSON object as
// key=value, and nested objects as key={…}.
func Summary(data []byte) string {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return string(data)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		switch v := m[k].(type) {
		case map[string]any:
			parts = append(parts, k+"={…}")
		case []any:
			parts = append(parts, fmt.Sprintf("%s=[%d]", k, len(v)))
		case string:
			if strings.ContainsAny(v, " \t") {
				parts = append(parts, fmt.Sprintf("%s=%q", k, v))
			} else {
				parts = append(parts, k+"="+v)
			}
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}
