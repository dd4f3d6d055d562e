package fleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pinkiefleet/pinkie/events"
)

// Dashy renders a dashy configuration (conf.yml): a section per host
// that serves domains, an item per domain. Every scalar is written as a
// JSON string, which is also a valid YAML double-quoted scalar, so no YAML
// library is needed and no value can break the document.
func Dashy(decl events.FleetDeclared, title string) []byte {
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	var w bytes.Buffer
	desc := "Hosts and services declared in " + decl.Flake
	if decl.Revision != "" {
		desc += " at " + decl.Revision
	}
	fmt.Fprintf(&w, "# Written by pinkie fleet export --format dashy from %s; changes are overwritten.\n", q(decl.Flake))
	fmt.Fprintf(&w, "pageInfo:\n  title: %s\n  description: %s\n", q(title), q(desc))
	fmt.Fprintf(&w, "appConfig:\n  statusCheck: true\n  layout: auto\n")
	sections := 0
	for _, h := range decl.Hosts {
		if len(h.Domains) == 0 {
			continue
		}
		if sections == 0 {
			w.WriteString("sections:\n")
		}
		sections++
		fmt.Fprintf(&w, "  - name: %s\n    icon: %s\n    items:\n", q(h.Name), q("fas fa-server"))
		for _, d := range h.Domains {
			fmt.Fprintf(&w, "      - title: %s\n", q(d.Name))
			descr := d.Server + " on " + h.Name
			if len(d.Aliases) > 0 {
				descr += ", also " + strings.Join(d.Aliases, ", ")
			}
			fmt.Fprintf(&w, "        description: %s\n        url: %s\n        icon: %s\n        statusCheck: true\n", q(descr), q(d.URL), q("favicon"))
			if len(h.Deployment.Tags) > 0 {
				tags := make([]string, len(h.Deployment.Tags))
				for i, t := range h.Deployment.Tags {
					tags[i] = q(t)
				}
				fmt.Fprintf(&w, "        tags: [%s]\n", strings.Join(tags, ", "))
			}
		}
	}
	if sections == 0 {
		w.WriteString("sections: []\n")
	}
	return w.Bytes()
}
