package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/shell"
)

// Session recordings (pinkie agent --shell-record) stay on the host, in
// the agent's own JetStream: SHELLREC, one subject per session, each
// message one line of an asciicast v2 file (the header, then [time, "o",
// text] output and [time, "r", "COLSxROWS"] resize events; input is not
// recorded: it holds passwords typed without echo). They never reach the
// hub, whose streams every reader key may read: an operator replays one
// with pinkie shell HOST --replay SESSION, over the session subjects only
// operators may use.
const (
	ShellRecStream = events.StreamShellRec
	shellRecPrefix = "shellrec"
	// ShellRecSessionMax bounds one session's recording; past it, a marker
	// event says the rest was not recorded.
	ShellRecSessionMax = 16 << 20
)

func shellRecSubject(session string) string { return shellRecPrefix + "." + session }

func shellRecConfig(maxBytes int64) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: ShellRecStream, Description: "pinkie shell session recordings (asciicast v2 lines), oldest dropped first",
		Subjects: []string{shellRecPrefix + ".>"}, Storage: jetstream.FileStorage,
		MaxBytes: maxBytes, Discard: jetstream.DiscardOld, MaxAge: 90 * 24 * time.Hour,
	}
}

// recorder writes one session's asciicast.
type recorder struct {
	js      jetstream.JetStream
	subject string
	start   time.Time
	mu      sync.Mutex
	n       int64
	full    bool
	err     error
	// partial is the start of a UTF-8 character the last output chunk
	// ended in: asciicast text is UTF-8, and a character cut in two by
	// the chunking must not become two replacement characters.
	partial []byte
}

func newRecorder(js jetstream.JetStream, session string, req shell.Open, shellPath string, start time.Time) *recorder {
	r := &recorder{js: js, subject: shellRecSubject(session), start: start}
	cols, rows := int(req.Cols), int(req.Rows)
	if cols == 0 || rows == 0 {
		cols, rows = 80, 24
	}
	h := map[string]any{"version": 2, "width": cols, "height": rows, "timestamp": start.Unix(),
		"env": map[string]string{"TERM": req.Term, "SHELL": shellPath}}
	if req.Command != "" {
		h["command"] = req.Command
	}
	b, _ := json.Marshal(h)
	r.line(b)
	return r
}

// output records a chunk of output.
func (r *recorder) output(p []byte) {
	r.mu.Lock()
	p = append(r.partial, p...)
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				cut = i
			}
			break
		}
	}
	r.partial = append([]byte(nil), p[cut:]...)
	r.mu.Unlock()
	if cut > 0 {
		r.event("o", string(p[:cut]))
	}
}

func (r *recorder) event(kind, data string) {
	b, _ := json.Marshal([]any{json.Number(strconv.FormatFloat(time.Since(r.start).Seconds(), 'f', 6, 64)), kind, data})
	r.line(b)
}

func (r *recorder) line(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return
	}
	if r.n+int64(len(b)) > ShellRecSessionMax {
		r.full = true
		b, _ = json.Marshal([]any{json.Number(strconv.FormatFloat(time.Since(r.start).Seconds(), 'f', 6, 64)), "m", "the recording stops here: over its size limit"})
	}
	r.n += int64(len(b)) + 1
	if _, err := r.js.PublishAsync(r.subject, append(b, '\n')); err != nil && r.err == nil {
		r.err = err
	}
}

// wait writes what is left and waits until the recording is stored.
func (r *recorder) wait(ctx context.Context) error {
	r.mu.Lock()
	rest := r.partial
	r.partial = nil
	r.mu.Unlock()
	if len(rest) > 0 {
		r.event("o", string(rest))
	}
	select {
	case <-r.js.PublishAsyncComplete():
	case <-ctx.Done():
		return fmt.Errorf("store the recording: %w", ctx.Err())
	}
	return r.err
}

// replay sends session's recording as the session ss's output, within the
// operator's credit, and reports how many bytes it sent.
func (ss *shellSession) replay(ctx context.Context, session string) (int64, error) {
	js := ss.a.js
	if _, err := js.Stream(ctx, ShellRecStream); err != nil {
		return 0, fmt.Errorf("%s records no sessions (pinkie agent --shell-record)", ss.a.Host())
	}
	cons, err := js.OrderedConsumer(ctx, ShellRecStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{shellRecSubject(session)}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return 0, fmt.Errorf("read the recording: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the recording: %w", err)
	}
	left := info.NumPending
	if left == 0 {
		return 0, fmt.Errorf("%s holds no recording of session %s", ss.a.Host(), session)
	}
	var off int64
	subject := ss.subject(events.ShellOut)
	for left > 0 {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return off, fmt.Errorf("read the recording: %w", err)
		}
		left--
		data := m.Data()
		for sent := 0; sent < len(data); {
			n, err := ss.outWin.Take(ctx, int64(min(len(data)-sent, shell.Chunk)))
			if err != nil {
				return off, errors.New("replay cut")
			}
			out := nats.NewMsg(subject)
			out.Header.Set(shell.HeaderOffset, strconv.FormatInt(off, 10))
			out.Data = append([]byte(nil), data[sent:sent+int(n)]...)
			if err := ss.a.nc.PublishMsg(out); err != nil {
				return off, err
			}
			sent += int(n)
			off += n
		}
	}
	return off, nil
}
