package fleet

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// Select resolves selectors against the fleet and returns the chosen hosts,
// sorted. Each argument may hold several comma-separated terms; the result
// is the union of the positive terms minus the negative ones:
//
//	goliath          a host by name
//	edge-*           a glob over names
//	@web             every host tagged web
//	@web&@eu         an intersection (any atoms joined by &)
//	!koishi          an exclusion (also inside intersections: @web&!koishi)
//	all              every host except those with requireExplicit
//
// requireExplicit hosts are chosen only by name or tag, never by "all" or
// a glob. Only exclusions means "all except". A term or atom that matches
// no host is an error naming it, so a typo never deploys less than meant.
func Select(f Fleet, selectors []string) ([]string, error) {
	var terms []string
	for _, s := range selectors {
		for _, t := range strings.Split(s, ",") {
			if t = strings.TrimSpace(t); t != "" {
				terms = append(terms, t)
			}
		}
	}
	if len(terms) == 0 {
		return nil, fmt.Errorf("no selector: name hosts, @tags, globs or all")
	}
	chosen := map[string]bool{}
	var excluded []map[string]bool
	positive := false
	for _, t := range terms {
		if strings.HasPrefix(t, "!") && !strings.Contains(t, "&") {
			m, err := atom(f, t[1:])
			if err != nil {
				return nil, err
			}
			excluded = append(excluded, m)
			continue
		}
		positive = true
		set, err := intersection(f, t)
		if err != nil {
			return nil, err
		}
		if len(set) == 0 {
			return nil, fmt.Errorf("selector %q matches no host", t)
		}
		for h := range set {
			chosen[h] = true
		}
	}
	if !positive {
		all, _ := atom(f, "all")
		chosen = all
	}
	for _, m := range excluded {
		for h := range m {
			delete(chosen, h)
		}
	}
	out := make([]string, 0, len(chosen))
	for h := range chosen {
		out = append(out, h)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("selectors %q leave no host", strings.Join(selectors, " "))
	}
	return out, nil
}

// intersection resolves a&b&!c.
func intersection(f Fleet, term string) (map[string]bool, error) {
	var set map[string]bool
	for _, a := range strings.Split(term, "&") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("selector %q has an empty part", term)
		}
		neg := strings.HasPrefix(a, "!")
		m, err := atom(f, strings.TrimPrefix(a, "!"))
		if err != nil {
			return nil, err
		}
		if neg {
			all := map[string]bool{}
			for _, h := range f.Hosts {
				if !m[h.Name] {
					all[h.Name] = true
				}
			}
			m = all
		}
		if set == nil {
			set = m
			continue
		}
		for h := range set {
			if !m[h] {
				delete(set, h)
			}
		}
	}
	return set, nil
}

// atom resolves one name, glob, @tag or all; matching nothing is an error.
func atom(f Fleet, a string) (map[string]bool, error) {
	m := map[string]bool{}
	switch {
	case a == "":
		return nil, fmt.Errorf("empty selector")
	case a == "all":
		for _, h := range f.Hosts {
			if !h.RequireExplicit {
				m[h.Name] = true
			}
		}
		return m, nil
	case strings.HasPrefix(a, "@"):
		tag := a[1:]
		for _, h := range f.Hosts {
			if slices.Contains(h.Tags, tag) {
				m[h.Name] = true
			}
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("selector %q: no host has tag %q (tags: %s)", a, tag, strings.Join(f.tags(), ", "))
		}
		return m, nil
	case strings.ContainsAny(a, "*?["):
		if _, err := path.Match(a, ""); err != nil {
			return nil, fmt.Errorf("selector %q: bad glob: %w", a, err)
		}
		for _, h := range f.Hosts {
			if ok, _ := path.Match(a, h.Name); ok && !h.RequireExplicit {
				m[h.Name] = true
			}
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("selector %q matches no host (hosts: %s)", a, strings.Join(f.Names(), ", "))
		}
		return m, nil
	}
	if _, ok := f.Host(a); !ok {
		return nil, fmt.Errorf("host %q is not in the fleet of %s (hosts: %s)", a, f.Flake, strings.Join(f.Names(), ", "))
	}
	m[a] = true
	return m, nil
}

func (f Fleet) tags() []string {
	seen := map[string]bool{}
	for _, h := range f.Hosts {
		for _, t := range h.Tags {
			seen[t] = true
		}
	}
	out := make([]string, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}
