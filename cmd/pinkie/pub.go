package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// pubResult is what pub prints with --json.
type pubResult struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Subject   string `json:"subject"`
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

func runPub(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet("pub", "TYPE [key=value...]", `
Publish one event at the hub. TYPE is an event kind such as deploy.requested
(or its full CloudEvents type pinkie.deploy.requested.v1); key=value pairs set
fields of its data, typed by the kind's JSON Schema; --data gives the data as a
JSON object, which key=value pairs then override. The event is checked against
its schema before anything is sent: an unknown type, an unknown, missing or
ill-typed field, malformed JSON or an invalid host name exits 2 and publishes
nothing.

  pinkie pub deploy.requested host=goliath
  pinkie pub deploy.requested host=goliath goal=boot build_on=target --json

Prints the event id, the stream that stored it and its sequence.`)
	cf := addClientFlags(fs, a)
	data := fs.String("data", "", "the event's data as a JSON `OBJECT`")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.parse(args); err != nil {
		return err
	}
	pos := fs.args()
	if len(pos) == 0 {
		return usagef("missing TYPE; publishable types: %s", strings.Join(publishable(), ", "))
	}
	set, err := schemas.Load()
	if err != nil {
		return err
	}
	e, subject, err := buildClientEvent(set, pos[0], pos[1:], *data, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := cf.connect(ctx, "pinkie pub")
	if err != nil {
		return err
	}
	defer c.Close()
	ack, err := c.Publish(ctx, subject, e)
	if err != nil {
		return err
	}
	res := pubResult{ID: e.ID(), Type: e.Type(), Subject: subject, Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}
	if *asJSON {
		return json.NewEncoder(a.stdout).Encode(res)
	}
	dup := ""
	if ack.Duplicate {
		dup = " (duplicate: already stored)"
	}
	fmt.Fprintf(a.stdout, "published %s on %s\nid %s, stream %s, seq %d%s\n", res.Type, subject, res.ID, res.Stream, res.Seq, dup)
	return nil
}

func publishable() []string { return events.KindNames(events.FromClient) }

// buildClientEvent builds and checks an event from the command line. Every
// problem is a usage error naming it.
func buildClientEvent(set *schemas.Set, typ string, kvs []string, dataJSON string, now time.Time) (events.Event, string, error) {
	k, ok := events.Lookup(typ)
	if !ok {
		return events.Event{}, "", usagef("unknown event type %q; publishable types: %s", typ, strings.Join(publishable(), ", "))
	}
	if k.Origin != events.FromClient {
		return events.Event{}, "", usagef("%s events are published by %s, not with pub; publishable types: %s", k.Name, originName(k.Origin), strings.Join(publishable(), ", "))
	}
	schema := set.Raw(k.Type())
	props, _ := schema["properties"].(map[string]any)
	data := map[string]any{}
	if dataJSON != "" {
		if key, dup := jsonRepeatedKey(dataJSON); dup {
			return events.Event{}, "", usagef("--data: key %q given twice", key)
		}
		dec := json.NewDecoder(strings.NewReader(dataJSON))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil {
			return events.Event{}, "", usagef("--data is not a JSON object: %v", err)
		}
		if dec.More() {
			return events.Event{}, "", usagef("--data holds more than one JSON value")
		}
	}
	seen := map[string]bool{}
	for _, kv := range kvs {
		key, val, ok := strings.Cut(kv, "=")
		if !ok || key == "" {
			return events.Event{}, "", usagef("argument %q: want key=value", kv)
		}
		if seen[key] {
			return events.Event{}, "", usagef("argument %q: key %q given twice", kv, key)
		}
		seen[key] = true
		p, known := props[key].(map[string]any)
		if !known {
			return events.Event{}, "", usagef("unknown field %q for %s; fields: %s", key, k.Name, strings.Join(sortedKeys(props), ", "))
		}
		v, err := typedValue(p, val)
		if err != nil {
			return events.Event{}, "", usagef("field %s=%q: %v", key, val, err)
		}
		data[key] = v
	}
	for key := range data {
		if _, known := props[key]; !known {
			return events.Event{}, "", usagef("unknown field %q for %s; fields: %s", key, k.Name, strings.Join(sortedKeys(props), ", "))
		}
	}
	if h, ok := data["host"].(string); ok {
		if err := events.ValidHost(h); err != nil {
			return events.Event{}, "", usagef("host: %v", err)
		}
	}
	if k.Name == "deploy.requested" {
		if _, ok := data["requested_by"]; !ok {
			data["requested_by"] = requester()
		}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return events.Event{}, "", usagef("encode data: %v", err)
	}
	if err := set.ValidateData(k.Type(), raw); err != nil {
		return events.Event{}, "", usagef("%v", err)
	}
	typed := k.New()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(typed); err != nil {
		return events.Event{}, "", usagef("%s data: %v", k.Name, err)
	}
	subject := k.HubSubject(typed)
	var opts []events.Option
	if h, ok := data["host"].(string); ok {
		opts = append(opts, events.WithSubject(h))
	}
	e, err := events.New(k, cliSourceHost(), "cli", now, typed, opts...)
	if err != nil {
		return events.Event{}, "", usagef("%v", err)
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

// requester names who publishes: user@host.
func requester() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	return name + "@" + shortHostname()
}

// cliSourceHost is the host part of a CLI event's source: this machine's
// short host name when it is a valid pinkie host name, "cli" otherwise.
func cliSourceHost() string {
	if h := shortHostname(); events.ValidHost(h) == nil {
		return h
	}
	return "cli"
}
