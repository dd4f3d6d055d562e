package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/schemas"
)

// MaxEventBytes bounds the encoded fleet.declared event (the FLEET
// stream's MaxMsgSize).
const MaxEventBytes = 1 << 20

// Event builds the fleet.declared event from source and checks it against
// its schema (a *UserError when it fails) and the FLEET stream's size limit
// before anything is sent.
func Event(set *schemas.Set, decl events.FleetDeclared, source string, now time.Time) (events.Event, error) {
	k, ok := events.Lookup("fleet.declared")
	if !ok {
		return events.Event{}, errors.New("event kind fleet.declared is not in the catalog")
	}
	e, err := events.New(k, source, "fleet", now, decl, events.WithSubject("fleet"))
	if err != nil {
		return events.Event{}, err
	}
	if err := set.ValidateData(k.Type(), e.Data()); err != nil {
		return events.Event{}, &UserError{fmt.Errorf("the declared fleet of %s: %w", decl.Flake, err)}
	}
	b, err := events.Encode(e)
	if err != nil {
		return events.Event{}, err
	}
	if len(b) > MaxEventBytes {
		return events.Event{}, fmt.Errorf("the declared fleet of %s encodes to %d bytes, more than the %d the FLEET stream takes", decl.Flake, len(b), MaxEventBytes)
	}
	return e, nil
}

// Decode checks a declared fleet (fleet.declared data) against its schema,
// then decodes it. Data that fails either is a *UserError.
func Decode(set *schemas.Set, b []byte) (events.FleetDeclared, error) {
	k, ok := events.Lookup("fleet.declared")
	if !ok {
		return events.FleetDeclared{}, errors.New("event kind fleet.declared is not in the catalog")
	}
	if err := set.ValidateData(k.Type(), b); err != nil {
		return events.FleetDeclared{}, &UserError{err}
	}
	var decl events.FleetDeclared
	if err := json.Unmarshal(b, &decl); err != nil {
		return events.FleetDeclared{}, &UserError{err}
	}
	return decl, nil
}
