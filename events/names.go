package events

import (
	"fmt"
	"regexp"
	"strings"
)

// hostRE is what a host name may look like: it must be a single NATS subject
// token and a valid JetStream domain suffix, so no '.', '*', '>' or
// whitespace. Names are never rewritten to fit; a bad one is refused.
var hostRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// ValidHost reports whether name can be used as a pinkie host name, and if
// not, says why in words.
func ValidHost(name string) error {
	if name == "" {
		return fmt.Errorf("host name is empty")
	}
	if !hostRE.MatchString(name) {
		return fmt.Errorf("invalid host name %q: use 1-63 letters, digits, '-' or '_', starting with a letter or digit (no '.', '*', '>' or spaces: host names are NATS subject tokens)", name)
	}
	return nil
}

// Domain is the JetStream domain of the agent on host.
func Domain(host string) string { return "pinkie_" + host }

// HubDomain is the JetStream domain of the hub.
const HubDomain = "hub"

// LocalSubject is the subject an agent publishes an event of kind about
// object on, inside its own JetStream (the OUTBOX stream captures "evt.>").
// The hub stamps the host into it: evt.<kind>[.<object>] becomes
// pinkie.host.<host>.<kind>[.<object>].
func LocalSubject(kind, object string) string {
	s := "evt." + kind
	if object != "" {
		s += "." + ObjectToken(object)
	}
	return s
}

// HostSubjectPrefix begins the hub subject of every host event (the
// HOSTS stream's subjects).
const HostSubjectPrefix = "pinkie.host."

// HostSubject is the hub subject of a host's event.
func HostSubject(host, kind, object string) string {
	s := HostSubjectPrefix + host + "." + kind
	if object != "" {
		s += "." + ObjectToken(object)
	}
	return s
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
