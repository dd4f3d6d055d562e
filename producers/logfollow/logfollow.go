// Package logfollow follows a log for the streaming producers (login,
// fail2ban): a file as `tail -F` does, through rotation by rename or by
// copytruncate, or the journal through `journalctl -o json`. The read
// position is kept in a small key-value State. The position is written
// only after the handler reports that the observation made from a record
// was emitted, so a restart neither repeats nor skips; records that yield
// nothing advance the position at most once a second and whenever the
// reader has caught up. It also parses syslog lines (ParseSyslog).
package logfollow

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Env is what a follower reads through: the host's rooted filesystem, a
// command runner for journalctl, the state that keeps the read position,
// and a logger. producers.Env provides all four.
type Env struct {
	// Root is the host's filesystem; log paths are rooted in it.
	Root fs.FS
	// Run runs journalctl; following the journal needs a StreamRunner.
	Run Runner
	// State keeps the position (nil: none is kept).
	State State
	// Log receives warnings about the log (nil: discarded).
	Log *slog.Logger
}

// Runner runs a command and returns its stdout and exit code separately
// (producers.Runner).
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (stdout []byte, code int, err error)
}

// StreamRunner starts a long-running command (journalctl --follow) and
// hands back its stdout as it is written (producers.StreamRunner).
type StreamRunner interface {
	Start(ctx context.Context, name string, args ...string) (stdout io.ReadCloser, wait func() error, err error)
}

// State keeps the follower's position under PositionKey (a file) or
// CursorKey (the journal); Put replaces a value atomically
// (producers.State).
type State interface {
	Get(key string) ([]byte, bool, error)
	Put(key string, value []byte) error
}

// Entry is one log record: a syslog line from a file (Line set,
// the rest parsed from it) or a journal entry.
type Entry struct {
	Time    time.Time // zero when the line's timestamp could not be read
	Host    string
	Ident   string // syslog identifier ("sshd", "sshd-session")
	PID     int
	Message string
	Line    string // the raw line (file) or "" (journal)
	// Key identifies the record for deterministic event ids: the file
	// position or the journal cursor.
	Key string
}

// Options says where to read.
type Options struct {
	// File is the log file's path on the host ("/var/log/auth.log").
	File string
	// Journal reads the journal instead, with journalctl and these matches.
	Journal        bool
	JournalMatches []string
	// Poll is how often a followed file is checked for growth and rotation.
	Poll time.Duration
	// Follow keeps reading as the log grows; false stops at its end.
	Follow bool
	// FromStart reads a log met for the first time (no saved position)
	// from its start. Otherwise a follower starts at its end, so a new
	// agent does not report a file's old history as news; a one-off
	// read (Follow false) always reads it all.
	FromStart bool
}

// filePos is the persisted position in a log file: which file
// (the hash of its first line, so it is found again after a rename) and
// the offset after the last line handled.
type filePos struct {
	File   string `json:"file"`
	ID     string `json:"id"`
	Offset int64  `json:"offset"`
}

const (
	// PositionKey is the State key of the position in a log file.
	PositionKey = "position"
	// CursorKey is the State key of the journal cursor.
	CursorKey = "cursor"
	// MaxLine bounds one line of a log file; the excess of a longer line
	// is dropped.
	MaxLine = 64 << 10
	// MaxJournalLine bounds one `journalctl -o json` entry:
	// journalctl prints fields over 4096 bytes as null, so real entries
	// are a few KB.
	MaxJournalLine = 1 << 20
)

// Handler handles one entry. It returns true when it emitted an
// observation (the position is then saved at once), or an error, which ends
// the follow without saving the position.
type Handler func(ctx context.Context, e Entry) (emitted bool, err error)

// Follow follows the log until ctx ends (or, without Follow, until
// its end) and calls handle for each entry.
func Follow(ctx context.Context, env Env, o Options, handle Handler) error {
	if o.Journal {
		return followJournal(ctx, env, o, handle)
	}
	f := &fileFollower{env: env, opts: o, path: strings.TrimPrefix(path.Clean("/"+o.File), "/")}
	return f.run(ctx, handle)
}

