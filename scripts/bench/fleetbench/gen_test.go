package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Every slot of the mix builds an event its schema accepts: the hub would
// dead-letter anything else, and the run would count it lost.
func TestEverySlotValid(t *testing.T) {
	ex, err := loadExamples("../../../schemas/examples")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	mix := hourOfEvents()
	if len(mix) != 241 {
		t.Fatalf("the hour's mix has %d slots, want 241 (295 events with the login bursts)", len(mix))
	}
	for i, sl := range mix {
		e, err := ex.build("h0001", uint64(i+1), sl, time.Now(), r)
		if err != nil {
			t.Fatalf("slot %d (%s): %v", i, sl.kind, err)
		}
		if err := ex.schemas.ValidateData(e.Type(), e.Data()); err != nil {
			t.Fatalf("slot %d (%s): %v", i, sl.kind, err)
		}
		host, seq, ok := parseEventID(e.ID())
		if !ok || host != "h0001" || seq != uint64(i+1) {
			t.Fatalf("id %q parses as %q %d %v", e.ID(), host, seq, ok)
		}
	}
}

func TestTrackerCountsHolesAndDoubles(t *testing.T) {
	tr := newTracker()
	for _, n := range []uint64{1, 2, 4, 2, 5} {
		tr.record("pinkie.host.h-1.heartbeat", []byte(`{"id":"`+eventID("h-1", n)+`"}`), n)
	}
	tr.record("pinkie.host.h-2.heartbeat", []byte(`{"id":"`+eventID("h-1", 3)+`"}`), 6) // host mismatch
	tests := []struct {
		name    string
		want    map[string]uint64
		ok      bool
		missing uint64
	}{
		{"complete to 2", map[string]uint64{"h-1": 2}, true, 0},
		{"hole at 3", map[string]uint64{"h-1": 5}, false, 3},
		{"unknown host", map[string]uint64{"h-9": 2}, false, 2},
	}
	for _, tc := range tests {
		ok, missing := tr.covers(tc.want)
		if ok != tc.ok || missing != tc.missing {
			t.Errorf("%s: covers = %v, %d missing; want %v, %d", tc.name, ok, missing, tc.ok, tc.missing)
		}
	}
	s := tr.hosts["h-1"]
	if s.dups != 1 || s.contig != 2 || s.max != 5 || tr.foreign != 1 {
		t.Errorf("dups %d contig %d max %d foreign %d; want 1 2 5 1", s.dups, s.contig, s.max, tr.foreign)
	}
}
