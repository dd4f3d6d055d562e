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
	"reflect"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/pinkiefleet/pinkie/events"
)

//go:embed *.json
var files embed.FS

// FS returns the schema files.
func FS() fs.FS { return files }

// Set is the schemas of every kind in the catalog. Each is compiled to a
// fast validator for pinkie's subset of JSON Schema; the full validator,
// which explains failures, is compiled on first need (it costs memory an
// agent should not spend up front).
type Set struct {
	fast map[string]*fastNode
	// envelope is, per type, a whole event whose data has the type's
	// schema (see envelopeNode).
	envelope map[string]*fastNode
	raw      map[string]map[string]any

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	byType   map[string]*jsonschema.Schema
}

const dateTimeSchemaID = "https://pinkie.dev/schemas/internal/date-time.json"

func newCompiler(raw map[string]map[string]any) (*jsonschema.Compiler, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	registerFormats(c)
	if err := c.AddResource(dateTimeSchemaID, map[string]any{"type": "string", "format": "date-time"}); err != nil {
		return nil, err
	}
	for _, doc := range raw {
		if err := c.AddResource(doc["$id"].(string), doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", doc["$id"], err)
		}
	}
	return c, nil
}

// Load reads the schema of every kind in events.Catalog. A kind without a
// schema file, or a schema whose $id is not the kind's, is an error.
func Load() (*Set, error) {
	s := &Set{fast: map[string]*fastNode{}, envelope: map[string]*fastNode{}, raw: map[string]map[string]any{}, byType: map[string]*jsonschema.Schema{}}
	kinds := events.Catalog()
	for _, k := range kinds {
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
		declare(m, reflect.TypeOf(k.New()).Elem())
		s.raw[k.Type()] = m
	}
	var dateTime *jsonschema.Schema
	for _, k := range kinds {
		if dateTime == nil {
			var err error
			if dateTime, err = s.compiled(dateTimeSchemaID); err != nil {
				return nil, err
			}
		}
		if f := fastCompile(s.raw[k.Type()], dateTime); f != nil {
			s.fast[k.Type()] = f
			s.envelope[k.Type()] = envelopeNode(f)
		} else if _, err := s.full(k.Type()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// envelopeNode is a structured-mode event whose data matches data: an
// object with exactly the attribute names pinkie writes (none twice, as
// the scanner refuses duplicate keys), "data" among them. The scanner
// applies the whole-payload rules throughout, so a payload it accepts
// passes WellFormed, and the value encoding/json reads as the event's data
// — the one key spelled "data", no other spelling of it being there —
// matches the schema.
func envelopeNode(data *fastNode) *fastNode {
	n := &fastNode{types: fastObject, noAdditional: true, required: []string{"data"}, minLen: -1, maxLen: -1, maxItems: -1,
		props: map[string]*fastNode{"data": data}}
	for _, a := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"} {
		n.props[a] = nil // any value: events.Decode checks the attributes
	}
	return n
}

// full returns the full validator of typ, compiling it on first use.
func (s *Set) full(typ string) (*jsonschema.Schema, error) {
	doc, ok := s.raw[typ]
	if !ok {
		return nil, fmt.Errorf("no schema for type %q", typ)
	}
	return s.compiled(doc["$id"].(string))
}

func (s *Set) compiled(id string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.byType[id]; ok {
		return sch, nil
	}
	if s.compiler == nil {
		c, err := newCompiler(s.raw)
		if err != nil {
			return nil, err
		}
		s.compiler = c
	}
	sch, err := s.compiler.Compile(id)
	if err != nil {
		return nil, fmt.Errorf("compile schema %s: %w", id, err)
	}
	s.byType[id] = sch
	return sch, nil
}

// Raw returns the parsed schema document of a type, for tools that need to
// read it (the CLI uses it to type key=value fields).
func (s *Set) Raw(typ string) map[string]any { return s.raw[typ] }

// ErrInvalid marks data that does not match its schema.
var ErrInvalid = errors.New("does not match its schema")

// ValidateData checks an event's data (JSON) against the schema of typ.
// The error names the offending fields.
func (s *Set) ValidateData(typ string, data []byte) error {
	if _, ok := s.raw[typ]; !ok {
		return fmt.Errorf("no schema for type %q", typ)
	}
	// The fast path answers for valid data; invalid data goes on to the
	// full validator, which says why.
	if f := s.fast[typ]; f != nil && f.validBytes(data) {
		return nil
	}
	if err := WellFormed(data); err != nil {
		return fmt.Errorf("%s data: %w", typ, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s data is not JSON: %w", typ, err)
	}
	sch, err := s.full(typ)
	if err != nil {
		return err
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s data %w: %s", typ, ErrInvalid, describe(err))
	}
	return nil
}

// Validate decodes a structured-mode event and checks it and its data,
// and the whole payload against the rules of hygiene.go.
func (s *Set) Validate(payload []byte) (events.Event, events.Kind, error) {
	// One scan of the payload checks both the whole-payload rules and the
	// data's schema (the hub does this for every event). It answers only
	// "valid": anything else goes the long way, which says why.
	if e, k, err := events.Decode(payload); err == nil {
		if env := s.envelope[e.Type()]; env != nil && env.validBytes(payload) {
			return e, k, nil
		}
	}
	return s.validateSteps(payload)
}

// validateSteps is Validate one check after the other: the whole-payload
// rules, the envelope, the data's schema; the first to fail says why.
func (s *Set) validateSteps(payload []byte) (events.Event, events.Kind, error) {
	if err := WellFormed(payload); err != nil && len(bytes.TrimSpace(payload)) > 0 {
		return events.Event{}, events.Kind{}, fmt.Errorf("%w: %w", events.ErrDecode, err)
	}
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
