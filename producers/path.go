package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/pinkiefleet/pinkie/events"
)

// Paths reports the total size of directories the operator lists (e.g.
// /var/lib/postgresql, /var/log), so their growth can be followed. Each
// walk has a time and a file budget: a huge tree cannot stall the agent;
// the event then says complete: false and why. Symbolic links are not
// followed; hard-linked files count once towards disk_bytes.
type Paths struct {
	every time.Duration
	opts  pathOptions
	limit time.Duration
}

type pathOptions struct {
	// Paths are absolute directories to measure.
	Paths []string `json:"paths"`
	// MaxFiles is the most entries one walk visits (default 1000000).
	MaxFiles uint64 `json:"max_files"`
	// MaxDuration is the longest one walk may take (default "10s").
	MaxDuration string `json:"max_duration"`
}

func pathSpec() Spec {
	return Spec{Name: "path", Doc: "total size of listed directories, walked within a time and file budget", DefaultEnabled: true,
		New: func(raw json.RawMessage, _ Info) (any, error) {
			return NewPaths(raw)
		}}
}

// NewPaths builds the path producer from its options.
func NewPaths(raw json.RawMessage) (*Paths, error) {
	o := pathOptions{MaxFiles: 1_000_000, MaxDuration: "10s"}
	if err := DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	limit, err := time.ParseDuration(o.MaxDuration)
	if err != nil || limit <= 0 {
		return nil, fmt.Errorf("options: max_duration %q is not a positive duration", o.MaxDuration)
	}
	if o.MaxFiles == 0 {
		return nil, errors.New("options: max_files must be above 0")
	}
	for _, p := range o.Paths {
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("options: path %q is not absolute", p)
		}
	}
	return &Paths{every: 30 * time.Minute, opts: o, limit: limit}, nil
}

func (p *Paths) Name() string            { return "path" }
func (p *Paths) Interval() time.Duration { return p.every }

func (p *Paths) Collect(ctx context.Context, env Env) ([]Observation, error) {
	if len(p.opts.Paths) == 0 {
		return nil, ErrNotApplicable // nothing listed
	}
	var obs []Observation
	var errs []error
	for _, dir := range p.opts.Paths {
		d, err := p.walk(ctx, env, dir)
		if err != nil {
			errs = append(errs, err)
		}
		d.Verdict, d.Reasons = JudgePath(d, err)
		obs = append(obs, Observation{Kind: "path", Object: d.Path, Data: d, ID: storageEventID(env.Host, "path", d.Path, d)})
	}
	return obs, errors.Join(errs...)
}

// pathStop ends a walk whose budget ran out.
var pathStop = errors.New("budget spent")

// walk measures one directory tree. The error is about the path itself
// (missing, unreadable); entries inside that cannot be read are counted.
func (p *Paths) walk(ctx context.Context, env Env, dir string) (d events.PathUsage, err error) {
	clean := path.Clean(dir)
	d = events.PathUsage{Path: clean, Complete: true}
	name := strings.TrimPrefix(clean, "/")
	if name == "" {
		name = "."
	}
	start := env.Now()
	defer func() { d.DurationSeconds = env.Now().Sub(start).Seconds() }()
	info, statErr := fs.Stat(env.Root, name)
	if err = statErr; err != nil {
		d.Complete = false
		d.IncompleteReason = "not measured: " + pathErrText(err)
		return d, fmt.Errorf("path %s: %w", clean, err)
	}
	if !info.IsDir() {
		d.Files, d.SizeBytes, d.DiskBytes = 1, uint64(max(info.Size(), 0)), pathDiskBytes(info)
		return d, nil
	}
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var firstErr error
	walkErr := fs.WalkDir(env.Root, name, func(rel string, e fs.DirEntry, err error) error {
		if err != nil {
			d.Unreadable++
			if firstErr == nil {
				firstErr = err
			}
			if rel == name {
				return err // the listed directory itself cannot be read
			}
			return nil
		}
		if ctx.Err() != nil {
			d.Complete, d.IncompleteReason = false, "stopped: "+ctx.Err().Error()
			return pathStop
		}
		if d.Files+d.Dirs >= p.opts.MaxFiles {
			d.Complete = false
			d.IncompleteReason = fmt.Sprintf("stopped after %d entries (max_files); sizes cover only what was walked", d.Files+d.Dirs)
			return pathStop
		}
		if el := env.Now().Sub(start); el >= p.limit {
			d.Complete = false
			d.IncompleteReason = fmt.Sprintf("stopped after %s (max_duration %s) at %d entries; sizes cover only what was walked", el.Round(time.Millisecond), p.limit, d.Files+d.Dirs)
			return pathStop
		}
		if e.IsDir() {
			if rel != name {
				d.Dirs++
			}
			return nil
		}
		d.Files++
		fi, err := e.Info()
		if err != nil {
			d.Unreadable++
			return nil
		}
		if !fi.Mode().IsRegular() {
			return nil // symlinks, sockets, devices hold no data of their own
		}
		d.SizeBytes += uint64(max(fi.Size(), 0))
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		d.DiskBytes += pathDiskBytes(fi)
		return nil
	})
	if walkErr != nil && !errors.Is(walkErr, pathStop) {
		d.Complete = false
		d.IncompleteReason = "not measured: " + pathErrText(walkErr)
		return d, fmt.Errorf("path %s: %w", clean, walkErr)
	}
	if d.Unreadable > 0 && d.Complete {
		d.Complete = false
		d.IncompleteReason = fmt.Sprintf("%d entries could not be read (first: %s); sizes leave them out", d.Unreadable, pathErrText(firstErr))
	}
	return d, nil
}

// pathDiskBytes is the space a file occupies (st_blocks are 512 bytes),
// or its size where the filesystem does not say.
func pathDiskBytes(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512
	}
	return uint64(max(fi.Size(), 0))
}

func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// JudgePath is the verdict over one measured path: a warning when the
// path is missing or cannot be read (the operator listed it, so it is
// expected to be there). A walk cut short by its budget is ok: complete
// and incomplete_reason say so.
func JudgePath(d events.PathUsage, walkErr error) (string, []string) {
	var j storageJudgement
	switch {
	case errors.Is(walkErr, fs.ErrNotExist):
		j.warn("%s does not exist", d.Path)
	case walkErr != nil:
		j.warn("%s could not be measured: %s", d.Path, pathErrText(walkErr))
	}
	return j.result()
}
