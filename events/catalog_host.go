package events

// hostKinds are the kinds of the host producers (network, systemd, login,
// fail2ban, guest). Each entry needs a Go type and a schema file.
func hostKinds() []Kind {
	return nil
}
