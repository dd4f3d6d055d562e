package events

import (
	"regexp"
	"strings"
	"testing"
)

// TestNamesOnTheWire pins every name and subject to its value on the wire:
// stored streams, buckets and agents in the field depend on them, so a
// change here must be deliberate (and come with a migration).
func TestNamesOnTheWire(t *testing.T) {
	for _, c := range []struct{ name, got, want string }{
		{"StreamOutbox", StreamOutbox, "OUTBOX"},
		{"StreamIngest", StreamIngest, "INGEST"},
		{"StreamHosts", StreamHosts, "HOSTS"},
		{"StreamDeploy", StreamDeploy, "DEPLOY"},
		{"StreamDeployInbox", StreamDeployInbox, "DEPLOYIN"},
		{"StreamAlerts", StreamAlerts, "ALERTS"},
		{"StreamAlertLog", StreamAlertLog, "ALERTLOG"},
		{"StreamDeadLetter", StreamDeadLetter, "DEADLETTER"},
		{"StreamFleet", StreamFleet, "FLEET"},
		{"StreamShellRec", StreamShellRec, "SHELLREC"},
		{"StreamLeader", StreamLeader, "HUBLEADER"},
		{"StreamFormation", StreamFormation, "HUBFORMATION"},
		{"BucketLastDeploy", BucketLastDeploy, "pinkie-last-deploy"},
		{"BucketInventory", BucketInventory, "pinkie-inventory"},
		{"BucketDrives", BucketDrives, "pinkie-drives"},
		{"BucketAlerts", BucketAlerts, "pinkie-alerts"},
		{"BucketGuests", BucketGuests, "pinkie-guests"},
		{"BucketAlerter", BucketAlerter, "pinkie-alerter"},
		{"BucketDeployPlanner", BucketDeployPlanner, "pinkie-deploy-planner"},
		{"BucketNotifier", BucketNotifier, "pinkie-notifier"},
		{"BucketNixNarinfo", BucketNixNarinfo, "pinkie-nix-narinfo"},
		{"ObjectStoreNixNar", ObjectStoreNixNar, "pinkie-nix-nar"},
		{"KVStream", KVStream(BucketGuests), "KV_pinkie-guests"},
		{"KVSubjects", KVSubjects(BucketAlerts), "$KV.pinkie-alerts.>"},
		{"ObjectChunkSubject", ObjectChunkSubject(ObjectStoreNixNar, "N1"), "$O.pinkie-nix-nar.C.N1"},
		{"AllSubjects", AllSubjects, "pinkie.>"},
		{"LocalSubject", LocalSubject("fs", "/var"), "evt.fs._2Fvar"},
		{"LocalSubjects", LocalSubjects, "evt.>"},
		{"IngestSubjects", IngestSubjects("goliath"), "pinkie.ingest.goliath.>"},
		{"HostSubject", HostSubject("goliath", "smart", "sda"), "pinkie.host.goliath.smart.sda"},
		{"HostSubjectOfLocal", HostSubjectOfLocal("goliath", "smart.sda"), "pinkie.host.goliath.smart.sda"},
		{"HostSubjects", HostSubjects, "pinkie.host.>"},
		{"HostKindSubjects", HostKindSubjects("guest"), "pinkie.host.*.guest.>"},
		{"HostEventsOf", HostEventsOf("goliath"), "pinkie.host.goliath.>"},
		{"DeploySubject", DeploySubject("goliath", "requested"), "pinkie.deploy.goliath.requested"},
		{"DeploySubjects", DeploySubjects, "pinkie.deploy.>"},
		{"DeployEventsOf", DeployEventsOf("goliath"), "pinkie.deploy.goliath.>"},
		{"AlertSubject", AlertSubject("goliath", "fs.usage"), "pinkie.alert.goliath.fs.usage"},
		{"AlertSubjects", AlertSubjects, "pinkie.alert.>"},
		{"AlertHostSubjects", AlertHostSubjects("host.silent"), "pinkie.alert.*.host.silent"},
		{"SilenceAddedSubject", SilenceAddedSubject("*"), "pinkie.silence.added.*"},
		{"SilenceRemovedSubject", SilenceRemovedSubject("s1"), "pinkie.silence.removed.s1"},
		{"SilenceSubjects", SilenceSubjects, "pinkie.silence.>"},
		{"NotifySubject", NotifySubject("mail", "sent"), "pinkie.notify.mail.sent"},
		{"NotifySubjects", NotifySubjects, "pinkie.notify.>"},
		{"DeadLetterSubject", DeadLetterSubject("goliath"), "pinkie.deadletter.goliath"},
		{"DeadLetterSubjects", DeadLetterSubjects, "pinkie.deadletter.>"},
		{"FleetDeclaredSubject", FleetDeclaredSubject, "pinkie.fleet.declared"},
		{"FleetSubjects", FleetSubjects, "pinkie.fleet.>"},
		{"NotifyTestSubject", NotifyTestSubject, "pinkie.hub.notify.test"},
		{"LeaderSubject", LeaderSubject, "pinkie.hubleader"},
		{"FormationSubject", FormationSubject, "pinkie.hubformation"},
		{"GateMetaKey", GateMetaKey, "pinkie.gate"},
		{"CmdSubjects", CmdSubjects("goliath"), "pinkie.cmd.goliath.>"},
		{"DeliverSubject", DeliverSubject("goliath"), "_pinkie.deliver.goliath.d"},
		{"DeployDeliverPrefix", DeployDeliverPrefix("goliath"), "_pinkie.deploy.goliath"},
		{"GateJSPrefix", GateJSPrefix, "_pinkie.js"},
		{"NixCachePutPrefix", NixCachePutPrefix, "_pinkie.nixcache.put"},
		{"NixCacheAdminPrefix", NixCacheAdminPrefix, "_pinkie.nixcache.admin"},
		{"UpgradingSubject", UpgradingSubject, "_pinkie.hubformation.upgrading"},
		{"ShellOpenSubject", ShellOpenSubject("goliath"), "_pinkie.shell.goliath.open"},
		{"TypeOf", TypeOf("alert.firing"), "pinkie.alert.firing.v1"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestParseIngestSubject(t *testing.T) {
	for _, c := range []struct {
		name, subject, host, rest string
		ok                        bool
	}{
		{"event", "pinkie.ingest.goliath.evt.smart.sda", "goliath", "evt.smart.sda", true},
		{"host only", "pinkie.ingest.goliath", "", "", false},
		{"other stream", "pinkie.host.goliath.evt.heartbeat", "", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			host, rest, ok := ParseIngestSubject(c.subject)
			if host != c.host || rest != c.rest || ok != c.ok {
				t.Errorf("ParseIngestSubject(%q) = %q, %q, %v, want %q, %q, %v", c.subject, host, rest, ok, c.host, c.rest, c.ok)
			}
		})
	}
}

func TestKindName(t *testing.T) {
	for _, c := range []struct {
		name, typ, want string
		ok              bool
	}{
		{"catalog kind", "pinkie.alert.firing.v1", "alert.firing", true},
		{"round trip", TypeOf("heartbeat"), "heartbeat", true},
		{"other prefix", "io.example.alert.v1", "", false},
		{"other version", "pinkie.alert.firing.v2", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := KindName(c.typ)
			if got != c.want || ok != c.ok {
				t.Errorf("KindName(%q) = %q, %v, want %q, %v", c.typ, got, ok, c.want, c.ok)
			}
		})
	}
}

// TestHostNameMatchesPattern: the hand-written check accepts exactly what
// the pattern it replaced did.
func TestHostNameMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	cases := []string{"", "a", "A", "0", "_a", "-a", "a_", "a-", "a.b", "a b", "a*", "a>", "goliath", "ü", "aü", "a\n", "\na",
		"a\x00", strings.Repeat("a", 63), strings.Repeat("a", 64), "Z9_-z", "a/b", "a:b", "a@"}
	for c := 0; c < 256; c++ {
		cases = append(cases, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
	}
	for _, c := range cases {
		if hostName(c) != re.MatchString(c) {
			t.Errorf("%q: hostName %v, pattern %v", c, hostName(c), re.MatchString(c))
		}
	}
}

func FuzzHostName(f *testing.F) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	f.Add("goliath")
	f.Add("a-b_c")
	f.Fuzz(func(t *testing.T, s string) {
		if hostName(s) != re.MatchString(s) {
			t.Errorf("%q: hostName %v, pattern %v", s, hostName(s), re.MatchString(s))
		}
	})
}
