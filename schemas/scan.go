package schemas

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The byte scanner validates JSON against a fastNode without building a
// value: it walks the bytes once, allocating nothing for plain ASCII. It
// is sound — when it says valid, the data is valid JSON and matches the
// schema — and says "not valid" for anything it does not handle exactly
// (duplicate keys, nesting deeper than fastMaxDepth), leaving the verdict
// to the full validator. TestFastValidatorAgreesWithFull and
// FuzzFastValidator hold it to that.

const fastMaxDepth = 32

type fastScanner struct {
	b []byte
	i int
}

// validBytes reports whether data is one JSON value matching n.
func (n *fastNode) validBytes(data []byte) bool {
	s := fastScanner{b: data}
	s.ws()
	if !s.value(n, 0) {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *fastScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value checks the value at the cursor against n (nil: any value).
func (s *fastScanner) value(n *fastNode, depth int) bool {
	if depth > fastMaxDepth || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(n, depth)
	case c == '[':
		return s.array(n, depth)
	case c == '"':
		raw, str, ok := s.str()
		if !ok {
			return false
		}
		if n == nil {
			return true
		}
		if str == nil {
			return n.validString(string(raw))
		}
		return n.validString(*str)
	case c == 't':
		return s.literal("true") && (n == nil || n.validBool(true))
	case c == 'f':
		return s.literal("false") && (n == nil || n.validBool(false))
	case c == 'n':
		return s.literal("null") && (n == nil || n.validNull())
	case c == '-' || (c >= '0' && c <= '9'):
		start, ok := s.number()
		return ok && (n == nil || n.validNumber(json.Number(s.b[start:s.i])))
	}
	return false
}

func (s *fastScanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return false
	}
	s.i += len(lit)
	return true
}

// number scans a number per RFC 8259's grammar and returns where it starts.
func (s *fastScanner) number() (int, bool) {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return 0, false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return 0, false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	return start, true
}

// str scans a string. Plain ASCII without escapes comes back as raw bytes
// (no allocation); anything else is decoded by encoding/json (escapes, and
// invalid UTF-8 becomes what the full validator sees) into str.
func (s *fastScanner) str() (raw []byte, str *string, ok bool) {
	start := s.i
	s.i++
	plain := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if plain {
				return s.b[start+1 : s.i-1], nil, true
			}
			var out string
			if err := json.Unmarshal(s.b[start:s.i], &out); err != nil {
				return nil, nil, false
			}
			return nil, &out, true
		case c == '\\':
			plain = false
			s.i += 2
			continue
		case c < 0x20:
			return nil, nil, false
		case c >= utf8.RuneSelf:
			plain = false
		}
		s.i++
	}
	return nil, nil, false
}

func (s *fastScanner) object(n *fastNode, depth int) bool {
	if n != nil && ((n.types != 0 && n.types&fastObject == 0) || n.enum != nil) {
		return false // enums hold only scalars (fastCompile makes sure)
	}
	s.i++ // {
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	var found uint64 // bit i: n.required[i] present
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return n == nil || n.objectDone(0, 0)
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		raw, dec, ok := s.str()
		if !ok {
			return false
		}
		if dec != nil {
			raw = []byte(*dec)
		}
		for _, k := range seen {
			if bytes.Equal(k, raw) {
				return false // duplicate key: let the full validator decide
			}
		}
		seen = append(seen, raw)
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		var sub *fastNode
		if n != nil {
			if n.propertyNames != nil && !n.propertyNames.validString(string(raw)) {
				return false
			}
			if p, ok := n.props[string(raw)]; ok {
				sub = p
			} else if n.noAdditional {
				return false
			} else {
				sub = n.additional
			}
			for i, r := range n.required {
				if i < 64 && r == string(raw) {
					found |= 1 << i
				}
			}
		}
		if !s.value(sub, depth+1) {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return n == nil || n.objectDone(len(seen), found)
		default:
			return false
		}
	}
}

// objectDone checks what can only be known at the end of an object.
func (n *fastNode) objectDone(keys int, found uint64) bool {
	if len(n.required) > 64 {
		return false
	}
	if keys < n.minProperties {
		return false
	}
	return found == (uint64(1)<<len(n.required))-1 || (len(n.required) == 64 && found == ^uint64(0))
}

func (s *fastScanner) array(n *fastNode, depth int) bool {
	if n != nil && ((n.types != 0 && n.types&fastArray == 0) || n.enum != nil) {
		return false
	}
	s.i++ // [
	var items *fastNode
	if n != nil {
		items = n.items
	}
	count := 0
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return n == nil || n.arrayDone(0)
	}
	for {
		s.ws()
		if !s.value(items, depth+1) {
			return false
		}
		count++
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return n == nil || n.arrayDone(count)
		default:
			return false
		}
	}
}

func (n *fastNode) arrayDone(count int) bool {
	return count >= n.minItems && (n.maxItems < 0 || count <= n.maxItems)
}
