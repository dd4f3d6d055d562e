package events

// hostKinds are the kinds of the host producers (network, systemd, login,
// fail2ban, guest, httpcheck) and the agent's shell sessions. Each entry needs a Go type and a schema file.
func hostKinds() []Kind {
	return []Kind{
		{Name: "network", Origin: FromAgent, Doc: "interfaces, addresses, default routes, DNS resolvers and VPN state", New: func() any { return new(Network) }},
		{Name: "systemd", Origin: FromAgent, Doc: "failed systemd units and the state of watched units", New: func() any { return new(Systemd) }},
		{Name: "login", Origin: FromAgent, Doc: "a successful login (sshd, systemd-logind)", New: func() any { return new(Login) }},
		{Name: "fail2ban", Origin: FromAgent, Doc: "a fail2ban ban, unban or restored ban, with the bans per jail", New: func() any { return new(Fail2ban) }},
		{Name: "httpcheck", Origin: FromAgent, Doc: "an HTTP(S) check of a declared domain: status, duration, TLS certificate expiry", New: func() any { return new(HTTPCheck) }},
		{Name: "guest", Origin: FromAgent, Doc: "a NixOS container or MicroVM: state, health, addresses, memory, CPU, disk", New: func() any { return new(Guest) }},
		{Name: "shell.session", Origin: FromAgent, Doc: "a pinkie shell session on the host opened or ended: who, from where, as which user, the command, the exit code", New: func() any { return new(ShellSession) }},
	}
}
