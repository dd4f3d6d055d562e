package events

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

// SilenceMaxFor is the longest silence: the ALERTLOG stream, where
// silences are recorded, keeps 90 days. Longer: disable the rule.
const SilenceMaxFor = 90 * 24 * time.Hour

var silenceLabelRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// ParseSilenceMatchers reads LABEL=PATTERN arguments into a silence's
// matchers: a label is lower-case letters, digits and _, a pattern a
// non-empty shell pattern (path.Match), each label at most once.
func ParseSilenceMatchers(args []string) (map[string]string, error) {
	matchers := map[string]string{}
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok {
			return nil, fmt.Errorf("matcher %q: want LABEL=PATTERN, e.g. host=goliath", arg)
		}
		if !silenceLabelRE.MatchString(k) {
			return nil, fmt.Errorf("matcher %q: label %q: use lower-case letters, digits and _ (host, rule, object, severity, kind)", arg, k)
		}
		if v == "" {
			return nil, fmt.Errorf("matcher %q: empty pattern", arg)
		}
		if _, err := path.Match(v, ""); err != nil {
			return nil, fmt.Errorf("matcher %q: bad pattern: %w", arg, err)
		}
		if _, dup := matchers[k]; dup {
			return nil, fmt.Errorf("matcher %q: key %q given twice", arg, k)
		}
		matchers[k] = v
	}
	return matchers, nil
}

// FormatSilenceMatchers prints matchers as LABEL=PATTERN, sorted by label.
func FormatSilenceMatchers(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}
