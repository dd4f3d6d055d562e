// Package schemas holds the JSON Schema of every pinkie event type (one
// file per type, embedded in the binary) and validates event data against
// them. The hub validates every event on ingest; agents and the CLI validate
// before publishing, so a mistake is reported where it is made.
package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/pinkiefleet/pinkie/events"
)

//go:embed *.json
var files embed.FS

// FS returns the schema files.
func FS() fs.FS { return files }

// Set is the compiled schemas of every kind in the catalog.
type Set struct {
	byType map[string]*jsonschema.Schema
	fast   map[string]*fastNode
	raw    map[string]map[string]any
}

// Load compiles the schema of every kind in events.Catalog. A kind without
// a schema file, or a schema whose $id is not the kind's, is an error.
func Load() (*Set, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s := &Set{byType: map[string]*jsonschema.Schema{}, fast: map[string]*fastNode{}, raw: map[string]map[string]any{}}
	if err := c.AddResource("https://pinkie.dev/schemas/internal/date-time.json", map[string]any{"type": "string", "format": "date-time"}); err != nil {
		return nil, err
	}
	dateTime, err := c.Compile("https://pinkie.dev/schemas/internal/date-time.json")
	if err != nil {
		return nil, err
	}
	for _, k := range events.Catalog() {
		b, err := files.ReadFile(k.SchemaFile())
		if err != nil {
			return nil, fmt.Errorf("schema for %s: %w", k.Type(), err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("parse schema %s: %w", k.SchemaFile(), err)
		}
		m, ok := doc.(map[string]any)
		if !ok || m["$id"] != k.SchemaID() {
			return nil, fmt.Errorf("schema %s: $id is %v, want %s", k.SchemaFile(), m["$id"], k.SchemaID())
		}
		if err := c.AddResource(k.SchemaID(), doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", k.SchemaFile(), err)
		}
		sch, err := c.Compile(k.SchemaID())
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", k.SchemaFile(), err)
		}
		s.byType[k.Type()] = sch
		s.raw[k.Type()] = m
		if f := fastCompile(doc, dateTime); f != nil {
			s.fast[k.Type()] = f
		}
	}
	return s, nil
}

// Raw returns the parsed schema document of a type, for tools that need to
// read it (the CLI uses it to type key=value fields).
func (s *Set) Raw(typ string) map[string]any { return s.raw[typ] }

// ErrInvalid marks data that does not match its schema.
var ErrInvalid = errors.New("does not match its schema")

// ValidateData checks an event's data (JSON) against the schema of typ.
// The error names the offending fields.
func (s *Set) ValidateData(typ string, data []byte) error {
	sch, ok := s.byType[typ]
	if !ok {
		return fmt.Errorf("no schema for type %q", typ)
	}
	// The fast path answers for valid data; invalid data goes on to the
	// full validator, which says why.
	if f := s.fast[typ]; f != nil {
		if v, err := fastDecode(data); err == nil && f.valid(v) {
			return nil
		}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s data is not JSON: %w", typ, err)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s data %w: %s", typ, ErrInvalid, describe(err))
	}
	return nil
}

// Validate decodes a structured-mode event and checks it and its data.
func (s *Set) Validate(payload []byte) (events.Event, events.Kind, error) {
	e, k, err := events.Decode(payload)
	if err != nil {
		return e, k, err
	}
	if err := s.ValidateData(e.Type(), e.Data()); err != nil {
		return e, k, err
	}
	return e, k, nil
}

var printer = message.NewPrinter(language.English)

// describe turns a validation error into one line per failing field, the
// innermost causes only, e.g. "/counter: minimum: got 0, want 1".
func describe(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	var lines []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			loc := "/" + strings.Join(e.InstanceLocation, "/")
			lines = append(lines, loc+": "+e.ErrorKind.LocalizedString(printer))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return strings.Join(lines, "; ")
}