// fileFollower follows one log file through the rooted filesystem.
type fileFollower struct {
	env  Env
	opts Options
	path string // rooted, no leading slash

	cur     fs.File
	curName string // path of the open file (path, or a rotated sibling)
	rd      *bufio.Reader
	pos     filePos
	partial []byte
	// lineBytes counts the bytes of the line being read (partial may hold
	// fewer: long lines are cut).
	lineBytes int64
	dirty     bool
	saved     time.Time
}

func (f *fileFollower) run(ctx context.Context, handle Handler) error {
	defer f.close()
	if err := f.start(); err != nil {
		return err
	}
	for {
		if err := f.drain(ctx, handle, false); err != nil {
			return err
		}
		if err := f.save(true); err != nil {
			return err
		}
		if !f.opts.Follow {
			return nil
		}
		poll := f.opts.Poll
		if poll <= 0 {
			poll = time.Second
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := f.checkRotation(ctx, handle); err != nil {
			return err
		}
	}
}

func (f *fileFollower) close() {
	if f.cur != nil {
		_ = f.cur.Close()
		f.cur = nil
	}
}

// start opens the file at the saved position. If the saved file was
// rotated away while the agent was down, its remainder is read from the
// rotated copy (name.1, name-DATE) first.
func (f *fileFollower) start() error {
	var saved filePos
	have := false
	if f.env.State != nil {
		b, ok, err := f.env.State.Get(PositionKey)
		if err != nil {
			return fmt.Errorf("read saved position: %w", err)
		}
		if ok && json.Unmarshal(b, &saved) == nil && saved.File == f.path {
			have = true
		}
	}
	id, size, err := fileID(f.env.Root, f.path)
	if err != nil && !(have && saved.ID != "") {
		return fmt.Errorf("open log /%s: %w", f.path, err)
	}
	switch {
	case !have || saved.ID == "":
		if f.opts.Follow && !f.opts.FromStart && err == nil {
			logger(f.env).Info("following a log for the first time: starting at its end (earlier lines are not reported)", "file", "/"+f.path)
			if err := f.open(f.path, id, size); err != nil {
				return err
			}
			// Remember the starting point at once: a restart before the
			// next line must continue from here, not from a later end.
			f.dirty = true
			return f.save(false)
		}
		return f.open(f.path, "", 0)
	case err == nil && id == saved.ID:
		if size < saved.Offset { // truncated in place since
			return f.open(f.path, id, 0)
		}
		return f.open(f.path, id, saved.Offset)
	}
	for _, cand := range rotatedNames(f.env.Root, f.path) {
		if cid, _, err := fileID(f.env.Root, cand); err == nil && cid == saved.ID {
			return f.open(cand, cid, saved.Offset)
		}
	}
	if f.env.Log != nil {
		f.env.Log.Warn("saved log position not found: the file was rotated away; reading the current file from its start", "file", "/"+f.path)
	}
	if err != nil {
		return fmt.Errorf("open log /%s: %w", f.path, err)
	}
	return f.open(f.path, "", 0)
}

// rotatedNames lists the names a rotated copy of name may have, newest
// first: name.1 (logrotate's default) and name-YYYYMMDD (dateext).
func rotatedNames(root fs.FS, name string) []string {
	out := []string{name + ".1"}
	dir, base := path.Split(name)
	entries, _ := fs.ReadDir(root, strings.TrimSuffix(dir, "/"))
	var dated []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, base+"-") && !strings.HasSuffix(n, ".gz") && !strings.HasSuffix(n, ".xz") && !strings.HasSuffix(n, ".zst") {
			dated = append(dated, dir+n)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dated)))
	return append(out, dated...)
}

