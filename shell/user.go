package shell

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// User is the local account a session runs as.
type User struct {
	Name     string
	UID, GID uint32
	Groups   []uint32
	Home     string
	// Shell is the login shell from the passwd database (/bin/sh when it
	// names none).
	Shell string
}

// ErrRootNotExplicit refuses sessions of an agent running as root whose
// --shell-user is unset: root is used only when named.
var ErrRootNotExplicit = errors.New("the agent runs as root and --shell-user is not set: sessions run as root only when --shell-user root says so; set --shell-user to a non-root user (or root, explicitly)")

// ResolveUser decides whom sessions run as. configured is --shell-user;
// euid the agent's effective uid. An agent not running as root can only
// run sessions as itself.
func ResolveUser(configured string, euid int, passwd string) (User, error) {
	name := configured
	if name == "" {
		if euid == 0 {
			return User{}, ErrRootNotExplicit
		}
		u, err := user.LookupId(strconv.Itoa(euid))
		if err != nil {
			return User{}, fmt.Errorf("look up the agent's own user %d: %w", euid, err)
		}
		name = u.Username
	}
	u, err := LookupUser(name, passwd)
	if err != nil {
		return User{}, err
	}
	if euid != 0 && int(u.UID) != euid {
		return User{}, fmt.Errorf("--shell-user %s: the agent runs as uid %d, not root, and can run sessions only as itself", name, euid)
	}
	return u, nil
}

// LookupUser finds a local user by name; passwd is the passwd file to read
// the login shell from (os/user does not report it).
func LookupUser(name, passwd string) (User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return User{}, fmt.Errorf("--shell-user %s: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return User{}, fmt.Errorf("--shell-user %s: uid %q or gid %q is not a number", name, u.Uid, u.Gid)
	}
	out := User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir, Shell: "/bin/sh"}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				out.Groups = append(out.Groups, uint32(n))
			}
		}
	}
	if sh, err := loginShell(passwd, name); err == nil && sh != "" {
		out.Shell = sh
	}
	return out, nil
}

// loginShell reads name's shell, the 7th field of its line in passwd(5).
func loginShell(passwd, name string) (string, error) {
	f, err := os.Open(passwd)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name {
			return fields[6], nil
		}
	}
	return "", sc.Err()
}

// LookupPasswd finds name in a passwd(5) file.
func LookupPasswd(passwd, name string) (User, error) {
	f, err := os.Open(passwd)
	if err != nil {
		return User{}, fmt.Errorf("read %s: %w", passwd, err)
	}
	defer f.Close()
	return ReadPasswd(f, name)
}

// ReadPasswd finds name in an open passwd(5) file, e.g. a container's
// /etc/passwd (os/user would read the host's).
func ReadPasswd(f *os.File, name string) (User, error) {
	passwd := f.Name()
	sc := bufio.NewScanner(io.LimitReader(f, maxPasswd))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) != 7 || fields[0] != name {
			continue
		}
		uid, err1 := strconv.ParseUint(fields[2], 10, 32)
		gid, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 != nil || err2 != nil {
			return User{}, fmt.Errorf("%s: user %s: uid %q or gid %q is not a number", passwd, name, fields[2], fields[3])
		}
		u := User{Name: name, UID: uint32(uid), GID: uint32(gid), Home: fields[5], Shell: fields[6]}
		if u.Shell == "" {
			u.Shell = "/bin/sh"
		}
		return u, nil
	}
	if err := sc.Err(); err != nil {
		return User{}, fmt.Errorf("read %s: %w", passwd, err)
	}
	return User{}, fmt.Errorf("no user %s in %s", name, passwd)
}

// maxPasswd bounds the passwd file read: a guest's could be anything.
const maxPasswd = 16 << 20
