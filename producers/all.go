package producers

import "sort"

// All lists every producer, sorted by name. Adding a producer means adding
// its Spec here: there is no init() registration.
func All() []Spec {
	specs := []Spec{
		heartbeatSpec(),
		profileSpec(),
		loginSpec(),
		fail2banSpec(),
		networkSpec(),
		systemdSpec(),
		guestSpec(),
		httpCheckSpec(),
		smartSpec(),
		zfsSpec(),
		mdraidSpec(),
		btrfsSpec(),
		fsSpec(),
		pathSpec(),
		postgresSpec(),
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs
}

// Names lists every producer's name, sorted.
func Names() []string {
	var names []string
	for _, s := range All() {
		names = append(names, s.Name)
	}
	return names
}

// Lookup finds a producer by name.
func Lookup(name string) (Spec, bool) {
	for _, s := range All() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}