func (f *fileFollower) open(name, id string, offset int64) error {
	f.close()
	file, err := f.env.Root.Open(name)
	if err != nil {
		return fmt.Errorf("open log /%s: %w", name, err)
	}
	if offset > 0 {
		if s, ok := file.(io.Seeker); ok {
			_, err = s.Seek(offset, io.SeekStart)
		} else {
			_, err = io.CopyN(io.Discard, file, offset)
		}
		if err != nil {
			_ = file.Close()
			return fmt.Errorf("seek log /%s to %d: %w", name, offset, err)
		}
	}
	f.cur, f.curName = file, name
	f.rd = bufio.NewReaderSize(file, 32<<10)
	f.partial, f.lineBytes = f.partial[:0], 0
	f.pos = filePos{File: f.path, ID: id, Offset: offset}
	return nil
}

// drain reads every complete line of the open file; final also hands over
// a last line without newline (the file will not grow any more).
func (f *fileFollower) drain(ctx context.Context, handle Handler, final bool) error {
	for {
		chunk, err := f.rd.ReadSlice('\n')
		if room := MaxLine - len(f.partial); room > 0 {
			f.partial = append(f.partial, chunk[:min(len(chunk), room)]...)
		}
		f.lineBytes += int64(len(chunk))
		f.pos.Offset += int64(len(chunk))
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a very long line: read on, the excess is dropped
		}
		complete := err == nil
		if !complete {
			if !errors.Is(err, io.EOF) {
				return fmt.Errorf("read log /%s: %w", f.curName, err)
			}
			if !final || f.lineBytes == 0 {
				// Keep the partial line; after a restart its bytes are
				// read again from the saved offset.
				return nil
			}
		}
		lineStart := f.pos.Offset - f.lineBytes
		if f.pos.ID == "" && lineStart == 0 && complete {
			f.pos.ID = lineHash(f.partial)
		}
		line := strings.TrimRight(string(f.partial), "\r\n")
		f.partial, f.lineBytes = f.partial[:0], 0
		e := Entry{Line: line, Key: fmt.Sprintf("%s:%s:%d", f.path, f.pos.ID, lineStart)}
		emitted, herr := handle(ctx, e)
		if herr != nil {
			return herr
		}
		f.dirty = true
		if emitted {
			if err := f.save(false); err != nil {
				return err
			}
		}
		if !complete {
			return nil
		}
	}
}

// save writes the position: always after an emit, else (lazy) at most
// once a second.
func (f *fileFollower) save(lazy bool) error {
	if f.env.State == nil || !f.dirty {
		return nil
	}
	now := time.Now() // pacing only, never reported
	if lazy && now.Sub(f.saved) < time.Second && f.opts.Follow {
		return nil
	}
	pos := f.pos
	pos.Offset -= f.lineBytes
	b, _ := json.Marshal(pos)
	if err := f.env.State.Put(PositionKey, b); err != nil {
		return fmt.Errorf("save log position: %w", err)
	}
	f.dirty, f.saved = false, now
	return nil
}

// checkRotation switches to a new file at the path after reading what is
// left of the old one (rename and create), or starts the file again at 0
// (copytruncate: the same file, truncated).
func (f *fileFollower) checkRotation(ctx context.Context, handle Handler) error {
	if f.curName == f.path && f.pos.ID == "" {
		// The open file had no complete first line: read what came since,
		// so its id is known before it is compared.
		if err := f.drain(ctx, handle, false); err != nil {
			return err
		}
	}
	id, size, err := fileID(f.env.Root, f.path)
	if err != nil {
		return nil // renamed and not yet recreated: keep the open file
	}
	sameFile := false
	if f.curName == f.path {
		a, err1 := f.cur.Stat()
		b, err2 := fs.Stat(f.env.Root, f.path)
		sameFile = err1 == nil && err2 == nil && os.SameFile(a, b)
	}
	switch {
	case sameFile && (id != f.pos.ID || size < f.pos.Offset):
		// Truncated in place (copytruncate): read it again from 0.
		f.dirty = true
		return f.open(f.path, "", 0)
	case f.curName != f.path || id != f.pos.ID:
		// Another file is at the path (or the open one is a rotated copy
		// read after a restart): finish the old one, then switch.
		if err := f.drain(ctx, handle, true); err != nil {
			return err
		}
		f.dirty = true
		return f.open(f.path, "", 0)
	case size < f.pos.Offset:
		f.dirty = true
		return f.open(f.path, "", 0)
	}
	return nil
}

