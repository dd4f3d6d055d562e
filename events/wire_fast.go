package events

// parseWireFast reads the envelopes pinkie writes (encodeWire's output and
// anything shaped like it) without encoding/json's reflection and reader,
// which cost most of the hub's check of an event. It only ever accepts
// input that parseWireStd accepts, with the same result; it reports false
// — and parseWireStd decides — for anything it is not sure of: an
// attribute it does not know or meets twice (encoding/json also matches
// keys case-insensitively and lets the last of two win), a string with an
// escape or a byte outside printable ASCII, a value of another JSON type,
// data nested deeper than maxFastDepth, anything after the object, and
// every kind of malformed JSON. FuzzWireParsers keeps the two in step.
func parseWireFast(b []byte) (wireEvent, bool) {
	var w wireEvent
	// Where each attribute's value is in b, made strings at the end.
	var at [8]struct{ start, end int }
	var seen uint16
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return w, false
	}
	i++
	for {
		i = skipWS(b, i)
		ks, ke, ok := plainString(b, i)
		if !ok {
			return w, false
		}
		a := -1 // index in at; -1 for data
		switch string(b[ks:ke]) {
		case "specversion":
			a = 0
		case "id":
			a = 1
		case "source":
			a = 2
		case "type":
			a = 3
		case "subject":
			a = 4
		case "time":
			a = 5
		case "datacontenttype":
			a = 6
		case "dataschema":
			a = 7
		case "data":
		default:
			return w, false
		}
		bit := uint16(1) << (a + 1)
		if seen&bit != 0 {
			return w, false
		}
		seen |= bit
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return w, false
		}
		i = skipWS(b, i+1)
		if a >= 0 {
			vs, ve, ok := plainString(b, i)
			if !ok {
				return w, false
			}
			at[a].start, at[a].end = vs, ve
			i = ve + 1
		} else {
			j, ok := skipValue(b, i, 0)
			if !ok {
				return w, false
			}
			w.Data = append([]byte(nil), b[i:j]...)
			i = j
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return w, false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			if skipWS(b, i+1) != len(b) {
				return w, false
			}
			// One string each (not slices of one): an attribute kept, say
			// an id, must not keep the others alive.
			for a, f := range []*string{&w.SpecVersion, &w.ID, &w.Source, &w.Type, &w.Subject, &w.Time, &w.DataContentType, &w.DataSchema} {
				*f = string(b[at[a].start:at[a].end])
			}
			return w, true
		default:
			return w, false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString finds a JSON string at b[i] made only of printable ASCII
// without escapes, which reads the same in every decoder: its contents
// are b[start:end], and b[end] is its closing quote.
func plainString(b []byte, i int) (start, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// maxFastDepth bounds the nesting skipValue follows (far below
// encoding/json's own limit); deeper data goes to parseWireStd.
const maxFastDepth = 64

// skipValue checks that a well-formed JSON value (RFC 8259 grammar, as
// encoding/json's scanner reads it) starts at b[i] and returns the index
// after it.
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '{':
		if depth >= maxFastDepth {
			return i, false
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = skipString(b, i); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				return i, false
			}
			if i, ok = skipValue(b, skipWS(b, i+1), depth+1); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case ',':
				i = skipWS(b, i+1)
			case '}':
				return i + 1, true
			default:
				return i, false
			}
		}
	case c == '[':
		if depth >= maxFastDepth {
			return i, false
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = skipValue(b, i, depth+1); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case ',':
				i = skipWS(b, i+1)
			case ']':
				return i + 1, true
			default:
				return i, false
			}
		}
	case c == '"':
		return skipString(b, i)
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	}
	return i, false
}

func skipLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// skipString checks a JSON string at b[i]: no control character, only
// the escapes JSON defines. Like encoding/json's scanner it lets any
// other byte through (the data's own rules are the schemas' business).
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			i++
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 {
					return i, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipNumber checks a JSON number at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > start
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		digits()
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return i, false
		}
	}
	return i, true
}
