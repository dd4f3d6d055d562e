package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/pinkiefleet/pinkie/events"
)

// The byte scanner validates JSON against a fastNode without building a
// value: it walks the bytes once, allocating nothing for plain ASCII. It
// is sound — when it says valid, the data is valid JSON and matches the
// schema — and it applies the whole-payload rules of hygiene.go itself:
// when one of them fails it says which and where (why, at), so the
// caller can report it without decoding. TestFastValidatorAgreesWithFull
// and FuzzFastValidator hold it to both.

const fastMaxDepth = 32

type fastScanner struct {
	b []byte
	i int
	// why and at describe the first broken whole-payload rule; path is
	// where, innermost key or index first (filled in on the way out).
	why  string
	at   int
	path []string
}

// where is the JSON pointer of the broken rule, e.g. /failed/0/name.
func (s *fastScanner) where() string {
	var b strings.Builder
	for i := len(s.path) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(s.path[i]))
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// fail records a broken whole-payload rule and returns false.
func (s *fastScanner) fail(at int, format string, args ...any) bool {
	if s.why == "" {
		s.why, s.at = fmt.Sprintf(format, args...), at
	}
	return false
}

// validBytes reports whether data is one JSON value matching n.
func (n *fastNode) validBytes(data []byte) bool {
	s := fastScanner{b: data}
	return s.whole(n)
}

func (s *fastScanner) whole(n *fastNode) bool {
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
	if depth > fastMaxDepth {
		return s.fail(s.i, "nested deeper than %d levels", fastMaxDepth)
	}
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(n, depth)
	case c == '[':
		return s.array(n, depth)
	case c == '"':
		start := s.i
		str, plain, ok := s.str()
		if !ok {
			return false
		}
		if !plain {
			if err := events.CheckText(string(str)); err != nil {
				return s.fail(start, "%v of the string", err)
			}
		}
		return n == nil || n.validString(str, plain)
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
		return start, s.finite(start)
	}
	if s.i-start > 300 {
		return start, s.finite(start)
	}
	return start, true
}

// finite checks that the number from start to the cursor is within
// float64's range (only a number with an exponent or hundreds of digits
// can be beyond it).
func (s *fastScanner) finite(start int) bool {
	lit := s.b[start:s.i]
	if f, _ := strconv.ParseFloat(string(lit), 64); math.IsInf(f, 0) {
		if len(lit) > 40 {
			lit = append(lit[:37:37], "..."...)
		}
		return s.fail(start, "number %s is out of range of a 64-bit float", lit)
	}
	return true
}

// str scans a string and returns its value. Without escapes the value is
// the bytes between the quotes (no allocation); plain says they are all
// printable ASCII, so no control character can be in them.
func (s *fastScanner) str() (val []byte, plain bool, ok bool) {
	start := s.i
	s.i++
	plain = true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start+1 : s.i-1], plain, true
		case c == '\\':
			val, ok = s.strEscaped(start)
			return val, false, ok
		case c < 0x20:
			return nil, false, false
		case c == 0x7f:
			plain = false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false, s.fail(s.i, "invalid UTF-8")
			}
			plain = false
			s.i += size
			continue
		}
		s.i++
	}
	return nil, false, false
}

// strEscaped decodes a string with escapes, from its opening quote at
// start; the cursor is at the first backslash.
func (s *fastScanner) strEscaped(start int) ([]byte, bool) {
	out := append([]byte(nil), s.b[start+1:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return out, true
		case c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, s.fail(s.i, "invalid UTF-8")
			}
			out = append(out, s.b[s.i:s.i+size]...)
			s.i += size
		case c != '\\':
			out = append(out, c)
			s.i++
		default:
			if s.i+1 >= len(s.b) {
				return nil, false
			}
			if e, ok := fastUnescape[s.b[s.i+1]]; ok {
				out = append(out, e)
				s.i += 2
				continue
			}
			if s.b[s.i+1] != 'u' {
				return nil, false
			}
			at := s.i
			r, ok := s.hex4(s.i + 2)
			if !ok {
				return nil, false
			}
			s.i += 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if r < 0xdc00 && s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					r2, ok = s.hex4(s.i + 2)
				}
				if !ok || r2 < 0xdc00 || r2 > 0xdfff {
					return nil, s.fail(at, "unpaired UTF-16 surrogate escape %s", s.b[at:at+6])
				}
				r = utf16.DecodeRune(r, r2)
				s.i += 6
			}
			out = utf8.AppendRune(out, r)
		}
	}
	return nil, false
}

var fastUnescape = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// hex4 reads four hex digits at i.
func (s *fastScanner) hex4(i int) (rune, bool) {
	if i+4 > len(s.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.b[i:i+4]), 16, 32)
	return rune(v), err == nil
}

func (s *fastScanner) object(n *fastNode, depth int) bool {
	if n != nil && ((n.types != 0 && n.types&fastObject == 0) || n.enum != nil) {
		return false // enums hold only scalars (fastCompile makes sure)
	}
	s.i++ // {
	var seenBuf [32][]byte
	seen := seenBuf[:0]
	var seenMap map[string]struct{}
	keys := 0
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
		at := s.i
		raw, plain, ok := s.str()
		if !ok {
			return false
		}
		if !plain {
			if err := events.CheckName(string(raw)); err != nil {
				return s.fail(at, "key %q: %v of the key", raw, err)
			}
		}
		if seenMap != nil {
			if _, dup := seenMap[string(raw)]; dup {
				return s.fail(at, "duplicate key %q", raw)
			}
			seenMap[string(raw)] = struct{}{}
		} else {
			for _, k := range seen {
				if bytes.Equal(k, raw) {
					return s.fail(at, "duplicate key %q", raw)
				}
			}
			if len(seen) == cap(seenBuf) {
				// Past a few keys a map keeps the check linear.
				seenMap = make(map[string]struct{}, 2*len(seen))
				for _, k := range seen {
					seenMap[string(k)] = struct{}{}
				}
				seenMap[string(raw)] = struct{}{}
			}
		}
		if seenMap == nil {
			seen = append(seen, raw)
		}
		keys++
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		var sub *fastNode
		if n != nil {
			if n.propertyNames != nil && !n.propertyNames.validString(raw, plain) {
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
			if s.why != "" {
				s.path = append(s.path, string(raw))
			}
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
			return n == nil || n.objectDone(keys, found)
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
			if s.why != "" {
				s.path = append(s.path, strconv.Itoa(count))
			}
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
