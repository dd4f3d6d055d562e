package notifier

import (
	"fmt"
	"path"

	"github.com/pinkiefleet/pinkie/events"
)

// Fleet is what tag routes read: each host's pinkie.deployment.tags in the
// latest declared fleet (the pinkie.fleet.declared event that
// `pinkie fleet sync` publishes into stream FLEET).
type Fleet struct {
	// Seq is the FLEET stream sequence of the declaration (0: none yet).
	Seq uint64
	// Flake is the flake the fleet was declared from.
	Flake string
	// Tags by host; a host not in the map is not in the declared fleet.
	Tags map[string][]string
}

// FleetFromEvent decodes a stored pinkie.fleet.declared event (stream
// sequence seq) strictly: a pinkie CloudEvent of that type whose data has
// no unknown fields.
func FleetFromEvent(seq uint64, data []byte) (Fleet, error) {
	e, k, err := events.Decode(data)
	if err != nil {
		return Fleet{}, fmt.Errorf("declared fleet (FLEET seq %d): %w", seq, err)
	}
	if k.Name != "fleet.declared" {
		return Fleet{}, fmt.Errorf("declared fleet (FLEET seq %d): type %s, want a fleet.declared event", seq, e.Type())
	}
	v, err := events.DecodeData(e, k)
	if err != nil {
		return Fleet{}, fmt.Errorf("declared fleet (FLEET seq %d): %w", seq, err)
	}
	return NewFleet(seq, *v.(*events.FleetDeclared)), nil
}

// NewFleet builds the routing view of a declared fleet.
func NewFleet(seq uint64, d events.FleetDeclared) Fleet {
	f := Fleet{Seq: seq, Flake: d.Flake, Tags: make(map[string][]string, len(d.Hosts))}
	for _, h := range d.Hosts {
		f.Tags[h.Name] = append([]string{}, h.Deployment.Tags...)
	}
	return f
}

// hostTagged reports whether host is in the fleet and carries a tag that
// one of the patterns matches.
func (f Fleet) hostTagged(host string, pats []string) bool {
	tags, ok := f.Tags[host]
	if !ok {
		return false
	}
	for _, p := range pats {
		for _, t := range tags {
			if ok, err := path.Match(p, t); err == nil && ok {
				return true
			}
		}
	}
	return false
}
