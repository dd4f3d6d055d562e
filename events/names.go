package events

import (
	"fmt"
	"strings"
)

// A host name must be a single NATS subject token and a valid JetStream
// domain suffix, so no '.', '*', '>' or whitespace: it matches
// ^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$ (hostName checks it by hand: the hub
// asks for every event). Names are never rewritten to fit; a bad one is
// refused.
func hostName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')) {
			return false
		}
	}
	return true
}

// ValidHost reports whether name can be used as a pinkie host name, and if
// not, says why in words.
func ValidHost(name string) error {
	if name == "" {
		return fmt.Errorf("host name is empty")
	}
	if !hostName(name) {
		return fmt.Errorf("invalid host name %q: use 1-63 letters, digits, '-' or '_', starting with a letter or digit (no '.', '*', '>' or spaces: host names are NATS subject tokens)", name)
	}
	return nil
}

// This file is pinkie's one address book: every JetStream stream, KV
// bucket and object store name, and the grammar of every NATS subject,
// with a builder for each and a parser for those anybody reads back.
// Nothing outside events spells a name or a subject by hand; a test
// (boundary_test.go) fails when a literal appears elsewhere. The values are
// wire format: changing one orphans stored data or splits a fleet.

// JetStream streams. Stream names are API: a renamed stream is a new,
// empty one.
const (
	// StreamOutbox is an agent's own stream of the events its producers
	// publish (LocalSubject, "evt.>"), until the hub has them.
	StreamOutbox = "OUTBOX"
	// StreamIngest is the hub's stream of agents' events as sourced from
	// their OUTBOX (IngestSubject), awaiting the ingest check.
	StreamIngest = "INGEST"
	// StreamHosts is every host's checked telemetry (HostSubject).
	StreamHosts = "HOSTS"
	// StreamDeploy is the deploy record: requests, orders and phases
	// (DeploySubject).
	StreamDeploy = "DEPLOY"
	// StreamDeployInbox is the agent-side copy of its host's deploy
	// requests and orders.
	StreamDeployInbox = "DEPLOYIN"
	// StreamAlerts is alerts firing and resolved (AlertSubject).
	StreamAlerts = "ALERTS"
	// StreamAlertLog is silences and the notifier's delivery audit
	// (SilenceAddedSubject, NotifySubject).
	StreamAlertLog = "ALERTLOG"
	// StreamDeadLetter is events refused on ingest (DeadLetterSubject).
	StreamDeadLetter = "DEADLETTER"
	// StreamFleet is the fleet as declared in the flake
	// (FleetDeclaredSubject).
	StreamFleet = "FLEET"
	// StreamShellRec is the recordings of shell sessions.
	StreamShellRec = "SHELLREC"
	// StreamLeader holds the hub cluster's leader claim (LeaderSubject).
	StreamLeader = "HUBLEADER"
	// StreamFormation holds the hub cluster's formation record
	// (FormationSubject).
	StreamFormation = "HUBFORMATION"
)

// KV buckets and object stores. Bucket names are API like stream names.
const (
	BucketLastDeploy    = "pinkie-last-deploy"    // projections/lastdeploy: each host's last deploy
	BucketInventory     = "pinkie-inventory"      // projections.Inventory: each host's profile and liveness
	BucketDrives        = "pinkie-drives"         // projections.Drives: each host's drives
	BucketAlerts        = "pinkie-alerts"         // projections.Alerts: alerts now firing, and silences
	BucketGuests        = "pinkie-guests"         // projections.Guests: each host's guests
	BucketAlerter       = "pinkie-alerter"        // the alerter's state
	BucketDeployPlanner = "pinkie-deploy-planner" // the deploy planner's state: requests, orders issued
	BucketNotifier      = "pinkie-notifier"       // the notifier's state
	BucketNixNarinfo    = "pinkie-nix-narinfo"    // the hub's Nix cache: narinfos
	ObjectStoreNixNar   = "pinkie-nix-nar"        // the hub's Nix cache: NARs (an object store)
)

// ProjectionBuckets are the KV buckets the hub creates for projections.
func ProjectionBuckets() []string {
	return []string{BucketLastDeploy, BucketInventory, BucketDrives, BucketAlerts, BucketGuests}
}

// KVStream is the stream JetStream keeps a KV bucket in.
func KVStream(bucket string) string { return "KV_" + bucket }

// KVSubjectPrefix begins the subject of every key of a KV bucket:
// $KV.<bucket>.<key>.
func KVSubjectPrefix(bucket string) string { return "$KV." + bucket + "." }

