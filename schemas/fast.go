package schemas

import (
	"encoding/json"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pinkiefleet/pinkie/events"
)

// fastNode is a compiled schema for the subset of JSON Schema pinkie's
// schemas use. It answers only "valid or not", quickly; when it says not,
// the full validator runs to explain why. A schema using any keyword
// outside the subset is not compiled (fastCompile returns nil) and the full
// validator does all the work for that type. A differential test keeps the
// two in agreement.
type fastNode struct {
	types          uint8 // bit set of fast* types; 0 means any
	props          map[string]*fastNode
	required       []string
	noAdditional   bool
	additional     *fastNode
	propertyNames  *fastNode
	minProperties  int
	min, max       *float64
	exMin, exMax   *float64
	minLen, maxLen int // -1 when unset
	pattern        *regexp.Regexp
	enum           []any
	dateTime       bool
	name, text     bool      // format name or text (hygiene.go)
	intFormat      *intRange // format int64, uint64, … (hygiene.go)
	items          *fastNode
	minItems       int
	maxItems       int // -1 when unset
	dateTimeSchema *jsonschema.Schema
}

const (
	fastObject uint8 = 1 << iota
	fastArray
	fastString
	fastInteger
	fastNumber
	fastBoolean
	fastNull
)

var fastTypeBits = map[string]uint8{
	"object": fastObject, "array": fastArray, "string": fastString, "integer": fastInteger,
	"number": fastNumber, "boolean": fastBoolean, "null": fastNull,
}

// fastAnnotations are keywords that do not affect validation.
var fastAnnotations = map[string]bool{"$schema": true, "$id": true, "$comment": true, "title": true, "description": true, "examples": true, "default": true, "deprecated": true, "readOnly": true, "writeOnly": true}

