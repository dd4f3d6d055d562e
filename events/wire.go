package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// wireEvent is the structured-mode JSON of a pinkie event: CloudEvents 1.0
// with exactly the attributes pinkie uses. Encode and Decode go through it
// rather than the SDK's generic codec, which costs several times as much
// per event; a test checks both codecs read each other's output alike.
type wireEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	DataSchema      string          `json:"dataschema"`
	Data            json.RawMessage `json:"data"`
}

// urlCache holds what url.Parse made of the sources and dataschemas seen
// (a fleet has few), up to maxCachedURLs of them and none longer than
// maxCachedURLLen (what a sender makes up cannot grow it past about a
// MiB): parsing both costs more than the rest of an event's envelope.
var urlCache struct {
	m sync.Map // string -> *url.URL
	n atomic.Int64
}

const (
	maxCachedURLs   = 4096
	maxCachedURLLen = 256
)

// parseURL is url.Parse for a non-empty string, cached. A url.URL copied
// is the same as one parsed again (its one pointer, User, is immutable).
func parseURL(s string) (url.URL, bool) {
	if s == "" {
		return url.URL{}, false
	}
	if u, ok := urlCache.m.Load(s); ok {
		return *u.(*url.URL), true
	}
	u, err := url.Parse(s)
	if err != nil {
		return url.URL{}, false
	}
	if len(s) <= maxCachedURLLen && urlCache.n.Add(1) <= maxCachedURLs {
		// Parsed again from a copy: u's strings are slices of s, which
		// may be part of a larger string the cache must not keep.
		c := strings.Clone(s)
		if cu, err := url.Parse(c); err == nil {
			urlCache.m.Store(c, cu)
		}
	}
	return *u, true
}

// build assembles an SDK event from checked attributes.
func build(id, source, typ, subject string, t time.Time, schema string, data []byte) (Event, error) {
	// As types.ParseURIRef and types.ParseURI, from a cache.
	src, ok := parseURL(source)
	if !ok {
		return Event{}, fmt.Errorf("source %q is not a URI reference", source)
	}
	ds, ok := parseURL(schema)
	if !ok {
		return Event{}, fmt.Errorf("dataschema %q is not a URI", schema)
	}
	ct := event.ApplicationJSON
	ctx := &event.EventContextV1{ID: id, Source: types.URIRef{URL: src}, Type: typ, DataContentType: &ct,
		Time: &types.Timestamp{Time: t}, DataSchema: &types.URI{URL: ds}}
	if subject != "" {
		s := subject
		ctx.Subject = &s
	}
	return Event{Context: ctx, DataEncoded: data}, nil
}

func encodeWire(e Event) ([]byte, error) {
	if e.Context == nil {
		return nil, fmt.Errorf("event has no context")
	}
	if e.DataBase64 {
		return nil, fmt.Errorf("event %s carries base64 data; pinkie events carry JSON", e.ID())
	}
	data := e.Data()
	if len(data) == 0 || !json.Valid(data) {
		return nil, fmt.Errorf("event %s: data is not JSON", e.ID())
	}
	// Written by hand: the attributes are a fixed set, and this runs for
	// every event an agent stores.
	b := make([]byte, 0, 256+len(data))
	b = append(b, `{"specversion":`...)
	b = appendJSONString(b, e.SpecVersion())
	b = append(b, `,"id":`...)
	b = appendJSONString(b, e.ID())
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.Source())
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.Type())
	if sub := e.Subject(); sub != "" {
		b = append(b, `,"subject":`...)
		b = appendJSONString(b, sub)
	}
	b = append(b, `,"time":`...)
	b = appendJSONString(b, e.Time().UTC().Format(time.RFC3339Nano))
	b = append(b, `,"datacontenttype":`...)
	b = appendJSONString(b, e.DataContentType())
	b = append(b, `,"dataschema":`...)
	b = appendJSONString(b, e.DataSchema())
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// does (HTML characters and U+2028/U+2029 included).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// decodeWire parses structured-mode JSON strictly: unknown attributes
// (pinkie defines no extensions) and data_base64 are refused.
func decodeWire(b []byte) (Event, error) {
	w, ok := parseWireFast(b)
	if !ok {
		var err error
		if w, err = parseWireStd(b); err != nil {
			return Event{}, err
		}
	}
	return checkWire(w)
}

// parseWireStd is encoding/json's strict reading of an envelope: one JSON
// object, unknown attributes refused, nothing but white space after it.
// parseWireFast answers for the plain envelopes pinkie writes and hands
// everything else here, so this decides (and words the error) whenever
// the input is anything unusual.
func parseWireStd(b []byte) (wireEvent, error) {
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return wireEvent{}, err
	}
	if dec.More() {
		return wireEvent{}, fmt.Errorf("trailing data after the event")
	}
	return w, nil
}

// checkWire checks a parsed envelope's attributes and builds the event.
func checkWire(w wireEvent) (Event, error) {
	switch {
	case w.SpecVersion != event.CloudEventsVersionV1:
		return Event{}, fmt.Errorf("specversion %q, want 1.0", w.SpecVersion)
	case w.ID == "":
		return Event{}, fmt.Errorf("id: MUST be a non-empty string")
	case w.Source == "":
		return Event{}, fmt.Errorf("source: REQUIRED but MISSING")
	case w.Type == "":
		return Event{}, fmt.Errorf("type: MUST be a non-empty string")
	case w.Time == "":
		return Event{}, fmt.Errorf("no time")
	case len(w.Data) == 0 || string(w.Data) == "null":
		return Event{}, fmt.Errorf("no data")
	}
	for _, a := range []struct{ name, v string }{{"id", w.ID}, {"source", w.Source}, {"type", w.Type}, {"subject", w.Subject}, {"dataschema", w.DataSchema}} {
		if err := CheckName(a.v); err != nil {
			return Event{}, fmt.Errorf("%s %q: %v", a.name, a.v, err)
		}
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Event{}, fmt.Errorf("time %q: %v", w.Time, err)
	}
	if w.DataContentType != event.ApplicationJSON {
		return Event{}, fmt.Errorf("datacontenttype %q, want application/json", w.DataContentType)
	}
	// The decoder has checked that data is well-formed JSON.
	return build(w.ID, w.Source, w.Type, w.Subject, t, w.DataSchema, []byte(w.Data))
}
