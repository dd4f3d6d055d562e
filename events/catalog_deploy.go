package events

// deployKinds are the kinds of the deploy area. Each entry needs a Go type and a
// schema file.
func deployKinds() []Kind {
	return nil
}
