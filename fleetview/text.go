package fleetview

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
)

// Text renderings of the views, as the CLI prints them (pinkie hosts,
// guests, alerts, silence ls, last-deploy, deploy). Every value that came
// from an event goes through events.Escape, so it cannot fake a row or a
// column, or move the terminal's cursor.

func show(s string) string { return events.Escape(s) }

// OrDash shows an empty field as "-".
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newTable(w io.Writer, tabwidth int, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, tabwidth, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// WriteHosts is the hosts table.
func WriteHosts(w io.Writer, now time.Time, hosts []*projections.Host) error {
	tw := newTable(w, 0, "HOST\tSTATE\tLAST SEEN\tOS\tKERNEL\tUPTIME\tPRODUCERS")
	for _, h := range hosts {
		os, kernel, uptime := "-", "-", "-"
		if h.Profile != nil {
			os, kernel = OrDash(h.Profile.OS.PrettyName), OrDash(h.Profile.Kernel)
		}
		if h.Heartbeat != nil {
			uptime = ShortDuration(time.Duration(h.Heartbeat.UptimeSeconds) * time.Second)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", show(h.Host), HostState(h), Ago(now, h.LastSeen), show(os), show(kernel), uptime, len(h.Producers))
	}
	return tw.Flush()
}

// WriteHost is one host in detail: its profile, producers and storage.
func WriteHost(w io.Writer, now time.Time, v HostView) error {
	h := v.Host
	fmt.Fprintf(w, "host:       %s (%s)\n", show(h.Host), HostState(h))
	fmt.Fprintf(w, "last seen:  %s (%s)\n", h.LastSeen.Format(time.RFC3339), Ago(now, h.LastSeen))
	if h.LastHeartbeat != nil {
		fmt.Fprintf(w, "heartbeat:  %s (%s)\n", h.LastHeartbeat.Format(time.RFC3339), Ago(now, *h.LastHeartbeat))
	}
	if p := h.Profile; p != nil {
		fmt.Fprintf(w, "os:         %s\nkernel:     %s %s\ncpu:        %s (%d cores, %d threads)\nmemory:     %.1f GiB\n",
			show(OrDash(p.OS.PrettyName)), show(p.Kernel), show(p.Arch), show(p.CPU.Model), p.CPU.Cores, p.CPU.Threads, float64(p.Memory.TotalBytes)/(1<<30))
	}
	names := make([]string, 0, len(h.Producers))
	for n := range h.Producers {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "producers:")
	for _, n := range names {
		p := h.Producers[n]
		fmt.Fprintf(w, "  %-12s %-28s last %s, %d events\n", show(n), show(strings.Join(p.Kinds, ",")), Ago(now, p.Last), p.Events)
	}
	if len(v.Drives) == 0 {
		return nil
	}
	fmt.Fprintln(w, "storage:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, d := range v.Drives {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", show(d.Kind), show(d.Object), show(d.Verdict), show(d.State), show(strings.Join(d.Reasons, "; ")))
	}
	return tw.Flush()
}

// WriteGuests is the guests table: memory (of its limit), CPU and network
// rates, disk, uptime and when each last reported.
func WriteGuests(w io.Writer, now time.Time, gs []GuestView) error {
	tw := newTable(w, 0, "HOST\tGUEST\tTYPE\tSTATUS\tADDRESSES\tDOMAINS\tMEMORY\tCPU\tNET IN/OUT\tDISK\tUPTIME\tREPORTED")
	for _, g := range gs {
		mem := ByteSize(int64(g.Guest.MemoryBytes))
		if g.Guest.MemoryMaxBytes > 0 {
			mem += fmt.Sprintf(" (%.0f%%)", g.Guest.MemoryPercent)
		}
		cpu, net := "-", "-"
		if g.CPUPercent != nil {
			cpu = fmt.Sprintf("%.1f%%", *g.CPUPercent)
		}
		if g.NetRXBytesPerSecond != nil && g.NetTXBytesPerSecond != nil {
			net = ByteSize(int64(*g.NetRXBytesPerSecond)) + "/s " + ByteSize(int64(*g.NetTXBytesPerSecond)) + "/s"
		}
		disk, uptime, reported := "-", "-", "never"
		if g.Guest.StateDir != "" {
			disk = ByteSize(int64(g.Guest.DiskBytes))
		}
		if g.Guest.UptimeSeconds > 0 {
			uptime = ShortDuration(time.Duration(g.Guest.UptimeSeconds) * time.Second)
		}
		if !g.Time.IsZero() {
			reported = Ago(now, g.Time)
			if g.Stale {
				reported += " (stale)"
			}
		}
		status := g.Status
		if g.Guest.Restarts > 0 {
			status += fmt.Sprintf(" (%d restarts)", g.Guest.Restarts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", show(g.Host), show(g.Name), show(OrDash(g.Guest.Type)), show(status),
			show(OrDash(strings.Join(g.Guest.Addresses, ","))), show(OrDash(strings.Join(g.Domains, ","))), mem, cpu, net, disk, uptime, reported)
	}
	return tw.Flush()
}

// WriteAlerts is the alerts table.
func WriteAlerts(w io.Writer, now time.Time, alerts []projections.ActiveAlert) error {
	tw := newTable(w, 0, "SEVERITY\tHOST\tRULE\tOBJECT\tSINCE\tSILENCED\tSUMMARY")
	for _, al := range alerts {
		sil := "-"
		if al.Silenced {
			sil = "silenced (" + strings.Join(al.SilencedBy, ",") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", show(al.Severity), show(al.Host), show(al.Rule), show(OrDash(al.Object)),
			Ago(now, al.StartsAt), show(sil), show(al.Summary))
	}
	return tw.Flush()
}

// WriteSilences is the silences table.
func WriteSilences(w io.Writer, now time.Time, silences []Silence) error {
	tw := newTable(w, 0, "ID\tMATCHERS\tENDS\tSILENCING\tBY\tCOMMENT")
	for _, s := range silences {
		ends := s.EndsAt.Format(time.RFC3339) + " (" + Ago(now, s.EndsAt) + ")"
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", show(s.ID), show(events.FormatSilenceMatchers(s.Matchers)), ends, s.Silencing, show(OrDash(s.CreatedBy)), show(OrDash(s.Comment)))
	}
	return tw.Flush()
}

// WriteLastDeploys is the last-deploy table: each host's status, last
// success (local time, age, revision) and last attempt.
func WriteLastDeploys(w io.Writer, now time.Time, lines []LastDeploy) error {
	tw := newTable(w, 4, "HOST\tSTATUS\tLAST SUCCESS\tAGE\tREVISION\tLAST ATTEMPT")
	for _, l := range lines {
		when, age, rev, attempt := "-", "-", "-", "-"
		if l.Record != nil && l.Record.LastSuccess != nil {
			s := l.Record.LastSuccess
			when, age = s.Time.Local().Format("2006-01-02 15:04:05"), HumanAge(now.Sub(s.Time))
			if s.Revision != "" {
				rev = s.Revision[:min(len(s.Revision), 12)]
			}
		}
		if l.Record != nil && l.Record.LastAttempt != nil {
			at := l.Record.LastAttempt
			attempt = at.Outcome + " (" + at.Phase + ", " + HumanAge(now.Sub(at.PhaseTime)) + " ago)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", show(l.Host), show(l.Status), when, age, show(rev), show(attempt))
	}
	return tw.Flush()
}

// WriteDeployPlan is a deploy's plan: the flake, its revision and where
// each host builds with which goal.
func WriteDeployPlan(w io.Writer, d Deploy) error {
	rev := d.Revision
	if rev == "" {
		rev = "(no revision: dirty or not a git tree)"
	}
	fmt.Fprintf(w, "flake %s\nrevision %s\n\n", d.Flake, rev)
	tw := newTable(w, 4, "HOST\tBUILD ON\tGOAL")
	for _, h := range d.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", show(h.Host), show(h.BuildOn), show(h.Goal))
	}
	return tw.Flush()
}

// WriteDeployOutcomes is each host's outcome once a deploy was followed,
// after a blank line.
func WriteDeployOutcomes(w io.Writer, d Deploy) error {
	tw := newTable(w, 4, "\nHOST\tOUTCOME\tSTORE PATH\tREASON")
	for _, h := range d.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", show(h.Host), show(h.Outcome), show(h.StorePath), show(h.Reason))
	}
	return tw.Flush()
}
