package events

// fleetKinds are the kinds of the fleet area. Each entry needs a Go type and a
// schema file.
func fleetKinds() []Kind {
	return nil
}
