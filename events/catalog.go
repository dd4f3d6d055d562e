package events

import (
	"sort"
	"strings"
	"sync"
)

// Origin says who may publish a kind of event.
type Origin int

const (
	// FromAgent events are published by a host's agent into its OUTBOX and
	// reach the hub on pinkie.host.<host>.<kind>[.<object>].
	FromAgent Origin = iota
	// FromClient events are published at the hub by operators, CI or the
	// hub's own services (deploy requests, alerts, the declared fleet).
	FromClient
	// FromHub events are written by the hub itself (dead letters).
	FromHub
)

// Kind is one type of event: its name, the Go type of its data and who
// publishes it. The CloudEvents type is pinkie.<name>.v1.
type Kind struct {
	Name   string
	Doc    string
	Origin Origin
	// New returns a pointer to a zero value of the data type.
	New func() any
	// HubSubject, for client events, is the subject the event is published
	// on at the hub, computed from its data (nil for agent events).
	HubSubject func(data any) string
}

// Type is the CloudEvents type attribute, e.g. pinkie.heartbeat.v1.
func (k Kind) Type() string { return TypeOf(k.Name) }

// TypeOf is the CloudEvents type of the kind called name:
// pinkie.<name>.v1. Event types share the "pinkie." prefix with subjects
// but are not subjects; like them, they are spelled only here.
func TypeOf(name string) string { return SubjectPrefix + name + ".v1" }

// KindName parses a CloudEvents type pinkie.<name>.v1 into the kind's
// name, whether or not the catalog knows it.
func KindName(eventType string) (string, bool) {
	name, ok := strings.CutPrefix(eventType, SubjectPrefix)
	if !ok {
		return "", false
	}
	if name, ok = strings.CutSuffix(name, ".v1"); !ok {
		return "", false
	}
	return name, true
}

// SchemaID is the $id of the kind's JSON Schema and the events' dataschema.
func (k Kind) SchemaID() string { return SchemaBase + k.Name + ".v1.json" }

// SchemaFile is the file name of the kind's schema under schemas/.
func (k Kind) SchemaFile() string { return k.Name + ".v1.json" }

// SchemaBase prefixes every schema $id.
const SchemaBase = "https://pinkie.dev/schemas/"

// Catalog lists every event kind pinkie knows, sorted by name. It is the one
// explicit list: adding a kind means adding a line here, a Go type and a
// schema file (a test checks all three agree).
func Catalog() []Kind {
	ks := []Kind{
		{Name: "heartbeat", Origin: FromAgent, Doc: "agent liveness with uptime, load and memory", New: func() any { return new(Heartbeat) }},
		{Name: "profile", Origin: FromAgent, Doc: "what the host is: OS, kernel, CPU, memory, boot time", New: func() any { return new(Profile) }},
		{Name: "deadletter", Origin: FromHub, Doc: "an event the hub refused on ingest, with the reason", New: func() any { return new(DeadLetter) }},
		{Name: "ingest.budget", Origin: FromHub, Doc: "a host went over its ingest budget and the hub paused its source (throttled), or it is within budget again (pinkie.host.<host>.ingest.budget)", New: func() any { return new(IngestBudget) },
			HubSubject: func(d any) string { return HostSubject(d.(*IngestBudget).Host, "ingest.budget", "") }},
	}
	ks = append(ks, hostKinds()...)
	ks = append(ks, storageKinds()...)
	ks = append(ks, alertKinds()...)
	ks = append(ks, deployKinds()...)
	ks = append(ks, fleetKinds()...)
	sort.Slice(ks, func(i, j int) bool { return ks[i].Name < ks[j].Name })
	return ks
}

// Lookup finds a kind by its name ("deploy.requested") or its CloudEvents
// type ("pinkie.deploy.requested.v1").
func Lookup(name string) (Kind, bool) {
	k, ok := kindIndex()[name]
	return k, ok
}

// kindIndex maps every kind's name and type to it; built once, never
// changed (Lookup runs for every event, Catalog builds a fresh list).
var kindIndex = sync.OnceValue(func() map[string]Kind {
	m := map[string]Kind{}
	for _, k := range Catalog() {
		m[k.Name] = k
		m[k.Type()] = k
	}
	return m
})

// KindNames lists the names of all kinds of the given origin.
func KindNames(o Origin) []string {
	var names []string
	for _, k := range Catalog() {
		if k.Origin == o {
			names = append(names, k.Name)
		}
	}
	return names
}
