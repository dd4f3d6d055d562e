package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

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

// build assembles an SDK event from checked attributes.
func build(id, source, typ, subject string, t time.Time, schema string, data []byte) (Event, error) {
	src := types.ParseURIRef(source)
	if src == nil {
		return Event{}, fmt.Errorf("source %q is not a URI reference", source)
	}
	ds := types.ParseURI(schema)
	if ds == nil {
		return Event{}, fmt.Errorf("dataschema %q is not a URI", schema)
	}
	ct := event.ApplicationJSON
	ctx := &event.EventContextV1{ID: id, Source: *src, Type: typ, DataContentType: &ct,
		Time: &types.Timestamp{Time: t}, DataSchema: ds}
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
	w := wireEvent{
		SpecVersion: e.SpecVersion(), ID: e.ID(), Source: e.Source(), Type: e.Type(), Subject: e.Subject(),
		Time: e.Time().UTC().Format(time.RFC3339Nano), DataContentType: e.DataContentType(),
		DataSchema: e.DataSchema(), Data: e.Data(),
	}
	if e.DataBase64 {
		return nil, fmt.Errorf("event %s carries base64 data; pinkie events carry JSON", e.ID())
	}
	return json.Marshal(w)
}

// decodeWire parses structured-mode JSON strictly: unknown attributes
// (pinkie defines no extensions) and data_base64 are refused.
func decodeWire(b []byte) (Event, error) {
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Event{}, err
	}
	if dec.More() {
		return Event{}, fmt.Errorf("trailing data after the event")
	}
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
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Event{}, fmt.Errorf("time %q: %v", w.Time, err)
	}
	if w.DataContentType != event.ApplicationJSON {
		return Event{}, fmt.Errorf("datacontenttype %q, want application/json", w.DataContentType)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, w.Data); err != nil {
		return Event{}, fmt.Errorf("data: %v", err)
	}
	return build(w.ID, w.Source, w.Type, w.Subject, t, w.DataSchema, compact.Bytes())
}
