// Package clientevent builds the event a client publishes by hand (pinkie
// pub): a kind named on the command line, its data from key=value
// arguments and a JSON object, typed and checked by the kind's JSON Schema
// before anything is sent.
package clientevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// Publishable names the kinds a client may publish.
func Publishable() []string { return events.KindNames(events.FromClient) }

// Build builds the event of kind typ from key=value arguments kvs and a
// JSON object dataJSON (which kvs override), checks it against its schema
// and returns it with the subject to publish it on. source is the host
// part of its source; requester names who asks, for a deploy.requested
// that does not say. Every error is the user's and names the problem.
func Build(set *schemas.Set, typ string, kvs []string, dataJSON, source string, requester func() string, now time.Time) (events.Event, string, error) {
	k, ok := events.Lookup(typ)
	if !ok {
		return events.Event{}, "", fmt.Errorf("unknown event type %q; publishable types: %s", typ, strings.Join(Publishable(), ", "))
	}
	if k.Origin != events.FromClient {
		return events.Event{}, "", fmt.Errorf("%s events are published by %s, not with pub; publishable types: %s", k.Name, originName(k.Origin), strings.Join(Publishable(), ", "))
	}
	schema := set.Raw(k.Type())
	props, _ := schema["properties"].(map[string]any)
	data := map[string]any{}
	if dataJSON != "" {
		if key, dup := jsonRepeatedKey(dataJSON); dup {
			return events.Event{}, "", fmt.Errorf("--data: key %q given twice", key)
		}
		dec := json.NewDecoder(strings.NewReader(dataJSON))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil {
			return events.Event{}, "", fmt.Errorf("--data is not a JSON object: %w", err)
		}
		if dec.More() {
			return events.Event{}, "", errors.New("--data holds more than one JSON value")
		}
	}
	seen := map[string]bool{}
	for _, kv := range kvs {
		key, val, ok := strings.Cut(kv, "=")
		if !ok || key == "" {
			return events.Event{}, "", fmt.Errorf("argument %q: want key=value", kv)
		}
		if seen[key] {
			return events.Event{}, "", fmt.Errorf("argument %q: key %q given twice", kv, key)
		}
		seen[key] = true
		p, known := props[key].(map[string]any)
		if !known {
			return events.Event{}, "", fmt.Errorf("unknown field %q for %s; fields: %s", key, k.Name, strings.Join(sortedKeys(props), ", "))
		}
		v, err := typedValue(p, val)
		if err != nil {
			return events.Event{}, "", fmt.Errorf("field %s=%q: %w", key, val, err)
		}
		data[key] = v
	}
	for key := range data {
		if _, known := props[key]; !known {
			return events.Event{}, "", fmt.Errorf("unknown field %q for %s; fields: %s", key, k.Name, strings.Join(sortedKeys(props), ", "))
		}
	}
	if h, ok := data["host"].(string); ok {
		if err := events.ValidHost(h); err != nil {
			return events.Event{}, "", fmt.Errorf("host: %w", err)
		}
	}
	if k.Name == "deploy.requested" {
		if _, ok := data["requested_by"]; !ok {
			data["requested_by"] = requester()
		}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return events.Event{}, "", fmt.Errorf("encode data: %w", err)
	}
	if err := set.ValidateData(k.Type(), raw); err != nil {
		return events.Event{}, "", err
	}
	typed := k.New()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(typed); err != nil {
		return events.Event{}, "", fmt.Errorf("%s data: %w", k.Name, err)
	}
	subject := k.HubSubject(typed)
	var opts []events.Option
	if h, ok := data["host"].(string); ok {
		opts = append(opts, events.WithSubject(h))
	}
	e, err := events.New(k, source, "cli", now, typed, opts...)
	if err != nil {
		return events.Event{}, "", err
	}
	return e, subject, nil
}

// jsonRepeatedKey finds a key repeated within one JSON object of doc
// (encoding/json silently keeps the last), naming it by its path, e.g.
// "host" or "x.y". Malformed JSON is left to the decoder to report.
func jsonRepeatedKey(doc string) (string, bool) {
	dec := json.NewDecoder(strings.NewReader(doc))
	var walk func(path string) (string, bool, error)
	walk = func(path string) (string, bool, error) {
		tok, err := dec.Token()
		if err != nil {
			return "", false, err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return "", false, err
				}
				k, _ := kt.(string)
				p := k
				if path != "" {
					p = path + "." + k
				}
				if seen[k] {
					return p, true, nil
				}
				seen[k] = true
				if p, dup, err := walk(p); dup || err != nil {
					return p, dup, err
				}
			}
			_, err = dec.Token()
			return "", false, err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if p, dup, err := walk(fmt.Sprintf("%s[%d]", path, i)); dup || err != nil {
					return p, dup, err
				}
			}
			_, err = dec.Token()
			return "", false, err
		}
		return "", false, nil
	}
	p, dup, _ := walk("")
	return p, dup
}

func originName(o events.Origin) string {
	switch o {
	case events.FromAgent:
		return "agents"
	case events.FromHub:
		return "the hub"
	}
	return "clients"
}

// typedValue converts a command-line string to the JSON type the schema
// property wants.
func typedValue(prop map[string]any, s string) (any, error) {
	switch prop["type"] {
	case "integer":
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, errors.New("want an integer")
		}
		return n, nil
	case "number":
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, errors.New("want a number")
		}
		return f, nil
	case "boolean":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, errors.New("want true or false")
		}
		return b, nil
	case "array":
		if s == "" {
			return []string{}, nil
		}
		return strings.Split(s, ","), nil
	}
	if enum, ok := prop["enum"].([]any); ok {
		for _, v := range enum {
			if v == s {
				return s, nil
			}
		}
		var opts []string
		for _, v := range enum {
			opts = append(opts, fmt.Sprint(v))
		}
		return nil, fmt.Errorf("want one of %s", strings.Join(opts, ", "))
	}
	return s, nil
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
