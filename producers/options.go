package producers

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// DecodeOptions decodes a producer's options strictly: an unknown key is an
// error naming it. Empty options leave v unchanged.
func DecodeOptions(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	return nil
}
