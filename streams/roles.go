package streams

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pinkiefleet/pinkie/events"
)

// Roles with --auth. The hub's embedded server has two accounts:
//
//   - the global account ($G), which owns JetStream: the hub's in-process
//     service user and the agents' leaf users live there, as they did
//     before roles existed (so the store directory stays jetstream/$G);
//   - CLIENTS, with no JetStream of its own, for operator and reader keys.
//
// CLIENTS reaches $G only through the imports below, so whatever is not
// imported does not exist for a client, whatever its permissions say:
// JetStream writes (stream or KV updates, purges, deletes), acks, the hub's
// own inboxes. Per-user permissions in CLIENTS then split readers from
// operators and make a refused call fail loudly instead of timing out.
//
// nats-server checks no permission on a consumer's deliver subject and no
// permission can see a request's body, so clients' consumer calls do not
// reach the JetStream API directly: nothing in CLIENTS imports them. The
// consumer gate (gate.go), an in-process user of CLIENTS, takes them, and
// sends on those it allows through its own imports under gateJSPrefix, with
// the client's reply subject, so the server answers the client directly.
// (A gate in $G could not: a client may not publish with a reply of _R_.,
// the subjects the server gives replies that crossed accounts.)
const (
	clientsAccount = "CLIENTS"
	// gateJSPrefix is where the gate reaches the consumer API from CLIENTS;
	// no client key may publish there.
	gateJSPrefix = events.GateJSPrefix
)

// jsAPIPrefixes are the two spellings of the hub's JetStream API a client
// may use: plain, and with the hub's domain.
var jsAPIPrefixes = []string{"$JS.API", "$JS." + events.HubDomain + ".API"}

// clientAPI is one JetStream API call a client may make. Read calls are
// imported straight from the API; gated ones are answered by the gate,
// which reaches the API under gateJSPrefix (except for durable creates,
// which it always refuses). Streamed marks calls answered by more than one
// message.
type clientAPI struct {
	call     string
	gated    bool
	streamed bool
}

var clientAPIs = []clientAPI{
	{call: "INFO"},
	{call: "STREAM.NAMES"},
	{call: "STREAM.LIST"},
	{call: "STREAM.INFO.*"},
	{call: "STREAM.MSG.GET.*"},
	{call: "DIRECT.GET.>", streamed: true}, // batched and multi-last gets answer with many messages
	{call: "CONSUMER.NAMES.*"},
	{call: "CONSUMER.LIST.*"},
	{call: "CONSUMER.INFO.*.*"},
	{call: "CONSUMER.CREATE.>", gated: true},
	{call: "CONSUMER.DURABLE.CREATE.>", gated: true},
	{call: "CONSUMER.MSG.NEXT.*.*", gated: true, streamed: true},
	{call: "CONSUMER.DELETE.*.*", gated: true},
}

// operatorPublish are the hub subjects an operator may publish: deploy
// requests, silences, the declared fleet, and the notifier's test request.
// Everything else at the hub comes from agents through ingest or from the
// hub itself.
var operatorPublish = []string{
	events.DeploySubject("*", "requested"),
	events.SilenceAddedSubject("*"),
	events.SilenceRemovedSubject("*"),
	events.FleetDeclaredSubject,
	NotifyTestSubject,
	NixCachePutOperator + ".*",
	NixCacheAdminGC,
}

// readerRequests are the hub services every client key may call: the Nix
// cache's listing and summary (gc is an operator's, above).
var readerRequests = []string{NixCacheAdminLs, NixCacheAdminStats}

// clientStreamImports are the live subjects clients may subscribe to.
var clientStreamImports = []string{events.AllSubjects}