// KVSubjects matches every key of a KV bucket: $KV.<bucket>.>.
func KVSubjects(bucket string) string { return KVSubjectPrefix(bucket) + ">" }

// ObjectChunkSubject is the subject of one chunk of an object-store
// object: $O.<bucket>.C.<nuid>.
func ObjectChunkSubject(bucket, nuid string) string { return "$O." + bucket + ".C." + nuid }

// Hub subjects: pinkie.<area>.…, one area per stream or service.
//
//	pinkie.ingest.<host>.evt.<kind>[.<object>]   INGEST (IngestSubject)
//	pinkie.host.<host>.<kind>[.<object>]         HOSTS (HostSubject)
//	pinkie.deploy.<host>.<phase>                 DEPLOY (DeploySubject)
//	pinkie.alert.<host>.<rule>                   ALERTS (AlertSubject)
//	pinkie.silence.added|removed.<id>            ALERTLOG (SilenceAddedSubject)
//	pinkie.notify.<channel>.<outcome>            ALERTLOG (NotifySubject)
//	pinkie.deadletter.<host>                     DEADLETTER (DeadLetterSubject)
//	pinkie.fleet.declared                        FLEET (FleetDeclaredSubject)
//	pinkie.hub.notify.test                       the notifier's test request
//	pinkie.cmd.<host>.…                          commands to a host's agent
//	pinkie.hubleader, pinkie.hubformation        HUBLEADER, HUBFORMATION
const (
	// SubjectPrefix begins every hub subject.
	SubjectPrefix = "pinkie."
	// AllSubjects matches every hub subject.
	AllSubjects = SubjectPrefix + ">"

	// IngestSubjectPrefix begins every INGEST subject.
	IngestSubjectPrefix = SubjectPrefix + "ingest."
	// HostSubjectPrefix begins the hub subject of every host event (the
	// HOSTS stream's subjects).
	HostSubjectPrefix = SubjectPrefix + "host."
	// HostSubjects matches every host event.
	HostSubjects = HostSubjectPrefix + ">"
	// DeploySubjectPrefix begins every DEPLOY subject.
	DeploySubjectPrefix = SubjectPrefix + "deploy."
	// DeploySubjects matches every DEPLOY subject.
	DeploySubjects = DeploySubjectPrefix + ">"
	// AlertSubjectPrefix begins every ALERTS subject.
	AlertSubjectPrefix = SubjectPrefix + "alert."
	// AlertSubjects matches every ALERTS subject.
	AlertSubjects = AlertSubjectPrefix + ">"
	// SilenceSubjects matches silences added and removed.
	SilenceSubjects = SubjectPrefix + "silence.>"
	// NotifySubjects matches the notifier's delivery audit.
	NotifySubjects = SubjectPrefix + "notify.>"
	// DeadLetterSubjects matches every dead letter.
	DeadLetterSubjects = SubjectPrefix + "deadletter.>"
	// FleetSubjectPrefix begins every FLEET subject.
	FleetSubjectPrefix = SubjectPrefix + "fleet."
	// FleetSubjects matches every FLEET subject.
	FleetSubjects = FleetSubjectPrefix + ">"
	// FleetDeclaredSubject is where `pinkie fleet sync` publishes the
	// declared fleet at the hub; the FLEET stream keeps the last few.
	FleetDeclaredSubject = FleetSubjectPrefix + "declared"
	// NotifyTestSubject is the hub service an operator asks to send a test
	// message through every notification channel.
	NotifyTestSubject = SubjectPrefix + "hub.notify.test"
	// LeaderSubject is the one subject of HUBLEADER.
	LeaderSubject = SubjectPrefix + "hubleader"
	// FormationSubject is the one subject of HUBFORMATION.
	FormationSubject = SubjectPrefix + "hubformation"
	// GateMetaKey marks, in a consumer's metadata, one the hub's consumer
	// gate let a client create (it is not a subject, but it is wire).
	GateMetaKey = SubjectPrefix + "gate"
)

// LocalSubjectPrefix begins every subject of an agent's OUTBOX, and
// LocalSubjects matches them all.
const (
	LocalSubjectPrefix = "evt."
	LocalSubjects      = LocalSubjectPrefix + ">"
)

// IngestSubjectFor is the prefix the hub gives everything a host's OUTBOX
// source delivers into INGEST: evt.<kind>… becomes
// pinkie.ingest.<host>.evt.<kind>….
func IngestSubjectFor(host string) string { return IngestSubjectPrefix + host }

