package events

// alertKinds are the kinds of the alert area. Each entry needs a Go type and a
// schema file.
func alertKinds() []Kind {
	return nil
}