// hubAccounts builds, from scratch, the accounts of a hub with auth.
// JetStream on $G can only be switched on through the config parser, which
// refuses to name $G: parse an account with JetStream enabled and give it
// the global account's name.
func hubAccounts() (global, clients *server.Account, err error) {
	var o server.Options
	if err := o.ProcessConfigString(`accounts { PINKIE_HUB: { jetstream: enabled }, ` + clientsAccount + `: {} }`); err != nil {
		return nil, nil, fmt.Errorf("hub accounts: %w", err)
	}
	for _, a := range o.Accounts {
		switch a.Name {
		case "PINKIE_HUB":
			global = a
		case clientsAccount:
			clients = a
		}
	}
	if global == nil || clients == nil {
		return nil, nil, fmt.Errorf("hub accounts: the config parser returned %d accounts", len(o.Accounts))
	}
	global.Name = server.DEFAULT_GLOBAL_ACCOUNT
	to := []*server.Account{clients}
	for _, s := range clientStreamImports {
		if err := global.AddStreamExport(s, to); err != nil {
			return nil, nil, fmt.Errorf("export %s: %w", s, err)
		}
		if err := clients.AddStreamImport(global, s, ""); err != nil {
			return nil, nil, fmt.Errorf("import %s: %w", s, err)
		}
	}
	for _, api := range clientAPIs {
		rt := server.Singleton
		if api.streamed {
			rt = server.Streamed
		}
		if api.gated && strings.Contains(api.call, "DURABLE") {
			continue
		}
		target := "$JS.API." + api.call
		if err := global.AddServiceExportWithResponse(target, rt, to); err != nil {
			return nil, nil, fmt.Errorf("export %s: %w", target, err)
		}
		from := []string{gateJSPrefix + "." + api.call}
		if !api.gated {
			from = nil
			for _, p := range jsAPIPrefixes {
				from = append(from, p+"."+api.call)
			}
		}
		for _, f := range from {
			if err := clients.AddServiceImport(global, f, target); err != nil {
				return nil, nil, fmt.Errorf("import %s: %w", f, err)
			}
		}
	}
	for _, s := range append(append([]string{}, operatorPublish...), readerRequests...) {
		if err := global.AddServiceExportWithResponse(s, server.Singleton, to); err != nil {
			return nil, nil, fmt.Errorf("export %s: %w", s, err)
		}
		if err := clients.AddServiceImport(global, s, s); err != nil {
			return nil, nil, fmt.Errorf("import %s: %w", s, err)
		}
	}
	if err := shellAccounts(global, clients); err != nil {
		return nil, nil, err
	}
	return global, clients, nil
}

// readerPublish are the subjects every client key may publish: the read
// calls and the gated consumer calls of the JetStream API.
func readerPublish() []string {
	var pub []string
	for _, p := range jsAPIPrefixes {
		for _, api := range clientAPIs {
			pub = append(pub, p+"."+api.call)
		}
	}
	return append(pub, readerRequests...)
}

// readerPermissions: the read imports, live subjects and the client's own
// replies. CLIENTS' inboxes hold only clients' replies, never the hub's.
func readerPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: readerPublish()},
		Subscribe: &server.SubjectPermission{Allow: append([]string{"_INBOX.>"}, clientStreamImports...)},
	}
}

// operatorPermissions: a reader's, plus deploy requests, silences, the
// declared fleet, the notifier test and shell sessions (shell_auth.go).
func operatorPermissions() *server.Permissions {
	p := readerPermissions()
	p.Publish.Allow = append(append(p.Publish.Allow, operatorPublish...), shellOperatorPublish()...)
	p.Subscribe.Allow = append(p.Subscribe.Allow, shellOperatorSubscribe()...)
	return p
}

// gatePermissions: the gate takes clients' consumer calls, answers
// refusals to their inboxes and sends the rest on under gateJSPrefix.
func gatePermissions() *server.Permissions {
	var sub []string
	for _, p := range jsAPIPrefixes {
		for _, api := range clientAPIs {
			if api.gated {
				sub = append(sub, p+"."+api.call)
			}
		}
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{gateJSPrefix + ".>", "_INBOX.>"}},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}
}

// nkeyUsers turns the auth file into the hub server's accounts and users:
// the hub's in-process service user and the hosts' leaf users in $G, as
// before; operators, readers, the hub's in-process consumer gate and the
// dashboard terminal's in-process user (shell subjects only) in CLIENTS.
func nkeyUsers(a *Auth, servicePub, gatePub, webPub string) ([]*server.Account, []*server.NkeyUser, error) {
	global, clients, err := hubAccounts()
	if err != nil {
		return nil, nil, err
	}
	ct := func(types ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, t := range types {
			m[t] = struct{}{}
		}
		return m
	}
	var users []*server.NkeyUser
	users = append(users, &server.NkeyUser{Nkey: servicePub, AllowedConnectionTypes: ct("IN_PROCESS")})
	users = append(users, &server.NkeyUser{Nkey: gatePub, Account: clients, Permissions: gatePermissions(), AllowedConnectionTypes: ct("IN_PROCESS")})
	users = append(users, &server.NkeyUser{Nkey: webPub, Account: clients, Permissions: webShellPermissions(), AllowedConnectionTypes: ct("IN_PROCESS")})
	for _, k := range a.Operators {
		users = append(users, &server.NkeyUser{Nkey: k, Account: clients, Permissions: operatorPermissions(), AllowedConnectionTypes: ct("STANDARD", "WEBSOCKET")})
	}
	for _, k := range a.Readers {
		users = append(users, &server.NkeyUser{Nkey: k, Account: clients, Permissions: readerPermissions(), AllowedConnectionTypes: ct("STANDARD", "WEBSOCKET")})
	}
	for _, h := range a.HostNames() {
		users = append(users, &server.NkeyUser{Nkey: a.Hosts[h], Permissions: leafPermissions(h), AllowedConnectionTypes: ct("LEAFNODE")})
	}
	return []*server.Account{global, clients}, users, nil
}
