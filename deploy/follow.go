package deploy

import (
	"context"
	"fmt"
	"io"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/fleetview"
)

// NextPhase returns the next stored deploy message (its subject and
// data), blocking until there is one; it fails once its context ends.
type NextPhase func() (subject string, data []byte, err error)

// TerminalPhase reports whether a phase ends a host's deploy.
func TerminalPhase(p string) bool {
	switch p {
	case "activated", "failed", "rolledback", "build.failed", "skipped":
		return true
	}
	return false
}

// Follow applies each deploy phase next returns to the requests in hosts
// (those with a RequestID) until every one has ended, writing a line per
// phase to lines when it is not nil. When ctx ends first, the hosts
// without an outcome are marked "timeout" and ctx's error is returned.
func Follow(ctx context.Context, next NextPhase, hosts []fleetview.DeployHost, lines io.Writer) error {
	byID := map[string]*fleetview.DeployHost{}
	open := 0
	for i := range hosts {
		if hosts[i].RequestID != "" {
			byID[hosts[i].RequestID] = &hosts[i]
			open++
		}
	}
	for open > 0 {
		subject, data, err := next()
		if err != nil {
			if ctx.Err() != nil {
				for _, h := range byID {
					if !TerminalPhase(h.Outcome) {
						h.Outcome, h.Reason = "timeout", "no outcome before --timeout (is the agent connected?)"
					}
				}
				return ctx.Err()
			}
			return err
		}
		e, k, err := events.Decode(data)
		if err != nil {
			continue
		}
		phase, ok := events.DeployPhaseOf(k.Name)
		if !ok {
			continue
		}
		d, err := events.DecodeData(e, k)
		if err != nil {
			continue
		}
		p := d.(*events.DeployPhase)
		h := byID[p.RequestID]
		if h == nil || h.Host != p.Host || TerminalPhase(h.Outcome) {
			continue
		}
		h.Phases = append(h.Phases, phase)
		h.Outcome = phase
		if p.StorePath != "" {
			h.StorePath = p.StorePath
		}
		if p.Reason != "" {
			h.Reason = p.Reason
		}
		if p.FetchedPaths > 0 || p.FetchedBytes > 0 {
			h.FetchedPaths, h.FetchedBytes = p.FetchedPaths, p.FetchedBytes
		}
		if lines != nil {
			printPhase(lines, subject, phase, p)
		}
		if TerminalPhase(phase) {
			open--
		}
	}
	return nil
}

// printPhase writes one phase as pinkie deploy --wait shows it, with the
// sender when another host (a builder) sent it.
func printPhase(w io.Writer, subject, phase string, p *events.DeployPhase) {
	show := events.Escape
	detail := ""
	switch {
	case p.Reason != "":
		detail = p.Reason
	case phase == "built" || phase == "activated":
		detail = fmt.Sprintf("%s (%.1fs)", p.StorePath, p.DurationSeconds)
		if p.FetchedPaths > 0 {
			detail += fmt.Sprintf(", fetched %d paths, %d bytes from the hub's cache", p.FetchedPaths, p.FetchedBytes)
		}
	case phase == "build.started":
		detail = "on " + p.Builder
	}
	sender, _, _ := events.HostFromSubject(subject)
	by := ""
	if sender != p.Host {
		by = " [" + sender + "]"
	}
	fmt.Fprintf(w, "%-16s %-18s %s%s\n", show(p.Host), show(phase), show(detail), show(by))
	for _, l := range p.Log {
		fmt.Fprintf(w, "%-16s   | %s\n", show(p.Host), show(l))
	}
}

// Failed counts the hosts that did not deploy: an outcome other than
// activated, where a host still "requested" counts only when the deploy
// was followed to its end.
func Failed(hosts []fleetview.DeployHost, followed bool) int {
	failed := 0
	for _, h := range hosts {
		switch h.Outcome {
		case "requested":
			if followed {
				failed++
			}
		case "activated":
		default:
			failed++
		}
	}
	return failed
}