// IngestSubjects matches everything a host's source delivers into INGEST.
func IngestSubjects(host string) string { return IngestSubjectFor(host) + ".>" }

// ParseIngestSubject splits an INGEST subject into the host the hub
// stamped into it and the rest as the agent sent it (evt.<kind>…).
func ParseIngestSubject(subject string) (host, rest string, ok bool) {
	r, ok := strings.CutPrefix(subject, IngestSubjectPrefix)
	if !ok {
		return "", "", false
	}
	if host, rest, ok = strings.Cut(r, "."); !ok {
		return "", "", false
	}
	return host, rest, true
}

// HostKindSubjects matches host events of a kind (a dotted kind name) on
// every host: pinkie.host.*.<kind>.>.
func HostKindSubjects(kind string) string { return HostSubjectPrefix + "*." + kind + ".>" }

// HostEventsOf matches every event of one host: pinkie.host.<host>.>.
func HostEventsOf(host string) string { return HostSubjectPrefix + host + ".>" }

// DeadLetterSubject is where the hub puts an event from host it refused.
func DeadLetterSubject(host string) string { return SubjectPrefix + "deadletter." + host }

// DeployEventsOf matches every DEPLOY subject about host.
func DeployEventsOf(host string) string { return DeploySubjectPrefix + host + ".>" }

// AlertHostSubjects matches one alert rule on every host:
// pinkie.alert.*.<rule>.
func AlertHostSubjects(rule string) string { return AlertSubjectPrefix + "*." + rule }

// AlertSubject is the hub subject of a host's alert events for a rule:
// pinkie.alert.<host>.<rule> (rule names are dotted, e.g. fs.usage).
func AlertSubject(host, rule string) string { return AlertSubjectPrefix + host + "." + rule }

// DeploySubject is the hub subject of a deploy event about host: its
// phase, "requested", or an order.
func DeploySubject(host, phase string) string { return DeploySubjectPrefix + host + "." + phase }

// SilenceAddedSubject and SilenceRemovedSubject are where a silence with
// id is added and removed; id may be "*" for a permission pattern.
func SilenceAddedSubject(id string) string   { return SubjectPrefix + "silence.added." + id }
func SilenceRemovedSubject(id string) string { return SubjectPrefix + "silence.removed." + id }

// NotifySubject is the notifier's audit of one delivery attempt to a
// channel: pinkie.notify.<channel>.<outcome>.
func NotifySubject(channel, outcome string) string {
	return SubjectPrefix + "notify." + channel + "." + outcome
}

// CmdSubjects matches every command to host's agent: pinkie.cmd.<host>.>.
func CmdSubjects(host string) string { return SubjectPrefix + "cmd." + host + ".>" }

// Domain is the JetStream domain of the agent on host.
func Domain(host string) string { return "pinkie_" + host }

// HubDomain is the JetStream domain of the hub.
const HubDomain = "hub"

// LocalSubject is the subject an agent publishes an event of kind about
// object on, inside its own JetStream (the OUTBOX stream captures "evt.>").
// The hub stamps the host into it: evt.<kind>[.<object>] becomes
// pinkie.host.<host>.<kind>[.<object>].
func LocalSubject(kind, object string) string {
	s := LocalSubjectPrefix + kind
	if object != "" {
		s += "." + ObjectToken(object)
	}
	return s
}

// HostSubject is the hub subject of a host's event.
func HostSubject(host, kind, object string) string {
	s := HostSubjectPrefix + host + "." + kind
	if object != "" {
		s += "." + ObjectToken(object)
	}
	return s
}

// HostSubjectOfLocal is the hub subject of an event host's agent published
// on evt.<kindPath> (kindPath: the kind and object tokens, as LocalSubject
// wrote them): pinkie.host.<host>.<kindPath>.
func HostSubjectOfLocal(host, kindPath string) string {
	return HostSubjectPrefix + host + "." + kindPath
}

