package shell

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Spec is what a session runs.
type Spec struct {
	User User
	// Command runs with the user's shell as `shell -c Command` (as sshd
	// does); empty starts an interactive login shell.
	Command string
	// TTY runs it on a pty (stdout and stderr then are one stream).
	TTY        bool
	Term       string
	Rows, Cols uint16
	// SwitchUser sets the process's uid, gid and groups to User's (the
	// agent runs as root); false runs it as the agent's own user.
	SwitchUser bool
	// Path is the PATH the process starts with.
	Path string
	// Wrap, when set, is the command line the shell runs under, e.g.
	// nsenter into a container (guest.go): the shell is then started as
	// Wrap... SHELL -c COMMAND (a login shell as SHELL -l, since argv[0]
	// cannot pass through Wrap). The process starts in / (the wrapper
	// picks the working directory).
	Wrap []string
}

// Process is a session's running process.
type Process struct {
	// Stdin takes the session's input; Stdout gives its output (the pty's,
	// with TTY); Stderr its error output (nil with TTY).
	Stdin  io.WriteCloser
	Stdout io.Reader
	Stderr io.Reader

	cmd *exec.Cmd
	pty *os.File
	// conn is a console socket's connection (DialConsole), instead of cmd.
	conn net.Conn
	done chan struct{}
	code int
	err  error
	once sync.Once
}

// ptyDrain is how long the output of a pty is read after its process
// exited while nothing more arrives: a background job that keeps the pty
// open does not hold the session.
const ptyDrain = 300 * time.Millisecond

// Start starts spec's process.
func Start(spec Spec) (*Process, error) {
	sh := spec.User.Shell
	if sh == "" {
		sh = "/bin/sh"
	}
	var cmd *exec.Cmd
	switch {
	case len(spec.Wrap) > 0:
		args := append(append([]string{}, spec.Wrap[1:]...), sh)
		if spec.Command == "" {
			args = append(args, "-l")
		} else {
			args = append(args, "-c", spec.Command)
		}
		cmd = exec.Command(spec.Wrap[0], args...)
	case spec.Command == "":
		cmd = exec.Command(sh)
		cmd.Args = []string{"-" + filepath.Base(sh)} // a login shell, as login(1) and sshd start it
	default:
		cmd = exec.Command(sh, "-c", spec.Command)
	}
	cmd.Env = []string{
		"HOME=" + spec.User.Home, "USER=" + spec.User.Name, "LOGNAME=" + spec.User.Name,
		"SHELL=" + sh, "PATH=" + spec.Path,
	}
	if spec.TTY && spec.Term != "" {
		cmd.Env = append(cmd.Env, "TERM="+spec.Term)
	}
	if lang := os.Getenv("LANG"); lang != "" {
		cmd.Env = append(cmd.Env, "LANG="+lang)
	}
	cmd.Dir = "/"
	if st, err := os.Stat(spec.User.Home); err == nil && st.IsDir() && len(spec.Wrap) == 0 {
		cmd.Dir = spec.User.Home
	}
	attr := &syscall.SysProcAttr{}
	if spec.SwitchUser {
		attr.Credential = &syscall.Credential{Uid: spec.User.UID, Gid: spec.User.GID, Groups: spec.User.Groups}
	}
	cmd.SysProcAttr = attr
	p := &Process{cmd: cmd, done: make(chan struct{})}
	if spec.TTY {
		if err := p.startPTY(spec); err != nil {
			return nil, err
		}
	} else if err := p.startPipes(); err != nil {
		return nil, err
	}
	go p.wait()
	return p, nil
}

func (p *Process) startPTY(spec Spec) error {
	master, tty, err := openPTY()
	if err != nil {
		return fmt.Errorf("open a pty: %w", err)
	}
	defer tty.Close()
	if spec.SwitchUser || len(spec.Wrap) > 0 {
		// The user's own terminal, as login(1) leaves it (a guest's user
		// too: NixOS containers share the host's uids).
		if err := os.Chown(tty.Name(), int(spec.User.UID), -1); err != nil {
			master.Close()
			return fmt.Errorf("chown %s: %w", tty.Name(), err)
		}
	}
	if err := setSize(master, spec.Rows, spec.Cols); err != nil {
		master.Close()
		return err
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = tty, tty, tty
	p.cmd.SysProcAttr.Setsid = true
	p.cmd.SysProcAttr.Setctty = true
	if err := p.cmd.Start(); err != nil {
		master.Close()
		return fmt.Errorf("start %s: %w", p.cmd.Path, err)
	}
	p.pty = master
	p.Stdin = nopCloser{master}
	p.Stdout = ptyReader{f: master, exited: p.done}
	return nil
}

// openPTY opens a pty pair whose master is non-blocking, so reads on it
// can have deadlines (pty.Open's master went through Fd(), which makes a
// file blocking for good).
func openPTY() (master, tty *os.File, err error) {
	m, t, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	fd, err := unix.Dup(int(m.Fd()))
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("dup pty master: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		t.Close()
		return nil, nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), m.Name()), t, nil
}