func fastNum(v any) (float64, bool) { // a JSON number, or a bound from a schema
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// fastCompile compiles doc, or returns nil if it uses anything outside
// the subset.
func fastCompile(doc any, dateTime *jsonschema.Schema) *fastNode {
	m, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	n := &fastNode{minLen: -1, maxLen: -1, maxItems: -1, dateTimeSchema: dateTime}
	for k, v := range m {
		switch {
		case fastAnnotations[k]:
		case k == "type":
			switch t := v.(type) {
			case string:
				b, ok := fastTypeBits[t]
				if !ok {
					return nil
				}
				n.types |= b
			case []any:
				for _, x := range t {
					s, _ := x.(string)
					b, ok := fastTypeBits[s]
					if !ok {
						return nil
					}
					n.types |= b
				}
			default:
				return nil
			}
		case k == "properties":
			pm, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			n.props = map[string]*fastNode{}
			for name, sub := range pm {
				c := fastCompile(sub, dateTime)
				if c == nil {
					return nil
				}
				n.props[name] = c
			}
		case k == "required":
			l, ok := v.([]any)
			if !ok {
				return nil
			}
			for _, x := range l {
				s, ok := x.(string)
				if !ok {
					return nil
				}
				n.required = append(n.required, s)
			}
		case k == "additionalProperties":
			switch a := v.(type) {
			case bool:
				n.noAdditional = !a
			default:
				if n.additional = fastCompile(a, dateTime); n.additional == nil {
					return nil
				}
			}
		case k == "propertyNames":
			if n.propertyNames = fastCompile(v, dateTime); n.propertyNames == nil {
				return nil
			}
		case k == "items":
			if n.items = fastCompile(v, dateTime); n.items == nil {
				return nil
			}
		case k == "minimum" || k == "maximum" || k == "exclusiveMinimum" || k == "exclusiveMaximum":
			f, ok := fastNum(v)
			if !ok {
				return nil
			}
			switch k {
			case "minimum":
				n.min = &f
			case "maximum":
				n.max = &f
			case "exclusiveMinimum":
				n.exMin = &f
			default:
				n.exMax = &f
			}
		case k == "minLength" || k == "maxLength" || k == "minItems" || k == "maxItems" || k == "minProperties":
			f, ok := fastNum(v)
			if !ok || f < 0 || f != math.Trunc(f) {
				return nil
			}
			switch k {
			case "minLength":
				n.minLen = int(f)
			case "maxLength":
				n.maxLen = int(f)
			case "minItems":
				n.minItems = int(f)
			case "maxItems":
				n.maxItems = int(f)
			default:
				n.minProperties = int(f)
			}
		case k == "pattern":
			s, ok := v.(string)
			if !ok {
				return nil
			}
			re, err := regexp.Compile(s)
			if err != nil {
				return nil
			}
			n.pattern = re
		case k == "enum":
			l, ok := v.([]any)
			if !ok {
				return nil
			}
			for _, x := range l {
				switch x.(type) {
				case string, bool, nil:
				default:
					return nil // numbers and objects in enums: leave to the full validator
				}
			}
			n.enum = l
		case k == "format":
			f, _ := v.(string)
			switch r, isInt := parseIntFormat(f); {
			case f == "date-time" && dateTime != nil:
				n.dateTime = true
			case f == "name":
				n.name = true
			case f == "text":
				n.text = true
			case isInt:
				n.intFormat = &r
			default:
				return nil
			}
		default:
			return nil
		}
	}
	return n
}

// validString checks a string's value; plain says it is printable ASCII.
func (n *fastNode) validString(x []byte, plain bool) bool {
	if n.types != 0 && n.types&fastString == 0 {
		return false
	}
	if n.enum != nil {
		found := false
		for _, e := range n.enum {
			if s, ok := e.(string); ok && s == string(x) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if n.minLen >= 0 || n.maxLen >= 0 {
		l := len(x)
		if !plain {
			l = utf8.RuneCount(x)
		}
		if (n.minLen >= 0 && l < n.minLen) || (n.maxLen >= 0 && l > n.maxLen) {
			return false
		}
	}
	if n.pattern != nil && !n.pattern.Match(x) {
		return false
	}
	if !plain && ((n.name && events.CheckName(string(x)) != nil) || (n.text && events.CheckText(string(x)) != nil)) {
		return false
	}
	if n.dateTime && n.dateTimeSchema.Validate(string(x)) != nil {
		return false
	}
	return true
}

func (n *fastNode) validBool(x bool) bool {
	if n.types != 0 && n.types&fastBoolean == 0 {
		return false
	}
	if n.enum != nil {
		for _, e := range n.enum {
			if b, ok := e.(bool); ok && b == x {
				return true
			}
		}
		return false
	}
	return true
}

func (n *fastNode) validNull() bool {
	if n.types != 0 && n.types&fastNull == 0 {
		return false
	}
	if n.enum != nil {
		for _, e := range n.enum {
			if e == nil {
				return true
			}
		}
		return false
	}
	return true
}

func (n *fastNode) validNumber(x json.Number) bool {
	f, err := strconv.ParseFloat(string(x), 64)
	if err != nil || math.IsInf(f, 0) {
		return false // out of float64's range: the full validator decides
	}
	t := fastNumber
	if !strings.ContainsAny(string(x), ".eE") || f == math.Trunc(f) {
		t |= fastInteger
	}
	if n.types != 0 && n.types&t == 0 {
		return false
	}
	if n.enum != nil { // numbers are never in a fast enum
		return false
	}
	if n.intFormat != nil && n.intFormat.check(string(x)) != nil {
		return false
	}
	return (n.min == nil || fastCmp(x, f, *n.min) >= 0) && (n.max == nil || fastCmp(x, f, *n.max) <= 0) &&
		(n.exMin == nil || fastCmp(x, f, *n.exMin) > 0) && (n.exMax == nil || fastCmp(x, f, *n.exMax) < 0)
}

// fastBelow and friends compare a JSON number with a bound; when the float
// comparison cannot tell (equal after rounding), they compare exactly.
func fastCmp(v json.Number, f, bound float64) int {
	switch {
	case f < bound:
		return -1
	case f > bound:
		return 1
	}
	if r, ok := new(big.Rat).SetString(string(v)); ok {
		b := new(big.Rat)
		b.SetFloat64(bound)
		return r.Cmp(b)
	}
	return 0
}
