package events

import "strings"

// DeployPhases are the phases of a deploy that agents report, in the order
// they happen. Each is the kind deploy.<phase> and arrives at the hub on
// pinkie.deploy.<agent-host>.<phase>.
var DeployPhases = []string{"build.started", "built", "build.failed", "activation.started", "activated", "failed", "rolledback", "skipped"}

// deployPhaseDocs says what each phase means.
var deployPhaseDocs = map[string]string{
	"build.started":      "a builder started building a host's system closure",
	"built":              "a host's system closure is built (and pushed where the target can fetch it)",
	"build.failed":       "building a host's system closure failed, with the last log lines",
	"activation.started": "the target's agent started activating the new system",
	"activated":          "the target's agent activated the new system and its health checks passed",
	"failed":             "activation failed (nothing to restore, or the restore failed too)",
	"rolledback":         "activation or a health check failed and the previous system was restored: a failure",
	"skipped":            "the target's agent skipped a request: superseded by a newer one, or expired",
}

// deployKinds are the kinds of the deploy area: the request, the phases
// agents report, and the orders the hub's deploy planner hands builders
// and targets when a host is built on another host.
func deployKinds() []Kind {
	ks := []Kind{
		{Name: "deploy.requested", Origin: FromClient, Doc: "a request to deploy a host", New: func() any { return new(DeployRequested) },
			HubSubject: func(d any) string { return DeploySubject(d.(*DeployRequested).Host, "requested") }},
		{Name: "deploy.build.ordered", Origin: FromHub, Doc: "the deploy planner asks a builder host to build another host's system", New: func() any { return new(DeployPhase) },
			HubSubject: func(d any) string { return DeploySubject(d.(*DeployPhase).Builder, "build.ordered") }},
		{Name: "deploy.activation.ordered", Origin: FromHub, Doc: "the deploy planner hands a target the store path its builder built", New: func() any { return new(DeployPhase) },
			HubSubject: func(d any) string { return DeploySubject(d.(*DeployPhase).Host, "activation.ordered") }},
	}
	for _, p := range DeployPhases {
		ks = append(ks, Kind{Name: "deploy." + p, Origin: FromAgent, Doc: deployPhaseDocs[p], New: func() any { return new(DeployPhase) }})
	}
	return ks
}

// DeployPhaseOf returns the phase of a deploy kind name ("deploy.built" →
// "built") and whether the kind is an agent-reported phase.
func DeployPhaseOf(kind string) (string, bool) {
	p, ok := strings.CutPrefix(kind, "deploy.")
	if !ok {
		return "", false
	}
	for _, q := range DeployPhases {
		if q == p {
			return p, true
		}
	}
	return "", false
}