func (p *Process) startPipes() error {
	p.cmd.SysProcAttr.Setpgid = true // one process group: Kill reaches its children
	inR, inW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{inR, inW, outR, outW} {
			f.Close()
		}
		return fmt.Errorf("stderr pipe: %w", err)
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, errW
	err = p.cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return fmt.Errorf("start %s: %w", p.cmd.Path, err)
	}
	p.Stdin, p.Stdout, p.Stderr = inW, outR, errR
	return nil
}

func (p *Process) wait() {
	err := p.cmd.Wait()
	p.code, p.err = exitCode(p.cmd.ProcessState, err)
	close(p.done)
	if p.pty != nil {
		// Wakes a read blocked on a pty a background job still holds.
		_ = p.pty.SetReadDeadline(time.Now().Add(ptyDrain))
	}
}

// exitCode is the code a shell would report: the exit status, or 128+N
// after signal N.
func exitCode(st *os.ProcessState, err error) (int, error) {
	if st == nil {
		return -1, err
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return st.ExitCode(), nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the process's exit code, once Done is closed.
func (p *Process) ExitCode() (int, error) {
	<-p.done
	return p.code, p.err
}

// Resize sets the pty's window size (nothing without a pty).
func (p *Process) Resize(rows, cols uint16) error {
	if p.pty == nil {
		return nil
	}
	return setSize(p.pty, rows, cols)
}

func setSize(f *os.File, rows, cols uint16) error {
	if rows == 0 || cols == 0 {
		return nil
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("set window size: %w", err)
	}
	var ierr error
	if err := sc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return fmt.Errorf("set window size: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("set window size: %w", ierr)
	}
	return nil
}

// Kill ends the process and its process group: SIGHUP (a terminal hung
// up), then SIGKILL after grace. A console is disconnected (what runs
// behind it goes on).
func (p *Process) Kill(grace time.Duration) {
	p.once.Do(func() {
		if p.conn != nil {
			p.conn.Close()
			return
		}
		pg := -p.cmd.Process.Pid
		_ = syscall.Kill(pg, syscall.SIGHUP)
		_ = syscall.Kill(pg, syscall.SIGCONT)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(pg, syscall.SIGKILL)
		}
	})
}

// Close releases the process's files once it is done.
func (p *Process) Close() {
	if p.conn != nil {
		p.conn.Close()
		return
	}
	if p.pty != nil {
		p.pty.Close()
		return
	}
	for _, c := range []any{p.Stdin, p.Stdout, p.Stderr} {
		if c, ok := c.(io.Closer); ok {
			c.Close()
		}
	}
}

// ptyReader reads a pty master: EIO (every holder of the pty closed it)
// is the end, and after the process exited, so is ptyDrain of silence.
type ptyReader struct {
	f      *os.File
	exited <-chan struct{}
}

func (r ptyReader) Read(b []byte) (int, error) {
	select {
	case <-r.exited:
		_ = r.f.SetReadDeadline(time.Now().Add(ptyDrain))
	default:
	}
	n, err := r.f.Read(b)
	if err != nil && (errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed)) {
		return n, io.EOF
	}
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// DialConsole connects to a VM's console: a unix socket the hypervisor
// serves its serial or virtio console on (a terminal: one stream, no
// window size). The "process" ends when the console closes its end, with
// exit code 0; Kill disconnects.
func DialConsole(path string, timeout time.Duration) (*Process, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to the console %s: %w", path, err)
	}
	p := &Process{conn: c, done: make(chan struct{})}
	p.Stdin = nopCloser{c}
	p.Stdout = &consoleReader{c: c, p: p}
	return p, nil
}

// consoleReader reads a console connection; its end is the session's.
type consoleReader struct {
	c    net.Conn
	p    *Process
	once sync.Once
}

func (r *consoleReader) Read(b []byte) (int, error) {
	n, err := r.c.Read(b)
	if err != nil {
		r.once.Do(func() { close(r.p.done) })
		return n, io.EOF
	}
	return n, nil
}
