package events

// fleetKinds are the kinds of the fleet area. Each entry needs a Go type and a
// schema file.
func fleetKinds() []Kind {
	return []Kind{
		{Name: "fleet.declared", Origin: FromClient, Doc: "the fleet as the flake declares it: hosts, their deployment options, roles, services and domains (pinkie fleet sync)", New: func() any { return new(FleetDeclared) },
			HubSubject: func(any) string { return FleetDeclaredSubject }},
	}
}