// ObjectToken turns an object name (a device, a mount point, a pool) into
// one subject token. Characters that NATS subjects or KV keys cannot carry
// are escaped as _XX (hex), and '_' itself as __, so the mapping is
// reversible and two objects never share a token.
func ObjectToken(object string) string {
	var b strings.Builder
	for i := 0; i < len(object); i++ {
		c := object[i]
		switch {
		case c == '_':
			b.WriteString("__")
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '=':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// HostFromSubject returns the host of a hub subject such as
// pinkie.host.<host>.<kind>… or pinkie.deploy.<host>.<phase>, and the rest
// after the host.
func HostFromSubject(subject string) (host, rest string, ok bool) {
	parts := strings.SplitN(subject, ".", 4)
	if len(parts) < 4 || parts[0] != "pinkie" {
		return "", "", false
	}
	switch parts[1] {
	case "host", "deploy", "alert", "deadletter":
	default:
		return "", "", false
	}
	return parts[2], parts[3], true
}

// HostMsgID is the Nats-Msg-Id the hub gives an event it took from host:
// deduplication is per host, so one host's event can never make another
// host's event with the same id a "duplicate".
func HostMsgID(host, id string) string { return host + "/" + id }

// Internal subjects: the hub's and agents' plumbing under "_pinkie.",
// which nothing stores. Clients and agents may not publish on most of
// them (streams/roles.go, streams/auth.go).
//
//	_pinkie.deliver.<host>.d                  an agent's OUTBOX → the hub's INGEST source
//	_pinkie.deploy.<host>.d                   DEPLOY → the agent's DEPLOYIN source
//	_pinkie.js.…                              the consumer gate's way to the JetStream API
//	_pinkie.nixcache.<host>.<call>            the hub's Nix cache, per host
//	_pinkie.nixcache.put.…                    uploads into the Nix cache
//	_pinkie.nixcache.admin.ls|stats|gc        the Nix cache's admin calls
//	_pinkie.hubformation.upgrading.<node>     a node upgrading a single hub into a cluster
//	_pinkie.shell.…                           shell sessions (ShellPrefix)
const (
	// GateJSPrefix is where the consumer gate reaches the JetStream API
	// from the CLIENTS account.
	GateJSPrefix = "_pinkie.js"
	// NixCacheSubjectPrefix begins every subject of the hub's Nix cache.
	NixCacheSubjectPrefix = "_pinkie.nixcache"
	// NixCachePutPrefix begins the Nix cache's upload subjects.
	NixCachePutPrefix = NixCacheSubjectPrefix + ".put"
	// NixCacheAdminPrefix begins the Nix cache's admin calls.
	NixCacheAdminPrefix = NixCacheSubjectPrefix + ".admin"
	// UpgradingSubject.<node> has interest while node moves a single hub's
	// streams into a new cluster.
	UpgradingSubject = "_pinkie.hubformation.upgrading"
)

// DeliverPrefix is where a host's HUB consumer delivers (the INGEST
// source's deliver prefix), and DeliverSubject the one subject it pushes
// to: _pinkie.deliver.<host>[.d].
func DeliverPrefix(host string) string  { return "_pinkie.deliver." + host }
func DeliverSubject(host string) string { return DeliverPrefix(host) + ".d" }

// DeployDeliverPrefix is where the hub's AGENT_<host> consumer on DEPLOY
// pushes to: _pinkie.deploy.<host>.
func DeployDeliverPrefix(host string) string { return "_pinkie.deploy." + host }

// ShellPrefix starts every subject of pinkie shell sessions. They are not
// events (nothing stores them): the bytes of a session between an operator
// and the agent on the host, scoped by the host so the hub's permissions
// can give a host's leaf key its own sessions and nothing of any other's.
//
//	_pinkie.shell.<host>.open             operator → agent: open a session
//	_pinkie.shell.<host>.<session>.in     operator → agent: stdin bytes
//	_pinkie.shell.<host>.<session>.ctl    operator → agent: credit, resize, eof, ping, close
//	_pinkie.shell.<host>.<session>.out    agent → operator: stdout bytes (the pty's output)
//	_pinkie.shell.<host>.<session>.err    agent → operator: stderr bytes
//	_pinkie.shell.<host>.<session>.status agent → operator: started, refused, credit, ping, exit
const ShellPrefix = "_pinkie.shell"

// Shell session channels: the last token of a session's subjects.
const (
	ShellIn     = "in"
	ShellCtl    = "ctl"
	ShellOut    = "out"
	ShellErr    = "err"
	ShellStatus = "status"
)

// ShellOpenSubject is where operators open sessions on host.
func ShellOpenSubject(host string) string { return ShellPrefix + "." + host + ".open" }

// ShellSubject is one channel of a session on host; host or session may be
// "*" for a permission pattern.
func ShellSubject(host, session, channel string) string {
	return ShellPrefix + "." + host + "." + session + "." + channel
}
