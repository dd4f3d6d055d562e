package shell

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"time"
)

// CastPlayer plays an asciicast v2 file written to it: each output
// event's text at its time, pauses capped at maxGap; the header and other
// events are skipped.
type CastPlayer struct {
	w      io.Writer
	maxGap time.Duration
	buf    []byte
	header bool
	at     float64
}

// NewCastPlayer plays to w, sleeping at most maxGap between outputs.
func NewCastPlayer(w io.Writer, maxGap time.Duration) *CastPlayer {
	return &CastPlayer{w: w, maxGap: maxGap}
}

// Write takes the next bytes of the file and plays the whole lines.
func (p *CastPlayer) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := p.buf[:i]
		p.buf = p.buf[i+1:]
		if !p.header {
			p.header = true
			continue
		}
		var ev []any
		if json.Unmarshal(line, &ev) != nil || len(ev) != 3 {
			continue
		}
		t, _ := ev[0].(float64)
		kind, _ := ev[1].(string)
		text, _ := ev[2].(string)
		if kind != "o" {
			continue
		}
		if gap := time.Duration((t - p.at) * float64(time.Second)); gap > 0 {
			time.Sleep(min(gap, p.maxGap))
		}
		p.at = t
		if _, err := io.WriteString(p.w, text); err != nil {
			return 0, err
		}
	}
}

// CommandLine is what the remote shell runs: one argument as given
// (a command line), several quoted each.
func CommandLine(args []string) string {
	if len(args) <= 1 {
		return strings.Join(args, "")
	}
	q := make([]string, len(args))
	for i, s := range args {
		q[i] = quote(s)
	}
	return strings.Join(q, " ")
}

func quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
