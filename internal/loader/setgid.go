package loader

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// GroupFallbackWarning is the warning of group access on a kernel without the BPF LSM (in the
// log and in `dockwatch status`).
const GroupFallbackWarning = `access = "group" without the BPF LSM: the connect gate is path based and has races ` +
	`(io_uring through a symlink, a thread that writes while another connects, ptrace and pidfd_getfd of a running CLI); ` +
	`set [docker] access = "setgid", take the supervised users out of the socket's group and install the CLI with ` +
	`"dockwatch install-client" to close them`

// SetgidAccess is what setgid access ([docker] access = "setgid", DESIGN.md §1.9) adds to the
// kernel side: the socket groups whose holders may exec only trusted binaries, and the helpers
// they may exec besides the clients and the trusted plugins.
type SetgidAccess struct {
	Groups  []uint32        // gids that own the protected sockets (and that the clients are setgid to)
	Helpers []TrustedClient // [docker] helpers, by identity (Binary is unused)
}

// CheckSetgid checks a setgid access set-up and resolves it; it returns nil, nil for group
// access. Each error names what is wrong and how to fix it:
//   - a client that is not a root-owned regular file, set-group-ID to the sockets' group;
//   - a protected socket that is owned by another group than the clients';
//   - a supervised user who is a member of that group (then the kernel's permission check
//     lets every program of theirs onto the socket, and setgid access protects nothing);
//   - a helper that does not exist or is not a regular file.
//
// A socket that does not exist yet only has its group checked once it exists (at reload).
func CheckSetgid(opts Options, clients []TrustedClient) (*SetgidAccess, error) {
	if opts.Access != "setgid" {
		return nil, nil
	}
	// The group: the first existing socket's; with none yet, the first client's.
	var (
		gid     uint32
		gidFrom string
		found   bool
	)
	for _, s := range opts.Sockets {
		var st unix.Stat_t
		if err := unix.Stat(s, &st); err != nil {
			continue
		}
		if !found {
			gid, gidFrom, found = st.Gid, "socket "+s, true
		} else if st.Gid != gid {
			return nil, fmt.Errorf("setgid access: socket %s is owned by %s, but %s is owned by %s: the protected sockets must share one group",
				s, groupName(st.Gid), gidFrom, groupName(gid))
		}
	}
	// A setgid launcher is a helper that is itself set-group-ID (NixOS's security.wrappers
	// program): it gives the group and then execs a client, which need not be setgid itself.
	launcher := ""
	for _, h := range opts.Helpers {
		var st unix.Stat_t
		if unix.Stat(h, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&unix.S_ISGID != 0 &&
			st.Uid == 0 && st.Mode&0o022 == 0 && (!found || st.Gid == gid) {
			launcher = h
			if !found {
				gid, gidFrom, found = st.Gid, "launcher "+h, true
			}
			break
		}
	}
	for _, c := range clients {
		if c.Binary != policy.BinDocker { // plugins are not setgid: they run with the group the CLI gives them
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(c.Path, &st); err != nil {
			return nil, fmt.Errorf("setgid access: client %s: %w", c.Path, err)
		}
		fix := fmt.Sprintf("install it with \"dockwatch install-client --group %s\" or \"install -o root -g %s -m 2755\"",
			groupNameOnly(gid, found), groupNameOnly(gid, found))
		if st.Mode&unix.S_ISGID == 0 && launcher == "" {
			return nil, fmt.Errorf("setgid access: client %s is not set-group-ID (mode %04o): %s", c.Path, st.Mode&0o7777, fix)
		}
		if st.Uid != 0 {
			return nil, fmt.Errorf("setgid access: client %s is owned by uid %d, not root: its owner could change it", c.Path, st.Uid)
		}
		if st.Mode&0o022 != 0 {
			return nil, fmt.Errorf("setgid access: client %s is writable by its group or others (mode %04o)", c.Path, st.Mode&0o7777)
		}
		if st.Mode&unix.S_ISGID == 0 {
			continue // reached through the launcher, which carries the group
		}
		if !found {
			gid, gidFrom, found = st.Gid, "client "+c.Path, true
			continue
		}
		if st.Gid != gid {
			return nil, fmt.Errorf("setgid access: client %s is set-group-ID to %s, not to %s that owns %s: %s",
				c.Path, groupName(st.Gid), groupName(gid), gidFrom, fix)
		}
	}
	if !found {
		return nil, errors.New("setgid access: no trusted client configured")
	}
	for _, uid := range opts.UIDs {
		u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
		if err != nil {
			// A uid without an account has no group memberships either.
			continue
		}
		ids, err := u.GroupIds()
		if err != nil {
			return nil, fmt.Errorf("setgid access: groups of supervised user %q (uid %d): %w", u.Username, uid, err)
		}
		if slices.Contains(ids, strconv.FormatUint(uint64(gid), 10)) {
			g := groupNameOnly(gid, true)
			return nil, fmt.Errorf("setgid access: supervised user %q (uid %d) is a member of %s, which owns %s: "+
				"remove it from the group (gpasswd -d %s %s) or use access = \"group\"", u.Username, uid, groupName(gid), gidFrom, u.Username, g)
		}
	}
	sg := &SetgidAccess{Groups: []uint32{gid}}
	for _, h := range opts.Helpers {
		var st unix.Stat_t
		if err := unix.Stat(h, &st); err != nil {
			return nil, fmt.Errorf("setgid access: helper %s: %w", h, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, fmt.Errorf("setgid access: helper %s: not a regular file", h)
		}
		sg.Helpers = append(sg.Helpers, TrustedClient{Path: h, Dev: KernelDev(st.Dev), Ino: st.Ino})
	}
	return sg, nil
}

// groupName is `group "docker" (gid 998)`, or `gid 998` when the group has no name.
func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		return fmt.Sprintf("group %q (gid %d)", g.Name, gid)
	}
	return fmt.Sprintf("gid %d", gid)
}

// groupNameOnly is the group's name for a command line, or its number.
func groupNameOnly(gid uint32, known bool) string {
	if !known {
		return "docker"
	}
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		return g.Name
	}
	return strconv.FormatUint(uint64(gid), 10)
}

// fillSetgid writes the setgid maps; with group access they stay empty and the exec hook's
// check never matches.
func fillSetgid(m map[string]*ebpf.Map, sg *SetgidAccess) error {
	if sg == nil {
		return nil
	}
	for _, gid := range sg.Groups {
		if err := m["setgid_groups"].Put(gid, uint8(1)); err != nil {
			return fmt.Errorf("setgid group %d: %w", gid, err)
		}
	}
	for _, h := range sg.Helpers {
		if err := m["setgid_helpers"].Put(dockwatchFileId{Ino: h.Ino, Dev: h.Dev}, uint8(1)); err != nil {
			return fmt.Errorf("setgid helper %s: %w", h.Path, err)
		}
	}
	return nil
}