// fileID returns the hash of a file's first complete line ("" if
// it has none yet) and its size.
func fileID(root fs.FS, name string) (string, int64, error) {
	file, err := root.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return "", 0, err
	}
	buf := make([]byte, 4096)
	n, _ := io.ReadFull(file, buf)
	i := bytes.IndexByte(buf[:n], '\n')
	if i < 0 {
		if n == len(buf) {
			return lineHash(buf), st.Size(), nil
		}
		return "", st.Size(), nil
	}
	return lineHash(buf[:i+1]), st.Size(), nil
}

func lineHash(b []byte) string {
	if len(b) > 4096 {
		b = b[:4096]
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// journalEntry is the part of `journalctl -o json` output used
// (systemd.journal-fields(7)). MESSAGE is a string, or an array of bytes
// when it is not valid UTF-8.
type journalEntry struct {
	Cursor    string          `json:"__CURSOR"`
	Realtime  string          `json:"__REALTIME_TIMESTAMP"`
	Hostname  string          `json:"_HOSTNAME"`
	Ident     string          `json:"SYSLOG_IDENTIFIER"`
	PID       string          `json:"_PID"`
	SyslogPID string          `json:"SYSLOG_PID"`
	Message   json.RawMessage `json:"MESSAGE"`
}

// parseJournal turns one line of `journalctl -o json` into an
// entry. A line that is not a journal entry is an error.
func parseJournal(line []byte) (Entry, string, error) {
	var j journalEntry
	if err := json.Unmarshal(line, &j); err != nil {
		return Entry{}, "", fmt.Errorf("journal entry: %w", err)
	}
	if j.Cursor == "" {
		return Entry{}, "", fmt.Errorf("journal entry without __CURSOR")
	}
	e := Entry{Host: j.Hostname, Ident: j.Ident, Key: j.Cursor}
	if us, err := strconv.ParseInt(j.Realtime, 10, 64); err == nil {
		e.Time = time.UnixMicro(us).UTC()
	}
	pid := j.PID
	if pid == "" {
		pid = j.SyslogPID
	}
	e.PID, _ = strconv.Atoi(pid)
	var s string
	if err := json.Unmarshal(j.Message, &s); err == nil {
		e.Message = s
	} else {
		var raw []byte
		var ints []int
		if err := json.Unmarshal(j.Message, &ints); err == nil {
			for _, v := range ints {
				raw = append(raw, byte(v))
			}
			e.Message = strings.ToValidUTF8(string(raw), "\uFFFD")
		}
	}
	return e, j.Cursor, nil
}

// followJournal follows the journal with journalctl from the saved
// cursor (or, the first time, from the start of the current boot).
func followJournal(ctx context.Context, env Env, o Options, handle Handler) error {
	sr, ok := env.Run.(StreamRunner)
	if !ok && o.Follow {
		return fmt.Errorf("journal: the command runner cannot stream journalctl's output")
	}
	args := []string{"--output=json", "--no-pager"}
	if o.Follow {
		args = append(args, "--follow")
	}
	if env.State != nil {
		cur, ok, err := env.State.Get(CursorKey)
		if err != nil {
			return fmt.Errorf("read saved journal cursor: %w", err)
		}
		switch {
		case ok && len(cur) > 0:
			args = append(args, "--after-cursor="+string(cur))
		case o.Follow && !o.FromStart:
			args = append(args, "--lines=0") // first start: only what happens from now on
		default:
			args = append(args, "--boot", "--lines=all")
		}
	}
	args = append(args, o.JournalMatches...)
	var out io.Reader
	var wait func() error
	if ok {
		rc, w, err := sr.Start(ctx, "journalctl", args...)
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		defer rc.Close()
		out, wait = rc, w
	} else {
		b, code, err := env.Run.Run(ctx, "journalctl", args...)
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		if code != 0 {
			return fmt.Errorf("journal: journalctl exited %d", code)
		}
		out, wait = bytes.NewReader(b), func() error { return nil }
	}
	rd := bufio.NewReaderSize(out, 64<<10)
	var buf []byte
	var cursor string
	var saved time.Time
	save := func() error {
		if env.State == nil || cursor == "" {
			return nil
		}
		if err := env.State.Put(CursorKey, []byte(cursor)); err != nil {
			return fmt.Errorf("save journal cursor: %w", err)
		}
		cursor, saved = "", time.Now()
		return nil
	}
	var bad, long int
	var rerr error
	for rerr == nil {
		var line []byte
		var tooLong bool
		line, tooLong, rerr = readLine(rd, buf[:0], MaxJournalLine)
		buf = line
		if tooLong {
			if long++; long == 1 && env.Log != nil {
				env.Log.Warn("journal: skipping entries longer than the limit", "limit_bytes", MaxJournalLine)
			}
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, c, err := parseJournal(line)
		if err != nil {
			if bad++; bad == 1 && env.Log != nil {
				env.Log.Warn("journal: skipping entries that are not JSON", "err", err)
			}
			continue
		}
		emitted, err := handle(ctx, e)
		if err != nil {
			return err
		}
		cursor = c
		if emitted || time.Since(saved) > time.Second {
			if err := save(); err != nil {
				return err
			}
		}
	}
	if err := save(); err != nil {
		return err
	}
	if !errors.Is(rerr, io.EOF) && ctx.Err() == nil {
		return fmt.Errorf("journal: read: %w", rerr)
	}
	if err := wait(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// readLine reads one line of at most max bytes into buf and
// returns it without its newline; a longer line is read to its end and
// dropped (tooLong), so memory stays bounded whatever the input. err is
// the reader's (io.EOF at the end, with the last line if it had no
// newline).
func readLine(rd *bufio.Reader, buf []byte, max int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := rd.ReadSlice('\n')
		if !tooLong && len(buf)+len(chunk) <= max+1 {
			buf = append(buf, chunk...)
		} else {
			tooLong, buf = true, buf[:0]
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(buf, []byte("\n")), tooLong, err
	}
}

// ParseSyslog splits a syslog line into its time, host, ident,
// pid and message. It reads the formats rsyslog and syslog-ng write:
// RFC 3164 ("Mar  7 18:53:20 host sshd[1556]: msg", also without host),
// RFC 3339 timestamps ("2015-04-16T18:02:50.321974+00:00 host sshd[2716]:
// msg") and RFC 5424 ("<38>1 2019-07-08T17:40:16.954-04:00 host sshd
// 57915 - - msg"). RFC 3164 has no year: it is taken from now, and a date
// more than a day in the future is put in the year before (a December line
// read in January). ok is false for a line with no recognisable header.
func ParseSyslog(line string, now time.Time) (e Entry, ok bool) {
	e.Line = line
	rest := line
	if strings.HasPrefix(rest, "<") {
		// RFC 5424: <PRI>VERSION TIMESTAMP HOST APP PROCID MSGID SD MSG
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			return e, false
		}
		f := strings.SplitN(rest[end+1:], " ", 7)
		if len(f) < 7 {
			return e, false
		}
		t, err := time.Parse(time.RFC3339Nano, f[1])
		if err != nil {
			return e, false
		}
		e.Time, e.Host, e.Ident = t, f[2], f[3]
		e.PID, _ = strconv.Atoi(f[4])
		msg := f[6]
		if strings.HasPrefix(msg, "[") { // structured data
			// SD-ELEMENTs ("[id k=\"v\"]"), one after the other; inside a
			// quoted PARAM-VALUE brackets are text.
			depth, quoted, i := 0, false, 0
			for i = 0; i < len(msg); i++ {
				c := msg[i]
				switch {
				case c == '\\':
					i++
				case c == '"':
					quoted = !quoted
				case quoted:
				case c == '[':
					depth++
				case c == ']':
					depth--
				}
				if depth == 0 && !quoted && c == ']' && (i+1 == len(msg) || msg[i+1] != '[') {
					break
				}
			}
			if i >= len(msg) {
				return e, false
			}
			msg = strings.TrimPrefix(msg[i+1:], " ")
		} else {
			msg = strings.TrimPrefix(msg, "- ")
		}
		e.Message = strings.TrimPrefix(msg, "\ufeff")
		return e, true
	}
	if len(rest) >= 15 && rest[3] == ' ' && rest[6] == ' ' && rest[9] == ':' {
		t, err := time.ParseInLocation("Jan _2 15:04:05", rest[:15], now.Location())
		if err != nil {
			return e, false
		}
		t = time.Date(now.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, now.Location())
		if t.After(now.Add(24 * time.Hour)) {
			t = t.AddDate(-1, 0, 0)
		}
		e.Time = t
		rest = rest[15:]
	} else if sp := strings.IndexByte(rest, ' '); sp > 0 && sp >= 19 && rest[4] == '-' && rest[10] == 'T' {
		t, err := time.Parse(time.RFC3339Nano, rest[:sp])
		if err != nil {
			return e, false
		}
		e.Time = t
		rest = rest[sp:]
	} else {
		return e, false
	}
	rest = strings.TrimLeft(rest, " ")
	// Now "host ident[pid]: msg", "ident[pid]: msg" or "[ident]: msg".
	tok, after, _ := strings.Cut(rest, " ")
	if !isTag(tok) {
		e.Host = tok
		rest = after
		tok, after, _ = strings.Cut(rest, " ")
	}
	if !isTag(tok) {
		// "host ident msg" without a colon, as some relays write.
		return e, false
	}
	tag := strings.TrimSuffix(tok, ":")
	if i := strings.IndexByte(tag, '['); i >= 0 && strings.HasSuffix(tag, "]") {
		if i == 0 {
			tag = tag[1 : len(tag)-1] // "[sshd]"
		} else {
			e.PID, _ = strconv.Atoi(tag[i+1 : len(tag)-1])
			tag = tag[:i]
		}
	}
	e.Ident = tag
	e.Message = after
	return e, true
}

// isTag reports whether tok is a syslog tag: "ident:",
// "ident[pid]:" or "[ident]:".
func isTag(tok string) bool {
	if !strings.HasSuffix(tok, ":") || len(tok) < 2 {
		return false
	}
	t := tok[:len(tok)-1]
	if strings.HasSuffix(t, "]") {
		return strings.IndexByte(t, '[') >= 0
	}
	return !strings.ContainsAny(t, " []")
}

// Source resolves a streaming producer's log source. An
// explicit file or journal is taken as given. Otherwise: with preferFile,
// the first default file that exists; then the journal, when the host has
// one (persistent or volatile) and the runner can stream journalctl; then
// the first default file that exists. ok is false when there is nothing
// to follow on this host.
func Source(env Env, file string, journal bool, poll string, follow *bool, defaults, matches []string, preferFile bool) (o Options, ok bool) {
	o = Options{File: file, Journal: journal, JournalMatches: matches, Follow: true, Poll: time.Second}
	if follow != nil {
		o.Follow = *follow
	}
	if poll != "" {
		o.Poll, _ = time.ParseDuration(poll)
	}
	if o.File != "" || o.Journal {
		return o, true
	}
	existing := ""
	for _, f := range defaults {
		if _, err := fs.Stat(env.Root, strings.TrimPrefix(f, "/")); err == nil {
			existing = f
			break
		}
	}
	if preferFile && existing != "" {
		o.File = existing
		return o, true
	}
	if _, ok := env.Run.(StreamRunner); ok {
		for _, dir := range []string{"var/log/journal", "run/log/journal"} {
			if entries, err := fs.ReadDir(env.Root, dir); err == nil && len(entries) > 0 {
				o.Journal = true
				return o, true
			}
		}
	}
	o.File = existing
	return o, existing != ""
}

func logger(env Env) *slog.Logger {
	if env.Log != nil {
		return env.Log
	}
	return slog.New(slog.DiscardHandler)
}

// WithSyslogHeader parses a file entry's line (its syslog header) and
// keeps the entry's key.
func (e Entry) WithSyslogHeader(now time.Time) (Entry, bool) {
	p, ok := ParseSyslog(e.Line, now)
	p.Key = e.Key
	return p, ok
}
