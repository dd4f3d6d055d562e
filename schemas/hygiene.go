package schemas

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pinkiefleet/pinkie/events"
)

// Hygiene: rules every pinkie event obeys beyond what its schema file
// says, so that nothing a host sends can break a reader.
//
// Whole payload (envelope and data), I-JSON (RFC 7493) and a little more:
// valid UTF-8 with no unpaired surrogate escapes, no key twice in one
// object, every number finite as a 64-bit float, nesting at most 32
// deep, no control character
// (events.IsControl) in a key, no control character other than tab and
// newline in any string.
//
// Per field, declared by the schema and the Go type rather than
// remembered: Load adds to each schema
//   - "format": "name" to every string without a format or an enum: no
//     control character at all. A schema marks free text (logs, reasons,
//     descriptions) with "format": "text", which allows tab and newline;
//   - "format": "int64", "uint64", … to every integer whose Go field is an
//     integer of that size: the value must be written as an integer (no
//     fraction, no exponent, as encoding/json insists) and fit the type.
//
// Both validators understand these formats, so the byte scanner and the
// full validator keep agreeing (TestFastValidatorAgreesWithFull).

// declare adds the formats a schema node's Go type implies (typ may be
// nil where the schema has no Go counterpart).
func declare(node map[string]any, typ reflect.Type) {
	for typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ == reflect.TypeOf(time.Time{}) {
		typ = nil
	}
	types := schemaTypes(node)
	_, hasFormat := node["format"]
	_, hasEnum := node["enum"]
	if types["string"] && !hasFormat && !hasEnum {
		node["format"] = "name"
	}
	if types["integer"] && !hasFormat && typ != nil {
		if f, ok := intFormat(typ); ok {
			node["format"] = f
		}
	}
	elem := func() reflect.Type {
		if typ != nil && (typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map) {
			return typ.Elem()
		}
		return nil
	}
	if props, ok := node["properties"].(map[string]any); ok {
		fields := jsonFields(typ)
		for name, sub := range props {
			if m, ok := sub.(map[string]any); ok {
				declare(m, fields[name])
			}
		}
	}
	if m, ok := node["items"].(map[string]any); ok {
		declare(m, elem())
	}
	if m, ok := node["additionalProperties"].(map[string]any); ok {
		declare(m, elem())
	}
	if m, ok := node["propertyNames"].(map[string]any); ok {
		declare(m, nil)
	}
}

func schemaTypes(node map[string]any) map[string]bool {
	out := map[string]bool{}
	switch t := node["type"].(type) {
	case string:
		out[t] = true
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok {
				out[s] = true
			}
		}
	}
	return out
}

// jsonFields maps a struct's JSON field names to their Go types.
func jsonFields(typ reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	if typ == nil || typ.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// intFormat is the format of a Go integer type: "int64", "uint32", ….
func intFormat(typ reflect.Type) (string, bool) {
	switch typ.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int" + strconv.Itoa(typ.Bits()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "uint" + strconv.Itoa(typ.Bits()), true
	}
	return "", false
}

// intRange is a parsed integer format.
type intRange struct {
	signed bool
	bits   int
}

func parseIntFormat(f string) (intRange, bool) {
	r := intRange{signed: !strings.HasPrefix(f, "uint")}
	n := strings.TrimPrefix(strings.TrimPrefix(f, "u"), "int")
	if !strings.HasPrefix(f, "int") && !strings.HasPrefix(f, "uint") {
		return r, false
	}
	switch n {
	case "8", "16", "32", "64":
		r.bits, _ = strconv.Atoi(n)
		return r, true
	}
	return r, false
}

// check says why the JSON number literal does not fit, or nil.
func (r intRange) check(lit string) error {
	if strings.ContainsAny(lit, ".eE") {
		return fmt.Errorf("%s is not written as an integer", lit)
	}
	var err error
	if r.signed {
		_, err = strconv.ParseInt(lit, 10, r.bits)
	} else {
		if strings.HasPrefix(lit, "-") {
			return fmt.Errorf("%s is negative; the field is unsigned", lit)
		}
		_, err = strconv.ParseUint(lit, 10, r.bits)
	}
	if err != nil {
		kind := "int"
		if !r.signed {
			kind = "uint"
		}
		return fmt.Errorf("%s does not fit in %s%d", lit, kind, r.bits)
	}
	return nil
}

// registerFormats teaches the full validator pinkie's formats.
func registerFormats(c *jsonschema.Compiler) {
	str := func(check func(string) error) func(any) error {
		return func(v any) error {
			if s, ok := v.(string); ok {
				return check(s)
			}
			return nil
		}
	}
	c.RegisterFormat(&jsonschema.Format{Name: "name", Validate: str(events.CheckName)})
	c.RegisterFormat(&jsonschema.Format{Name: "text", Validate: str(events.CheckText)})
	for _, sign := range []string{"int", "uint"} {
		for _, bits := range []string{"8", "16", "32", "64"} {
			r, _ := parseIntFormat(sign + bits)
			c.RegisterFormat(&jsonschema.Format{Name: sign + bits, Validate: func(v any) error {
				if n, ok := v.(json.Number); ok {
					return r.check(string(n))
				}
				return nil
			}})
		}
	}
}

// ErrMalformed marks a payload that breaks the whole-payload rules
// (invalid UTF-8, a repeated key, a number beyond float64, a control
// character) or is not JSON at all.
var ErrMalformed = fmt.Errorf("malformed JSON")

// WellFormed checks the whole-payload rules on b and says, with the byte
// offset, what is wrong.
func WellFormed(b []byte) error {
	s := fastScanner{b: b}
	s.ws()
	ok := s.value(nil, 0)
	s.ws()
	if ok && s.i == len(s.b) {
		return nil
	}
	if s.why != "" {
		return fmt.Errorf("%w: %s (byte %d): %s", ErrMalformed, s.where(), s.at, s.why)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return fmt.Errorf("%w: not JSON at byte %d", ErrMalformed, s.i)
}
