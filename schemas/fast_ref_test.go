package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// The decoded-value validator: the reference form of the byte scanner's
// rules, used by the tests to tell the scanner's deliberate refusals
// (duplicate keys, huge numbers) from mistakes.

// valid reports whether v (as encoding/json decodes with UseNumber)
// matches the node.
func (n *fastNode) valid(v any) bool {
	switch x := v.(type) {
	case string:
		return n.validString(x)
	case json.Number:
		return n.validNumber(x)
	case float64:
		return n.validNumber(json.Number(strconv.FormatFloat(x, 'g', -1, 64)))
	case bool:
		return n.validBool(x)
	case nil:
		return n.validNull()
	}
	if n.enum != nil { // enums hold only scalars
		return false
	}
	switch x := v.(type) {
	case map[string]any:
		if n.types != 0 && n.types&fastObject == 0 {
			return false
		}
		if len(x) < n.minProperties {
			return false
		}
		for _, r := range n.required {
			if _, ok := x[r]; !ok {
				return false
			}
		}
		for k, val := range x {
			if n.propertyNames != nil && !n.propertyNames.validString(k) {
				return false
			}
			if p, ok := n.props[k]; ok {
				if !p.valid(val) {
					return false
				}
				continue
			}
			if n.noAdditional {
				return false
			}
			if n.additional != nil && !n.additional.valid(val) {
				return false
			}
		}
		return true
	case []any:
		if n.types != 0 && n.types&fastArray == 0 {
			return false
		}
		if len(x) < n.minItems || (n.maxItems >= 0 && len(x) > n.maxItems) {
			return false
		}
		if n.items != nil {
			for _, it := range x {
				if !n.items.valid(it) {
					return false
				}
			}
		}
		return true
	}
	return false
}

// fastDecode decodes one JSON value, numbers as json.Number; trailing
// data is an error.
func fastDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}
