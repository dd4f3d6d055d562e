package streams

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/shell"
)

// Guest sessions (pinkie shell HOST --guest NAME): the guest is one the
// agent's guest producer knows (a NixOS container in /etc/nixos-containers
// or a microvm.nix MicroVM in /var/lib/microvms).
//
// A container's session runs in its namespaces: nsenter into the mount,
// UTS, IPC, network and PID namespaces and the root of the container's
// leader process (machinectl show --property=Leader), as the user named by
// --shell-user looked up in the container's own /etc/passwd, switched to by
// setpriv inside it (nothing runs as root in the container unless
// --shell-user root says so). The container's user namespace and cgroup
// are not entered: NixOS containers share the host's uids by default, and
// one with privateUsers is not supported.
//
// A MicroVM has no namespaces to enter. When it runs its own pinkie agent
// it is its own host in the fleet: pinkie shell <its host>. Otherwise the
// session is its console, a unix socket the hypervisor serves
// (--shell-microvm-console; microvm.nix sets none up by default, e.g.
// qemu's -serial unix:PATH,server,nowait through microvm.qemu.extraArgs):
// interactive only, as whoever is logged in on that console.

// DefaultMicroVMConsole is where a MicroVM's console socket is looked for
// unless --shell-microvm-console says otherwise; {name} is the VM's name.
const DefaultMicroVMConsole = "/var/lib/microvms/{name}/console.sock"

// guestTarget is how a guest session is entered.
type guestTarget struct {
	kind string // "container" or "microvm"
	// wrap and user: a container's session (shell.Spec.Wrap).
	wrap []string
	user shell.User
	// console: a MicroVM's console socket.
	console string
}

// guestTimeout bounds machinectl and the console's connect.
const guestTimeout = 5 * time.Second

// resolveGuest finds name among the host's guests and how to enter it as
// u (the session user on the host: its name is looked up in the guest).
func (s *ShellService) resolveGuest(ctx context.Context, host, name string, u shell.User, command string) (guestTarget, error) {
	if s.o.Guests == nil {
		return guestTarget{}, fmt.Errorf("%s: the agent does not know its guests (no guest discovery); nothing runs", host)
	}
	guests, gerr := s.o.Guests()
	var g *events.Guest
	for i := range guests {
		if guests[i].Name == name {
			g = &guests[i]
		}
	}
	if g == nil {
		if len(guests) == 0 {
			msg := fmt.Sprintf("%s has no guest %q: it has no NixOS containers (/etc/nixos-containers) and no MicroVMs (/var/lib/microvms)", host, name)
			if gerr != nil {
				msg += fmt.Sprintf(" (%v)", gerr)
			}
			return guestTarget{}, errors.New(msg)
		}
		known := make([]string, len(guests))
		for i, x := range guests {
			known[i] = x.Name + " (" + x.Type + ")"
		}
		return guestTarget{}, fmt.Errorf("%s has no guest %q; its guests: %s", host, name, strings.Join(known, ", "))
	}
	switch g.Type {
	case "container":
		return s.resolveContainer(ctx, host, name, u)
	case "microvm":
		path := strings.ReplaceAll(s.o.MicroVMConsole, "{name}", name)
		if _, err := os.Stat(path); err != nil {
			return guestTarget{}, fmt.Errorf("MicroVM %s on %s: no console socket at %s (--shell-microvm-console): %v; if the VM runs its own pinkie agent, it is a host of its own: pinkie shell <its host name>", name, host, path, err)
		}
		if command != "" {
			return guestTarget{}, fmt.Errorf("MicroVM %s on %s: its console is a terminal, it runs no COMMAND; open it without one, or use pinkie shell on the VM's own agent", name, host)
		}
		return guestTarget{kind: "microvm", console: path}, nil
	}
	return guestTarget{}, fmt.Errorf("guest %s on %s: unknown kind %q", name, host, g.Type)
}

func (s *ShellService) resolveContainer(ctx context.Context, host, name string, u shell.User) (guestTarget, error) {
	if s.o.Run == nil {
		return guestTarget{}, fmt.Errorf("container %s on %s: the agent has no command runner for machinectl", name, host)
	}
	if os.Geteuid() != 0 {
		return guestTarget{}, fmt.Errorf("container %s on %s: entering a container's namespaces needs an agent running as root (this one runs as uid %d)", name, host, os.Geteuid())
	}
	rctx, cancel := context.WithTimeout(ctx, guestTimeout)
	defer cancel()
	out, code, err := s.o.Run(rctx, "machinectl", "show", "--property=Leader", "--value", name)
	if err != nil || code != 0 {
		why := strings.TrimSpace(string(out))
		if err != nil {
			why = err.Error()
		}
		return guestTarget{}, fmt.Errorf("container %s on %s is not running (machinectl show --property=Leader %s: exit %d: %s)", name, host, name, code, why)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 1 {
		return guestTarget{}, fmt.Errorf("container %s on %s: machinectl gave no leader process (%q)", name, host, strings.TrimSpace(string(out)))
	}
	gu, err := containerUser(pid, u.Name)
	if err != nil {
		return guestTarget{}, fmt.Errorf("container %s on %s: the session user %s (--shell-user): %v; the user must exist in the container", name, host, u.Name, err)
	}
	wrap := []string{"nsenter", "--target", strconv.Itoa(pid), "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd"}
	if gu.UID != 0 {
		wrap = append(wrap, "setpriv", "--reuid="+strconv.FormatUint(uint64(gu.UID), 10), "--regid="+strconv.FormatUint(uint64(gu.GID), 10), "--init-groups", "--")
	}
	return guestTarget{kind: "container", wrap: wrap, user: gu}, nil
}

// containerUser looks name up in the /etc/passwd of the container whose
// leader is pid. The file is opened inside the container's root
// (RESOLVE_IN_ROOT): a symlink the container planted cannot point the
// agent at a host file.
func containerUser(pid int, name string) (shell.User, error) {
	root := filepath.Join("/proc", strconv.Itoa(pid), "root")
	dir, err := os.Open(root)
	if err != nil {
		return shell.User{}, fmt.Errorf("open the container's root: %w", err)
	}
	defer dir.Close()
	fd, err := unix.Openat2(int(dir.Fd()), "etc/passwd", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return shell.User{}, fmt.Errorf("open %s/etc/passwd: %w", root, err)
	}
	f := os.NewFile(uintptr(fd), root+"/etc/passwd")
	defer f.Close()
	return shell.ReadPasswd(f, name)
}
